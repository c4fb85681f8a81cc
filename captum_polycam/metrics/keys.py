"""The names of per-example metric values, shared by the metrics and :class:`MetricSummary`,
and the direction in which each one is better."""

from __future__ import annotations

from enum import Enum

__all__ = [
    "AVERAGE_DROP",
    "BOX_ACCURACY",
    "DELETION",
    "DELETION_CURVE",
    "ENERGY_POINTING_GAME",
    "INCREASE_IN_CONFIDENCE",
    "INSERTION",
    "INSERTION_CURVE",
    "INSERTION_MINUS_DELETION",
    "POINTING_GAME",
    "SCORE_DIRECTIONS",
    "SENSITIVITY_AVG",
    "SENSITIVITY_MAX",
    "ScoreDirection",
]

INSERTION = "insertion"
DELETION = "deletion"
INSERTION_MINUS_DELETION = "insertion_minus_deletion"
INSERTION_CURVE = "insertion_curve"
DELETION_CURVE = "deletion_curve"
AVERAGE_DROP = "average_drop"
INCREASE_IN_CONFIDENCE = "increase_in_confidence"
SENSITIVITY_MAX = "sensitivity_max"
SENSITIVITY_AVG = "sensitivity_avg"
POINTING_GAME = "pointing_game"
ENERGY_POINTING_GAME = "energy_pointing_game"
BOX_ACCURACY = "box_accuracy"


class ScoreDirection(str, Enum):
    """Whether a higher or a lower value of a metric means a better explanation."""

    HIGHER = "higher"
    LOWER = "lower"


SCORE_DIRECTIONS: dict[str, ScoreDirection] = {
    INSERTION: ScoreDirection.HIGHER,
    DELETION: ScoreDirection.LOWER,
    INSERTION_MINUS_DELETION: ScoreDirection.HIGHER,
    AVERAGE_DROP: ScoreDirection.LOWER,
    INCREASE_IN_CONFIDENCE: ScoreDirection.HIGHER,
    SENSITIVITY_MAX: ScoreDirection.LOWER,
    SENSITIVITY_AVG: ScoreDirection.LOWER,
    POINTING_GAME: ScoreDirection.HIGHER,
    ENERGY_POINTING_GAME: ScoreDirection.HIGHER,
    BOX_ACCURACY: ScoreDirection.HIGHER,
}
"""The direction of every scalar value the metrics report, by key."""
