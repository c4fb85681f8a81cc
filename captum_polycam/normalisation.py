"""Map normalisers, one per meaning, shared by the method, the metrics and the evaluation,
with the resizing that brings a map to its inputs' resolution.

- :func:`robust_normalise`: Poly-CAM's percentile normalisation of each layer map and of the
  final map (robust to a few outlying positions).
- :func:`min_max`: each map from its minimum to its maximum, what the metrics' masks use.
- :func:`scale_to_unit`: each non-negative map divided by its maximum, what the gradient
  baselines of the evaluation use.
- :func:`min_max_mask`: any attribution as a mask in ``[0, 1]`` at the inputs' resolution
  (:func:`pixel_saliency`, then :func:`min_max`), what the confidence metrics multiply the
  inputs by.
- :func:`upsample`: the one bilinear resize of maps, which Poly-CAM, the metrics and the
  overlays use.

The normalisers take ``(N, ...)`` maps and normalise each example (or each 2-D map) on its own.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "ChannelReduction",
    "min_max",
    "min_max_mask",
    "normalise_within",
    "percentile",
    "pixel_saliency",
    "robust_bounds",
    "robust_normalise",
    "scale_to_unit",
    "upsample",
]

ChannelReduction = Literal["sum", "abs_sum"]

_EPS = 1e-12


# Linear interpolation in each spatial dimension: of signals, images and volumes.
_LINEAR_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def upsample(maps: Tensor, size: tuple[int, ...]) -> Tensor:
    """Linear resize of ``(N, C, *spatial)`` maps in every spatial dimension: linear for
    signals (``N x C x l``), bilinear for images (``N x C x h x w``), trilinear for volumes
    (``N x C x d x h x w``); ``align_corners=False``, no antialias."""
    if tuple(maps.shape[2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=size, mode=_LINEAR_MODES[len(size)], align_corners=False)


def percentile(values: Tensor, q: float) -> Tensor:
    """The ``q``-th percentile of ``values`` along its last dimension.

    Linear interpolation between order statistics, as ``numpy.percentile``'s default: with the
    sorted values ``v`` and ``i = q / 100 * (n - 1)``, the result is
    ``v[floor(i)] + (i - floor(i)) * (v[ceil(i)] - v[floor(i)])``. Not ``torch.quantile``, whose
    input size is capped, nor a full sort: the two order statistics are read from the ``topk``
    of the nearer end (the smallest values for a low ``q``, the largest for a high one), the
    same values a sort gives, NaN last as in a sort, some twenty times faster for the extreme
    percentiles that normalisation asks of a channel's 10^5 positions.
    """
    count = values.shape[-1]
    position = q / 100.0 * (count - 1)
    below = int(position)
    above = min(below + 1, count - 1)
    fraction = position - below
    if above < count - below:
        smallest = values.topk(above + 1, dim=-1, largest=False).values  # ascending
        low, high = smallest[..., below], smallest[..., above]
    else:
        largest = values.topk(count - below, dim=-1).values  # descending
        low, high = largest[..., count - 1 - below], largest[..., count - 1 - above]
    return low + fraction * (high - low)


def robust_normalise(maps: Tensor) -> Tensor:
    """Percentile normalisation of each map of ``(N, C, *spatial)``, into ``[0, 1]``.

    ``N(a) = clip((a - p_0.1(a)) / max(p_99.9(a), 1e-12), 0, 1)``, where ``p_q`` is the
    percentile over the map's positions. The divisor is the high percentile itself, not the
    range: for non-negative activations this is a min-max robust to a few outlying positions.
    """
    return normalise_within(maps, *robust_bounds(maps))


def robust_bounds(maps: Tensor) -> tuple[Tensor, Tensor]:
    """``p_0.1`` and ``max(p_99.9, 1e-12)`` of each map of ``(N, C, *spatial)``, shaped
    ``(N, C, 1, ...)``: what :func:`robust_normalise` subtracts and divides by, to normalise
    later, a few maps at a time."""
    flat = maps.flatten(2)
    ones = (1,) * (maps.dim() - 2)
    low = percentile(flat, 0.1).view(*maps.shape[:2], *ones)
    divisor = percentile(flat, 99.9).clamp_min(_EPS).view(*maps.shape[:2], *ones)
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


# The spatial axes of maps at any resolution, and at the inputs', by number of dimensions.
_LOWER_LAYOUTS = {1: "l", 2: "h x w", 3: "d x h x w"}
_UPPER_LAYOUTS = {1: "L", 2: "H x W", 3: "D x H x W"}


def _by(size: list[int]) -> str:
    return " x ".join(str(side) for side in size)


def pixel_saliency(
    inputs: Tensor, attributions: Tensor, channel_reduction: ChannelReduction = "sum"
) -> Tensor:
    """An ``N x *spatial`` saliency map at the inputs' resolution: ``N x L`` for signals
    ``N x C x L``, ``N x H x W`` for images ``N x C x H x W``, ``N x D x H x W`` for volumes
    ``N x C x D x H x W``.

    - ``N x 1 x *s`` (a CAM at layer resolution, like Poly-CAM's stages or Grad-CAM: ``N x 1 x
      h x w`` for images) and ``N x *s`` (without the channel axis): upsampled linearly,
      bilinearly or trilinearly (:func:`upsample`, ``align_corners=False``) when ``s`` is not
      the inputs' size; every pair of axes must keep the inputs' aspect ratio (within 10%),
      but an axis of one position in both (a volume of one slice), which has no scale and is
      left out of the resize (the map of a one-slice volume is its image's).
    - ``N x C x *spatial`` with the inputs' ``C`` and size: position-wise attributions
      (Integrated Gradients, Occlusion, ...), reduced over channels by ``channel_reduction``:
      ``"sum"`` (signed, the default) or ``"abs_sum"`` (the sum of absolute values).

    Raises:
        ValueError: The attributions cannot match the inputs, or contain NaN.
    """
    if not isinstance(attributions, Tensor):
        raise TypeError(f"attributions must be a tensor; got {type(attributions).__name__}")
    if channel_reduction not in ("sum", "abs_sum"):
        raise ValueError(f"channel_reduction must be 'sum' or 'abs_sum'; got {channel_reduction!r}")
    count, channels, *size = inputs.shape
    if attributions.dim() == inputs.dim() - 1:
        attributions = attributions[:, None]
    if attributions.dim() == inputs.dim() + 1 and attributions.dim() - 2 in _UPPER_LAYOUTS:
        # Maps of more dimensions than the inputs': most likely an example without its batch
        # axis, which would read as a batch of signals (or images).
        dims = attributions.dim()
        raise ValueError(
            f"inputs must be {dims}-D, N x C x {_UPPER_LAYOUTS[dims - 2]}, for the {dims}-D "
            f"attributions of shape {tuple(attributions.shape)}; got {inputs.dim()}-D inputs "
            f"{tuple(inputs.shape)} (one example without its batch axis? add it: inputs[None])"
        )
    if attributions.dim() != inputs.dim() or len(attributions) != count:
        small = _LOWER_LAYOUTS.get(len(size), "*s")
        large = _UPPER_LAYOUTS.get(len(size), "*S")
        raise ValueError(
            f"attributions must be N x 1 x {small}, N x {small} or N x C x {large} with "
            f"N = {count}; got shape {tuple(attributions.shape)} for inputs {tuple(inputs.shape)}"
        )
    if bool(torch.isnan(attributions).any()):
        raise ValueError("attributions contain NaN values")
    attributions = attributions.to(device=inputs.device, dtype=inputs.dtype)
    map_channels, *map_size = attributions.shape[1:]
    if map_channels == 1:
        # An axis of one position in the map and in the inputs (a volume of one slice) has no
        # scale to compare: the map cannot be smaller along it.
        scaled = [axis for axis in range(len(size)) if (map_size[axis], size[axis]) != (1, 1)]
        for index, first in enumerate(scaled):
            for second in scaled[index + 1 :]:
                ratio = (map_size[first] / map_size[second]) / (size[first] / size[second])
                if abs(math.log(ratio)) > 0.1:
                    raise ValueError(
                        f"attributions of size {_by(map_size)} cannot be resized to the "
                        f"inputs' {_by(size)}: the aspect ratios differ"
                    )
        if map_size == size or len(scaled) == len(size):
            return upsample(attributions, tuple(size))[:, 0]
        # Resized along the other axes alone, so that a volume of one slice gives its image's
        # bilinear map, bit for bit (a trilinear resize rounds otherwise).
        flat = attributions.reshape(count, 1, *(map_size[axis] for axis in scaled))
        return upsample(flat, tuple(size[axis] for axis in scaled)).reshape(count, *size)
    if map_channels != channels or map_size != size:
        raise ValueError(
            f"attributions with {map_channels} channels must have the inputs' shape "
            f"{tuple(inputs.shape[1:])}; got {tuple(attributions.shape[1:])}"
        )
    return (attributions.abs() if channel_reduction == "abs_sum" else attributions).sum(dim=1)


def min_max_mask(
    inputs: Tensor, attributions: Tensor, channel_reduction: ChannelReduction = "sum"
) -> Tensor:
    """The saliency map as an ``N x *spatial`` mask in ``[0, 1]`` (``N x H x W`` for images),
    min-max normalised per example.

    With ``m`` the map brought to the inputs' resolution by :func:`pixel_saliency`,
    ``M = (m - min(m)) / (max(m) - min(m))``, the minimum and maximum taken over the example's
    positions (pixels, or the samples of a signal, the voxels of a volume). A constant map
    (``max(m) = min(m)``) gives ``M = 0``: it singles out no region.

    Raises:
        ValueError: The attributions cannot match the inputs, or are not finite.
    """
    saliency = pixel_saliency(inputs, attributions, channel_reduction)
    if not bool(torch.isfinite(saliency).all()):
        raise ValueError("attributions contain Inf values")
    return min_max(saliency)
