"""Tensor helpers shared by the attribution and the metrics, free of models and hooks."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["upsample"]


def upsample(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of ``(N, C, h, w)`` maps (``align_corners=False``, no antialias)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
