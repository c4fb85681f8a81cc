"""Dataset-level statistics of per-example metric values, accumulated batch by batch."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

__all__ = ["MetricSummary", "Statistic"]

# Two-sided 95% quantile of the normal distribution. The interval is the normal approximation,
# mean +- 1.96 * std / sqrt(n), which is what dataset-scale comparisons (hundreds of images or
# more) use; for a handful of examples it is too narrow.
_Z95 = 1.959963984540054


@dataclass(frozen=True)
class Statistic:
    """Mean, sample standard deviation and 95% confidence interval of the mean over ``count``."""

    mean: float
    std: float
    ci_low: float
    ci_high: float
    count: int

    def __str__(self) -> str:
        interval = f"95% CI {self.ci_low:.4f} to {self.ci_high:.4f}"
        return f"{self.mean:.4f} ± {self.std:.4f} ({interval}, n={self.count})"


class _HasAsDict(Protocol):
    def as_dict(self) -> dict[str, Tensor]: ...


class MetricSummary:
    """Accumulate per-example metric values over a dataset: ``update``, ``compute``, ``reset``.

    Values are named tensors with one entry per example: ``(N,)`` values (areas, drops,
    sensitivities) get a :class:`Statistic`; ``(N, S)`` curves get their mean curve. Values are
    kept on the CPU, so the device memory does not grow with the dataset.

    Example:
        >>> summary = MetricSummary()
        >>> for inputs, labels in loader:
        ...     summary.update(metric(inputs, PolyCam(model).attribute(inputs)))
        >>> summary.compute()["insertion"].mean
    """

    def __init__(self) -> None:
        self._values: dict[str, list[Tensor]] = {}

    def update(self, values: Mapping[str, Tensor] | _HasAsDict) -> None:
        """Add a batch: a mapping of names to per-example tensors, or a result with ``as_dict``."""
        named = values.as_dict() if hasattr(values, "as_dict") else values
        if not isinstance(named, Mapping):
            raise TypeError(f"values must be a mapping or have as_dict(); got {type(values)}")
        sizes = {len(value) for value in named.values()}
        if len(sizes) > 1:
            raise ValueError(f"values must all have one entry per example; got sizes {sizes}")
        for name, value in named.items():
            self._values.setdefault(name, []).append(torch.as_tensor(value).detach().cpu())

    def compute(self) -> dict[str, Any]:
        """A :class:`Statistic` per per-example value and a mean ``(S,)`` tensor per curve."""
        summary: dict[str, Any] = {}
        for name, batches in self._values.items():
            values = torch.cat(batches).double()
            if values.dim() > 1:
                summary[name] = values.mean(dim=0)
                continue
            count = len(values)
            mean = float(values.mean())
            std = float(values.std()) if count > 1 else 0.0
            half = _Z95 * std / math.sqrt(count)
            summary[name] = Statistic(mean, std, mean - half, mean + half, count)
        return summary

    def reset(self) -> None:
        """Forget every value."""
        self._values.clear()

    def __len__(self) -> int:
        """Number of examples accumulated."""
        return sum(len(batch) for batch in next(iter(self._values.values()), []))
