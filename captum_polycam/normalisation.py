"""Map normalisers, one per meaning, shared by the method, the metrics and the evaluation.

- :func:`robust_normalise`: Poly-CAM's percentile normalisation of each layer map and of the
  final map (robust to a few outlying positions).
- :func:`min_max`: each map from its minimum to its maximum, what the metrics' masks use.
- :func:`scale_to_unit`: each non-negative map divided by its maximum, what the gradient
  baselines of the evaluation use.

All take ``(N, ...)`` maps and normalise each example (or each 2-D map) on its own.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "min_max",
    "normalise_within",
    "percentile",
    "robust_bounds",
    "robust_normalise",
    "scale_to_unit",
]

_EPS = 1e-12


def percentile(values: Tensor, q: float) -> Tensor:
    """The ``q``-th percentile of ``values`` along its last dimension.

    Linear interpolation between order statistics, as ``numpy.percentile``'s default: with the
    sorted values ``v`` and ``i = q / 100 * (n - 1)``, the result is
    ``v[floor(i)] + (i - floor(i)) * (v[ceil(i)] - v[floor(i)])``. Written with a sort rather than
    ``torch.quantile``, whose input size is capped.
    """
    count = values.shape[-1]
    position = q / 100.0 * (count - 1)
    below = int(position)
    above = min(below + 1, count - 1)
    fraction = position - below
    ordered = values.sort(dim=-1).values
    low, high = ordered[..., below], ordered[..., above]
    return low + fraction * (high - low)


def robust_normalise(maps: Tensor) -> Tensor:
    """Percentile normalisation of each 2-D map of ``(..., h, w)``, into ``[0, 1]``.

    ``N(a) = clip((a - p_0.1(a)) / max(p_99.9(a), 1e-12), 0, 1)``, where ``p_q`` is the
    percentile over the map's positions. The divisor is the high percentile itself, not the
    range: for non-negative activations this is a min-max robust to a few outlying positions.
    """
    return normalise_within(maps, *robust_bounds(maps))


def robust_bounds(maps: Tensor) -> tuple[Tensor, Tensor]:
    """``p_0.1`` and ``max(p_99.9, 1e-12)`` of each 2-D map, shaped ``(..., 1, 1)``: what
    :func:`robust_normalise` subtracts and divides by, to normalise later, a few maps at a time."""
    flat = maps.flatten(-2)
    low = percentile(flat, 0.1)[..., None, None]
    divisor = percentile(flat, 99.9)[..., None, None].clamp_min(_EPS)
    return low, divisor


def normalise_within(maps: Tensor, low: Tensor, divisor: Tensor) -> Tensor:
    """``clip((maps - low) / divisor, 0, 1)``, with bounds from :func:`robust_bounds`."""
    return ((maps - low) / divisor).clamp_(0.0, 1.0)


def min_max(maps: Tensor) -> Tensor:
    """``(m - min(m)) / (max(m) - min(m))`` of each example's map ``m`` of ``(N, ...)``.

    A constant map gives 0 everywhere, not NaN: it singles out no region.
    """
    flat = maps.flatten(1)
    low = flat.amin(dim=1, keepdim=True)
    span = flat.amax(dim=1, keepdim=True) - low
    span = torch.where(span > 0, span, torch.ones_like(span))
    return ((flat - low) / span).view_as(maps)


def scale_to_unit(maps: Tensor) -> Tensor:
    """Divide each non-negative map of ``(N, ...)`` by its maximum; an all-zero map stays zero.
    (Signed maps go from their minimum to their maximum with :func:`min_max`.)"""
    peak = maps.flatten(1).amax(dim=1).view(-1, *[1] * (maps.dim() - 1))
    return torch.where(peak > 0, maps / peak.clamp_min(1e-30), torch.zeros_like(maps))
