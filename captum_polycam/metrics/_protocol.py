"""The settings that decide a metric's numbers: its results carry them, so that
:class:`~captum_polycam.metrics.MetricSummary` never averages values of different protocols."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

__all__ = ["protocol_differences", "protocol_value"]

_NOT_GIVEN = "not given"


def protocol_value(setting: Any) -> Any:
    """A setting as a value that compares and prints: strings, numbers and ``None`` as they
    are, a tensor as ``"tensor"``, any other callable by its name."""
    # Tensors and callables are described, not kept: a metric built per batch (a per-example
    # baseline, a detection score of each image's boxes) is still one protocol, and a result
    # should not hold on to device memory or a model.
    if isinstance(setting, Tensor):
        return "tensor"
    if callable(setting) and not isinstance(setting, type):
        return getattr(setting, "__qualname__", None) or type(setting).__qualname__
    return setting


def protocol_differences(earlier: Mapping[str, Any], later: Mapping[str, Any]) -> list[str]:
    """``"name (earlier then later)"`` for every setting whose value differs, in order."""
    names = [*earlier, *(name for name in later if name not in earlier)]
    return [
        f"{name} ({_shown(earlier, name)} then {_shown(later, name)})"
        for name in names
        if name not in earlier or name not in later or earlier[name] != later[name]
    ]


def _shown(protocol: Mapping[str, Any], name: str) -> str:
    return repr(protocol[name]) if name in protocol else _NOT_GIVEN
