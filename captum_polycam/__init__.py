"""captum-polycam: Poly-CAM high-resolution class activation maps for Captum, and the metrics
that evaluate saliency maps (insertion, deletion, sensitivity, average drop)."""

from captum_polycam.attr import PolyCam, discover_layers
from captum_polycam.metrics import (
    AverageDrop,
    ConfidenceChange,
    Deletion,
    IncreaseInConfidence,
    Insertion,
    InsertionDeletion,
    MetricSummary,
    Sensitivity,
)
from captum_polycam.perturbation import ExampleTargets, PerturbationScorer

__all__ = [
    "AverageDrop",
    "ConfidenceChange",
    "Deletion",
    "ExampleTargets",
    "IncreaseInConfidence",
    "Insertion",
    "InsertionDeletion",
    "MetricSummary",
    "PerturbationScorer",
    "PolyCam",
    "Sensitivity",
    "discover_layers",
]
__version__ = "0.1.0"
