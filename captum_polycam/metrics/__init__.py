"""Faithfulness and robustness metrics for saliency maps, Captum-style and batched.

Every metric takes Captum's ``inputs``, ``target`` and ``additional_forward_args``, returns
per-example values on the inputs' device, says which direction is better
(``score_direction`` or ``score_directions``) and names its values with the keys of
:mod:`captum_polycam.metrics.keys`, which :class:`MetricSummary` accumulates.
"""

from captum_polycam.metrics.confidence import (
    AverageDrop,
    ConfidenceChange,
    ConfidenceChangeResult,
    IncreaseInConfidence,
)
from captum_polycam.metrics.insertion_deletion import (
    CurveResult,
    Deletion,
    Insertion,
    InsertionDeletion,
    InsertionDeletionResult,
)
from captum_polycam.metrics.keys import SCORE_DIRECTIONS, ScoreDirection
from captum_polycam.metrics.plotting import plot_insertion_deletion
from captum_polycam.metrics.sensitivity import Sensitivity, SensitivityResult
from captum_polycam.metrics.summary import MeanCurve, MetricSummary, Statistic

__all__ = [
    "SCORE_DIRECTIONS",
    "AverageDrop",
    "ConfidenceChange",
    "ConfidenceChangeResult",
    "CurveResult",
    "Deletion",
    "IncreaseInConfidence",
    "Insertion",
    "InsertionDeletion",
    "InsertionDeletionResult",
    "MeanCurve",
    "MetricSummary",
    "ScoreDirection",
    "Sensitivity",
    "SensitivityResult",
    "Statistic",
    "plot_insertion_deletion",
]
