"""The map arithmetic of Poly-CAM: robust normalisation, local normalisation, recursion.

The robust normalisation is one of the package's map normalisers, which live together in
:mod:`captum_polycam.normalisation`; it is re-exported here with the rest of the method.

Pure tensor functions on ``(N, C, *spatial)`` maps (signals, images or volumes), free of
models and hooks, so that each step of the method can be checked on hand-computed values.
"""

from __future__ import annotations

from torch import Tensor

from captum_polycam.normalisation import (
    normalise_within,
    percentile,
    robust_bounds,
    robust_normalise,
    upsample,
)

__all__ = [
    "backward_recursion",
    "local_normalise",
    "normalise_within",
    "percentile",
    "robust_bounds",
    "robust_normalise",
]

_EPS = 1e-12


def local_normalise(saliency: Tensor, size: tuple[int, ...]) -> Tensor:
    """Divide a map by its own (bi/tri)linear down-then-up resampling through ``size``.

    ``LNorm(S, s) = S / max(Up(Down(S, s), size(S)), 1e-12)``: each position is compared with
    its neighbourhood at the coarser resolution ``s``, so that the finer layer contributes
    where, not how much.
    """
    native = tuple(saliency.shape[2:])
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
        native = tuple(saliency.shape[2:])
        coarse = tuple(composite.shape[2:])
        detail = local_normalise(saliency, coarse) if local_normalisation else saliency
        composite = (detail * upsample(composite, native)).relu()
        composites.append(composite)
    return composites
