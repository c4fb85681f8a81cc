"""The only place that imports Captum's private helpers, which change between minor versions."""

from captum._utils.progress import progress
from captum._utils.typing import TargetType

__all__ = ["TargetType", "progress"]
