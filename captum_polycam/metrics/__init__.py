"""Faithfulness and robustness metrics for saliency maps, Captum-style and batched."""

from captum_polycam.metrics.confidence import (
    AverageDrop,
    ConfidenceChange,
    ConfidenceChangeResult,
    IncreaseInConfidence,
    min_max_mask,
)
from captum_polycam.metrics.insertion_deletion import (
    CurveResult,
    Deletion,
    Insertion,
    InsertionDeletion,
    InsertionDeletionResult,
)
from captum_polycam.metrics.plotting import plot_insertion_deletion
from captum_polycam.metrics.saliency import pixel_saliency
from captum_polycam.metrics.sensitivity import Sensitivity, SensitivityResult
from captum_polycam.metrics.summary import MetricSummary, Statistic

__all__ = [
    "AverageDrop",
    "ConfidenceChange",
    "ConfidenceChangeResult",
    "CurveResult",
    "Deletion",
    "IncreaseInConfidence",
    "Insertion",
    "InsertionDeletion",
    "InsertionDeletionResult",
    "MetricSummary",
    "Sensitivity",
    "SensitivityResult",
    "Statistic",
    "min_max_mask",
    "pixel_saliency",
    "plot_insertion_deletion",
]
