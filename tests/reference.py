"""An independent, literal transcription of the Poly-CAM specification, for the tests.

One example at a time, numpy's percentile, every channel forwarded (no segment bookkeeping,
no skipping of dead channels), so that the package's batched implementation is checked against
the formulas rather than against itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _up(a: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """Linear resize of a signal, bilinear of an image, trilinear of a volume."""
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
    return F.interpolate(t, size=size, mode=mode, align_corners=False)[0, 0].numpy()


def normalise(a: np.ndarray) -> np.ndarray:
    lo = np.percentile(a, 0.1)
    hi = np.percentile(a, 99.9)
    return np.clip((a - lo) / max(hi, 1e-12), 0, 1)


def reference_polycam(
    model: nn.Module,
    x: Tensor,
    layers: list[nn.Module],
    target: int,
    variant: str,
    score=lambda out: out.softmax(dim=1),
    local_normalisation: bool = True,
    with_layer_maps: bool = False,
) -> Any:
    """The stages (deepest first, each of the input's spatial size) of one example ``x``
    (1 x C x L, 1 x C x H x W or 1 x C x D x H x W); with
    ``with_layer_maps``, also each layer's own normalised map (shallow to deep)."""
    captured: dict[int, Tensor] = {}
    handles = [
        m.register_forward_hook(lambda m, i, o: captured.__setitem__(id(m), o.detach().clone()))
        for m in layers
    ]
    with torch.no_grad():
        b = float(score(model(x))[0, target])
    for h in handles:
        h.remove()
    size = tuple(x.shape[2:])
    saliencies = []
    for layer in layers:
        acts = captured[id(layer)][0].double().numpy()
        masks = torch.stack([torch.from_numpy(_up(normalise(a), size)) for a in acts])[:, None]
        unveil, hide = [], []
        with torch.no_grad():  # chunks of masked images, only to keep the tests fast
            for chunk in masks.split(16):
                unveil += score(model(x * chunk))[:, target].tolist()
                hide += score(model(x * (1 - chunk)))[:, target].tolist()
        weights = {
            "plus": unveil,
            "minus": [max(b - h, 0.0) for h in hide],
            "plusminus": [max(u + b - h, 0.0) for u, h in zip(unveil, hide, strict=True)],
        }[variant]
        w = np.array(weights).reshape(-1, *(1,) * len(size))
        saliencies.append(np.maximum(np.nansum(w * acts, axis=0), 0))

    composite = saliencies[-1]
    composites = [composite]
    for s in reversed(saliencies[:-1]):
        coarse = composite.shape
        smoothed = _up(_up(s, coarse), s.shape)
        lnorm = s / np.maximum(smoothed, 1e-12) if local_normalisation else s
        composite = np.maximum(lnorm * _up(composite, s.shape), 0)
        composites.append(composite)
    stages = [_up(normalise(c), size) for c in composites]
    if with_layer_maps:
        return stages, [_up(normalise(s), size) for s in saliencies]
    return stages
