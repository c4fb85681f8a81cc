"""Attribution: the Poly-CAM method and the choice of its layers."""

from captum_polycam.attr.layers import LayerInfo, describe_layers, discover_layers
from captum_polycam.attr.poly_cam import PolyCam, PolyCamMaps

__all__ = ["LayerInfo", "PolyCam", "PolyCamMaps", "describe_layers", "discover_layers"]
