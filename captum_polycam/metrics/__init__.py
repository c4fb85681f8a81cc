"""Faithfulness, robustness and localisation metrics for saliency maps, batched.

The faithfulness and robustness metrics take Captum's ``inputs``, ``target`` and
``additional_forward_args``; the localisation metrics take the maps and their ground truth
(boxes or masks) and run no model. Every metric returns per-example values on its inputs'
device, says which direction is better (``score_direction`` or ``score_directions``) and names
its values with the keys of :mod:`captum_polycam.metrics.keys`, which :class:`MetricSummary`
accumulates.
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
from captum_polycam.metrics.localisation import (
    BestThreshold,
    BoxAccuracy,
    BoxAccuracyResult,
    EnergyPointingGame,
    EnergyPointingGameResult,
    PointingGame,
    PointingGameResult,
    best_threshold,
)
from captum_polycam.metrics.plotting import plot_insertion_deletion
from captum_polycam.metrics.sensitivity import Sensitivity, SensitivityResult
from captum_polycam.metrics.summary import MeanCurve, MetricSummary, Statistic

__all__ = [
    "SCORE_DIRECTIONS",
    "AverageDrop",
    "BestThreshold",
    "BoxAccuracy",
    "BoxAccuracyResult",
    "ConfidenceChange",
    "ConfidenceChangeResult",
    "CurveResult",
    "Deletion",
    "EnergyPointingGame",
    "EnergyPointingGameResult",
    "IncreaseInConfidence",
    "Insertion",
    "InsertionDeletion",
    "InsertionDeletionResult",
    "MeanCurve",
    "MetricSummary",
    "PointingGame",
    "PointingGameResult",
    "ScoreDirection",
    "Sensitivity",
    "SensitivityResult",
    "Statistic",
    "best_threshold",
    "plot_insertion_deletion",
]
