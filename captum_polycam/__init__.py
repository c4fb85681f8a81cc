"""captum-polycam: Poly-CAM high-resolution class activation maps for Captum, and the metrics
that evaluate saliency maps (insertion, deletion, sensitivity, average drop)."""

from captum_polycam.attr import LayerInfo, PolyCam, describe_layers, discover_layers
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
from captum_polycam.perturbation import ScoringOptions, tune_cpu_allocator
from captum_polycam.scores import DetectionBoxScore, SegmentationScore

__all__ = [
    "AverageDrop",
    "ConfidenceChange",
    "Deletion",
    "DetectionBoxScore",
    "IncreaseInConfidence",
    "Insertion",
    "InsertionDeletion",
    "LayerInfo",
    "MetricSummary",
    "PolyCam",
    "ScoringOptions",
    "SegmentationScore",
    "Sensitivity",
    "describe_layers",
    "discover_layers",
    "tune_cpu_allocator",
]
__version__ = "0.1.0"
