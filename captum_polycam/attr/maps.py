"""The map arithmetic of Poly-CAM: robust normalisation, local normalisation, recursion.

Pure tensor functions on ``(N, C, h, w)`` maps, free of models and hooks, so that each step of
the method can be checked on hand-computed values.
"""

from __future__ import annotations

from torch import Tensor

from captum_polycam._tensors import upsample

__all__ = [
    "backward_recursion",
    "local_normalise",
    "normalise_within",
    "percentile",
    "robust_bounds",
    "robust_normalise",
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


def local_normalise(saliency: Tensor, size: tuple[int, int]) -> Tensor:
    """Divide a map by its own bilinear down-then-up resampling through ``size``.

    ``LNorm(S, s) = S / max(Up(Down(S, s), size(S)), 1e-12)``: each position is compared with
    its neighbourhood at the coarser resolution ``s``, so that the finer layer contributes
    where, not how much.
    """
    native = tuple(saliency.shape[-2:])
    smoothed = upsample(upsample(saliency, size), native)
    return saliency / smoothed.clamp_min(_EPS)


def backward_recursion(layer_maps: list[Tensor], local_normalisation: bool = True) -> list[Tensor]:
    """Combine per-layer maps, ordered shallow to deep, from the deepest one up.

    ``M_L = relu(S_L)`` and ``M_l = relu(LNorm(S_l, size(M_{l+1})) * Up(M_{l+1}, size(S_l)))``.
    With ``local_normalisation=False`` (the paper's ablation),
    ``M_l = relu(S_l * Up(M_{l+1}, size(S_l)))``: the finer layer then changes how much, not
    only where.

    Returns:
        The composites ``M_L, M_{L-1}, ..., M_1`` (deepest first), each at its layer's
        resolution and not normalised.
    """
    composite = layer_maps[-1].relu()
    composites = [composite]
    for saliency in reversed(layer_maps[:-1]):
        native = tuple(saliency.shape[-2:])
        coarse = tuple(composite.shape[-2:])
        detail = local_normalise(saliency, coarse) if local_normalisation else saliency
        composite = (detail * upsample(composite, native)).relu()
        composites.append(composite)
    return composites
