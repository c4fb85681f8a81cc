"""Dataset-level statistics of per-example metric values, accumulated batch by batch."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from captum_polycam.metrics._protocol import protocol_differences
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

    Each name holds values of one protocol: a metric's result carries the settings that decide
    its numbers (its ``protocol``: steps, baseline, score function, ...), and ``update``
    refuses a result whose protocol differs from the earlier batches' under the same name,
    naming the settings that differ. Bare tensors carry no protocol, so they join only other
    bare tensors. A callable setting (a custom baseline or ``score_fn``) is known by its name
    and a tensor baseline as ``"tensor"``: two of them are told apart only by that.

    Every value must be finite: ``update`` refuses a NaN or infinite value (a drop relative to
    a non-positive score, say), naming the value and the example, rather than let it turn the
    statistics into NaN.

    Example:
        >>> summary = MetricSummary()
        >>> for inputs, labels in loader:
        ...     summary.update(metric(inputs, PolyCam(model).attribute(inputs)))
        >>> summary.compute()["insertion"].mean
    """

    def __init__(self) -> None:
        self._values: dict[str, list[Tensor]] = {}
        self._fractions: dict[str, Tensor | None] = {}
        self._protocols: dict[str, dict[str, Any]] = {}

    def update(self, values: Mapping[str, Tensor | CurveResult] | _HasAsDict) -> None:
        """Add a batch: a mapping of names to per-example values, or a result with
        ``as_dict()`` (every metric's result has one).

        A batch is taken whole or not at all: when it is refused, the summary is unchanged.

        Raises:
            TypeError: ``values`` is neither a mapping nor a result, or a value is not a tensor.
            ValueError: A value is not ``(N,)`` or ``(N, S)``, or is NaN or infinite for an
                example (a curve at any step); the values do not all have the same ``N``; or
                under a name already seen, the protocol, the shape of each example's value (a
                curve's number of steps) or the curves' x-axis differ from the earlier
                batches'.
        """
        named = values.as_dict() if hasattr(values, "as_dict") else values
        if not isinstance(named, Mapping):
            raise TypeError(f"values must be a mapping or have as_dict(); got {type(values)}")
        # A result's protocol covers all its values; a curve carries its own.
        shared = dict(getattr(values, "protocol", {}))
        batch: dict[str, tuple[Tensor, Tensor | None, dict[str, Any]]] = {}
        for name, value in named.items():
            if isinstance(value, CurveResult):
                batch[name] = (
                    _cpu(name, value.curve),
                    value.fractions.detach().cpu(),
                    dict(value.protocol),
                )
            else:
                batch[name] = (_cpu(name, value), None, shared)
        sizes = {len(per_example) for per_example, _, _ in batch.values()}
        if len(sizes) > 1:
            raise ValueError(f"values must all have one entry per example; got sizes {sizes}")
        for name, (per_example, fractions, protocol) in batch.items():
            self._check_finite(name, per_example)
            if name in self._values:
                self._check_consistent(name, per_example, fractions, protocol)
        for name, (per_example, fractions, protocol) in batch.items():
            self._values.setdefault(name, []).append(per_example)
            self._fractions[name] = fractions
            self._protocols[name] = protocol

    def _check_finite(self, name: str, per_example: Tensor) -> None:
        """Refuse a NaN or infinite value, which would make every statistic of ``name`` NaN
        (or infinite) without saying which example did it."""
        finite = torch.isfinite(per_example)
        if per_example.dim() > 1:
            finite = finite.all(dim=1)
        if bool(finite.all()):
            return
        index = int((~finite).nonzero()[0])
        value = per_example[index]
        shown = value if value.dim() == 0 else value[~torch.isfinite(value)][0]
        seen = sum(len(earlier) for earlier in self._values.get(name, []))
        raise ValueError(
            f"{name}: the value of example {index} of the batch (example {seen + index} of the "
            f"summary's {name!r}) is {float(shown)}; MetricSummary averages finite values only: "
            "leave the example out, or find why its metric is not finite"
        )

    def _check_consistent(
        self, name: str, per_example: Tensor, fractions: Tensor | None, protocol: dict[str, Any]
    ) -> None:
        """Refuse a batch that cannot be averaged with the earlier batches under ``name``."""
        earlier_protocol = self._protocols[name]
        differences = protocol_differences(earlier_protocol, protocol)
        if differences:
            bare = "" if earlier_protocol and protocol else " (bare tensors carry none)"
            raise ValueError(
                f"{name}: the protocol differs from the earlier batches' in "
                f"{', '.join(differences)}; summarise each protocol in its own "
                f"MetricSummary{bare}"
            )
        shape, earlier = tuple(per_example.shape[1:]), tuple(self._values[name][0].shape[1:])
        if shape != earlier:
            raise ValueError(
                f"{name}: each example's value has shape {shape} here and {earlier} in the "
                "earlier batches; curves averaged together need the same number of steps"
            )
        if not _same(self._fractions[name], fractions):
            raise ValueError(
                f"{name}: the curves' steps (fractions) differ from the earlier batches' "
                "(inputs of another size, or curves given as bare tensors); summarise curves "
                "of one protocol together"
            )

    def compute(self) -> dict[str, Any]:
        """A :class:`Statistic` per per-example value and a :class:`MeanCurve` per curve.

        A name whose batches held no example at all gets NaN statistics (``count`` 0, a NaN
        mean curve) and a ``UserWarning``, as torchmetrics' means do, rather than an error:
        a shard of a dataset may be empty.
        """
        summary: dict[str, Any] = {}
        empty = []
        for name, batches in self._values.items():
            values = torch.cat(batches).double()
            count = len(values)
            if count == 0:
                empty.append(name)
            if values.dim() > 1:
                # With no curve, torch's mean is NaN at every step.
                summary[name] = MeanCurve(values.mean(dim=0), self._fractions[name], count)
                continue
            direction = SCORE_DIRECTIONS.get(name)
            if count == 0:
                summary[name] = Statistic(math.nan, math.nan, math.nan, math.nan, 0, direction)
                continue
            mean = float(values.mean())
            std = float(values.std()) if count > 1 else 0.0
            half = _Z95 * std / math.sqrt(count)
            summary[name] = Statistic(mean, std, mean - half, mean + half, count, direction)
        if empty:
            names = ", ".join(repr(name) for name in empty)
            warnings.warn(
                f"MetricSummary.compute: no examples for {names}: their statistics are NaN",
                UserWarning,
                stacklevel=2,
            )
        return summary

    @property
    def protocols(self) -> dict[str, dict[str, Any]]:
        """The protocol of the values under each name (empty for bare tensors)."""
        return {name: dict(protocol) for name, protocol in self._protocols.items()}

    def reset(self) -> None:
        """Forget every value, and the protocols with them."""
        self._values.clear()
        self._fractions.clear()
        self._protocols.clear()

    def __len__(self) -> int:
        """Number of examples accumulated."""
        return sum(len(batch) for batch in next(iter(self._values.values()), []))


def _cpu(name: str, value: Any) -> Tensor:
    """``value`` as a detached CPU tensor of ``(N,)`` values or ``(N, S)`` curves."""
    try:
        tensor = torch.as_tensor(value).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"{name}: values must be tensors of per-example values; got {type(value).__name__}"
        ) from None
    if tensor.dim() not in (1, 2):
        raise ValueError(
            f"{name}: values must be (N,) per-example values or (N, S) curves; got shape "
            f"{tuple(tensor.shape)}"
        )
    return tensor


def _same(first: Tensor | None, second: Tensor | None) -> bool:
    if first is None or second is None:
        return first is second
    return first.shape == second.shape and bool(torch.allclose(first, second))
