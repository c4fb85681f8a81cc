"""captum-polycam: Poly-CAM high-resolution class activation maps for Captum, and the metrics
that evaluate saliency maps (insertion, deletion, sensitivity, average drop, and localisation:
the pointing game, its energy-based form and the box accuracy)."""

from captum_polycam.attr import (
    LayerInfo,
    PolyCam,
    describe_layers,
    discover_layers,
    poly_cam_explain_func,
)
from captum_polycam.metrics import (
    AverageDrop,
    BoxAccuracy,
    ConfidenceChange,
    Deletion,
    EnergyPointingGame,
    IncreaseInConfidence,
    Insertion,
    InsertionDeletion,
    MetricSummary,
    PointingGame,
    Sensitivity,
    best_threshold,
)
from captum_polycam.perturbation import ScoringOptions, tune_cpu_allocator
from captum_polycam.scores import DetectionBoxScore, SegmentationScore

__all__ = [
    "AverageDrop",
    "BoxAccuracy",
    "ConfidenceChange",
    "Deletion",
    "DetectionBoxScore",
    "EnergyPointingGame",
    "IncreaseInConfidence",
    "Insertion",
    "InsertionDeletion",
    "LayerInfo",
    "MetricSummary",
    "PointingGame",
    "PolyCam",
    "ScoringOptions",
    "SegmentationScore",
    "Sensitivity",
    "best_threshold",
    "describe_layers",
    "discover_layers",
    "poly_cam_explain_func",
    "tune_cpu_allocator",
]
__version__ = "0.1.0"
