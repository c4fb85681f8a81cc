"""Attribution: the Poly-CAM method and the choice of its layers."""

from captum_polycam.attr.layers import discover_layers
from captum_polycam.attr.poly_cam import PolyCam

__all__ = ["PolyCam", "discover_layers"]
