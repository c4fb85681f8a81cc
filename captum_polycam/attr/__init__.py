"""Attribution: the Poly-CAM method and the choice of its layers."""

from captum_polycam.attr.capture import LayerInfo
from captum_polycam.attr.layers import describe_layers, discover_layers
from captum_polycam.attr.poly_cam import VARIANTS, PolyCam, PolyCamMaps

__all__ = [
    "VARIANTS",
    "LayerInfo",
    "PolyCam",
    "PolyCamMaps",
    "describe_layers",
    "discover_layers",
]
