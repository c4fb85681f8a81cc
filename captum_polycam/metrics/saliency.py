"""Bringing attributions of any usual shape to one saliency value per input pixel."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from captum_polycam._tensors import upsample

__all__ = ["ChannelReduction", "pixel_saliency"]

ChannelReduction = Literal["sum", "abs_sum"]


def pixel_saliency(
    inputs: Tensor, attributions: Tensor, channel_reduction: ChannelReduction = "sum"
) -> Tensor:
    """An ``N x H x W`` saliency map at the inputs' resolution.

    - ``N x 1 x h x w`` (a CAM at layer resolution, like Poly-CAM's stages or Grad-CAM) and
      ``N x h x w``: upsampled bilinearly (``align_corners=False``) when ``h x w`` is not the
      input size; the aspect ratio must match the input's.
    - ``N x C x H x W`` with the inputs' ``C``: pixel-wise attributions (Integrated
      Gradients, Occlusion, ...), reduced over channels by ``channel_reduction``: ``"sum"``
      (signed, the default) or ``"abs_sum"`` (the sum of absolute values).

    Raises:
        ValueError: The attributions cannot match the inputs, or contain NaN.
    """
    if not isinstance(attributions, Tensor):
        raise TypeError(f"attributions must be a tensor; got {type(attributions).__name__}")
    if channel_reduction not in ("sum", "abs_sum"):
        raise ValueError(f"channel_reduction must be 'sum' or 'abs_sum'; got {channel_reduction!r}")
    count, channels, height, width = inputs.shape
    if attributions.dim() == 3:
        attributions = attributions[:, None]
    if attributions.dim() != 4 or len(attributions) != count:
        raise ValueError(
            f"attributions must be N x 1 x h x w, N x h x w or N x C x H x W with N = {count}; "
            f"got shape {tuple(attributions.shape)} for inputs {tuple(inputs.shape)}"
        )
    if bool(torch.isnan(attributions).any()):
        raise ValueError("attributions contain NaN values")
    attributions = attributions.to(device=inputs.device, dtype=inputs.dtype)
    map_channels, map_height, map_width = attributions.shape[1:]
    if map_channels == 1:
        if abs(math.log((map_height / map_width) / (height / width))) > 0.1:
            raise ValueError(
                f"attributions of size {map_height} x {map_width} cannot be resized to the "
                f"inputs' {height} x {width}: the aspect ratios differ"
            )
        return upsample(attributions, (height, width))[:, 0]
    if map_channels != channels or (map_height, map_width) != (height, width):
        raise ValueError(
            f"attributions with {map_channels} channels must have the inputs' shape "
            f"{tuple(inputs.shape[1:])}; got {tuple(attributions.shape[1:])}"
        )
    return (attributions.abs() if channel_reduction == "abs_sum" else attributions).sum(dim=1)
