"""captum-polycam: Poly-CAM high-resolution class activation maps for Captum."""

from captum_polycam.attr import PolyCam, discover_layers
from captum_polycam.perturbation import ExampleTargets, PerturbationScorer

__all__ = ["ExampleTargets", "PerturbationScorer", "PolyCam", "discover_layers"]
__version__ = "0.1.0"
