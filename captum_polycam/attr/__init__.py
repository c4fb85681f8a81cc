"""Attribution: the Poly-CAM method, the choice of its layers, and Poly-CAM as a Quantus
explanation function."""

from captum_polycam.attr.capture import LayerInfo
from captum_polycam.attr.layers import describe_layers, discover_layers
from captum_polycam.attr.poly_cam import VARIANTS, PolyCam, PolyCamMaps
from captum_polycam.attr.quantus import poly_cam_explain_func

__all__ = [
    "VARIANTS",
    "LayerInfo",
    "PolyCam",
    "PolyCamMaps",
    "describe_layers",
    "discover_layers",
    "poly_cam_explain_func",
]
