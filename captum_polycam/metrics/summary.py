"""Dataset-level statistics of per-example metric values, accumulated batch by batch."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from captum_polycam.metrics.insertion_deletion import CurveResult
from captum_polycam.metrics.keys import SCORE_DIRECTIONS, ScoreDirection

__all__ = ["MeanCurve", "MetricSummary", "Statistic"]

# Two-sided 95% quantile of the normal distribution. The interval is the normal approximation,
# mean +- 1.96 * std / sqrt(n), which is what dataset-scale comparisons (hundreds of images or
# more) use; for a handful of examples it is too narrow.
_Z95 = 1.959963984540054


@dataclass(frozen=True)
class Statistic:
    """Mean, sample standard deviation and 95% confidence interval of the mean over ``count``.

    ``direction`` says whether higher or lower is better, for the metrics' own keys
    (:data:`~captum_polycam.metrics.keys.SCORE_DIRECTIONS`); ``None`` for other names.
    """

    mean: float
    std: float
    ci_low: float
    ci_high: float
    count: int
    direction: ScoreDirection | None = None

    def __str__(self) -> str:
        interval = f"95% CI {self.ci_low:.4f} to {self.ci_high:.4f}"
        better = f", {self.direction.value} is better" if self.direction else ""
        return f"{self.mean:.4f} ± {self.std:.4f} ({interval}, n={self.count}{better})"


@dataclass(frozen=True)
class MeanCurve:
    """The mean of ``count`` per-example curves.

    Attributes:
        mean: ``(S,)`` mean score at each step.
        fractions: ``(S,)`` the x-axis (fraction of pixels moved at each step) when the
            curves came from a :class:`~captum_polycam.metrics.CurveResult`; ``None`` for
            curves given as bare tensors.
        count: Number of curves averaged.
    """

    mean: Tensor
    fractions: Tensor | None
    count: int


class _HasAsDict(Protocol):
    def as_dict(self) -> Mapping[str, Tensor | CurveResult]: ...


class MetricSummary:
    """Accumulate per-example metric values over a dataset: ``update``, ``compute``, ``reset``.

    Values are named, with one entry per example: ``(N,)`` tensors (areas, drops,
    sensitivities) get a :class:`Statistic`; curves, as :class:`~captum_polycam.metrics.CurveResult`
    (which carries its x-axis) or ``(N, S)`` tensors, get a :class:`MeanCurve`. Values are
    kept on the CPU, so the device memory does not grow with the dataset.

    Example:
        >>> summary = MetricSummary()
        >>> for inputs, labels in loader:
        ...     summary.update(metric(inputs, PolyCam(model).attribute(inputs)))
        >>> summary.compute()["insertion"].mean
    """

    def __init__(self) -> None:
        self._values: dict[str, list[Tensor]] = {}
        self._fractions: dict[str, Tensor | None] = {}

    def update(self, values: Mapping[str, Tensor | CurveResult] | _HasAsDict) -> None:
        """Add a batch: a mapping of names to per-example values, or a result with
        ``as_dict()`` (every metric's result has one)."""
        named = values.as_dict() if hasattr(values, "as_dict") else values
        if not isinstance(named, Mapping):
            raise TypeError(f"values must be a mapping or have as_dict(); got {type(values)}")
        sizes = {len(_per_example(value)) for value in named.values()}
        if len(sizes) > 1:
            raise ValueError(f"values must all have one entry per example; got sizes {sizes}")
        for name, value in named.items():
            fractions = value.fractions.detach().cpu() if isinstance(value, CurveResult) else None
            if name in self._fractions and not _same(self._fractions[name], fractions):
                raise ValueError(
                    f"{name}: the curves' steps (fractions) differ from the earlier batches'; "
                    "summarise curves of one protocol together"
                )
            self._fractions[name] = fractions
            per_example = torch.as_tensor(_per_example(value)).detach().cpu()
            self._values.setdefault(name, []).append(per_example)

    def compute(self) -> dict[str, Any]:
        """A :class:`Statistic` per per-example value and a :class:`MeanCurve` per curve."""
        summary: dict[str, Any] = {}
        for name, batches in self._values.items():
            values = torch.cat(batches).double()
            count = len(values)
            if values.dim() > 1:
                summary[name] = MeanCurve(values.mean(dim=0), self._fractions[name], count)
                continue
            mean = float(values.mean())
            std = float(values.std()) if count > 1 else 0.0
            half = _Z95 * std / math.sqrt(count)
            direction = SCORE_DIRECTIONS.get(name)
            summary[name] = Statistic(mean, std, mean - half, mean + half, count, direction)
        return summary

    def reset(self) -> None:
        """Forget every value."""
        self._values.clear()
        self._fractions.clear()

    def __len__(self) -> int:
        """Number of examples accumulated."""
        return sum(len(batch) for batch in next(iter(self._values.values()), []))


def _per_example(value: Tensor | CurveResult) -> Tensor:
    return value.curve if isinstance(value, CurveResult) else value


def _same(first: Tensor | None, second: Tensor | None) -> bool:
    if first is None or second is None:
        return first is second
    return first.shape == second.shape and bool(torch.allclose(first, second))
