"""Fewer masked passes than channels: which channels to score, and weights for the others.

Pure tensor functions on the channels of one batch, all layers side by side (``(N, K)`` with
``K`` the channels of every layer), free of models and hooks. A layer's map is
``S_l = relu(sum_k w_k A_{l,k})``, so a channel moves ``S_l`` by at most its weight's error
times its own activation: the channels that hold most of their layer's activation mass are
scored, and the others' weights are estimated (see "The pass budget" in the algorithm page of
the documentation, with the measurements that chose these rules).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import accumulate
from numbers import Real
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "FEATURE_CELLS",
    "allowed_channels",
    "check_pass_budget",
    "choose",
    "cover_priority",
    "mask_features",
    "one_per_layer",
    "similar_channel_weights",
    "spend_budget",
]

# Masks are compared on a 7 x 7 grid of the image: every layer's masks meet there, and it
# tells the parts of an object apart.
_GRID = (7, 7)
FEATURE_CELLS = _GRID[0] * _GRID[1]
# With mask features, the share of the budget spent by activation mass before the rest goes
# where the estimated contributions are largest. Replayed on the bundled photos, 0.5 was worse
# at every budget; 0.85 was better at 0.25 and 0.33 but worse at 0.1.
_FIRST_ROUND = 0.7
# Scored channels whose masks are most alike an unscored one, and how sharply the estimate
# prefers the closest of them (cosine similarity to this power).
_NEIGHBOURS = 8
_SHARPNESS = 4


def check_pass_budget(value: Any) -> None:
    """A clear error unless ``value`` is ``None`` or a real number in ``(0, 1]``."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 < value <= 1:
        raise ValueError(
            "pass_budget must be None (the exact method) or a number in (0, 1], the fraction "
            f"of the exact masked passes to spend; got {value!r}"
        )


def allowed_channels(live: Tensor, fraction: float) -> Tensor:
    """``floor(fraction * live channels)`` of each example, ``(N,)``: the channels it may score
    (``1e-9`` of slack keeps a budget of exactly ``k / live`` from losing a channel to
    rounding)."""
    return torch.floor(live.sum(dim=1).double() * fraction + 1e-9).long()


def cover_priority(
    masses: list[Tensor], live: list[Tensor], done: list[Tensor] | None = None
) -> Tensor:
    """The order in which channels are scored, ``(N, K)``: higher first, ``-1`` when dead or
    ``done``.

    Within each layer, channels come by decreasing mass ``m_k``; a channel's priority is the
    share of its layer's mass that is still unscored when its turn comes,
    ``1 - sum_{j before k} m_j / sum_j m_j``, the channels ``done`` counting as scored first.
    Taking the highest priorities across the layers scores, in every layer, the fewest
    channels that cover a common share of that layer's mass: the budget leaves the same share
    of mass unscored in every layer, so that no layer's map is left much rougher than the
    others.

    Args:
        masses: Per layer, ``(N, K_l)`` non-negative mass of each channel.
        live: Per layer, ``(N, K_l)`` booleans: the channel's mask is not all zero.
        done: Per layer, ``(N, K_l)`` booleans: the channels scored already.
    """
    priorities = []
    for index, (mass, alive) in enumerate(zip(masses, live, strict=True)):
        mass = torch.where(alive, mass, 0.0)
        scored = done[index] if done is not None else torch.zeros_like(alive)
        ordering = torch.where(scored, torch.inf, mass)  # the channels done come first
        order = ordering.argsort(dim=1, descending=True, stable=True)
        ordered = mass.gather(1, order)
        covered = (ordered.cumsum(dim=1) - ordered) / mass.sum(dim=1, keepdim=True).clamp_min(1e-30)
        priority = torch.empty_like(mass).scatter_(1, order, 1.0 - covered)
        priorities.append(torch.where(alive & ~scored, priority, -1.0))
    return torch.cat(priorities, dim=1)


def choose(priority: Tensor, count: Tensor) -> Tensor:
    """``(N, K)`` booleans: the ``count[n]`` channels of highest ``priority`` in each example
    (ties go to the earlier channel)."""
    ranks = priority.argsort(dim=1, descending=True, stable=True).argsort(dim=1)
    return ranks < count[:, None]


def mask_features(masks: Tensor) -> Tensor:
    """Each ``(h, w)`` mask of ``(M, 1, h, w)`` on a coarse grid of the image, ``(M, 49)``.

    Area averages for masks finer than the grid, bilinear resampling for coarser ones, so that
    a channel's features say how much of each cell of the image its mask unveils.
    """
    if masks.shape[-2] >= _GRID[0] and masks.shape[-1] >= _GRID[1]:
        pooled = F.adaptive_avg_pool2d(masks, _GRID)
    else:
        pooled = F.interpolate(masks, size=_GRID, mode="bilinear", align_corners=False)
    return pooled.flatten(1)


def similar_channel_weights(weights: Tensor, features: Tensor, scored: Tensor) -> Tensor:
    """Estimate every weight from the scored channels whose masks look most alike.

    For each channel ``k``, the ``8`` scored channels ``j`` of the same example whose features
    (:func:`mask_features`) are closest in cosine similarity ``c_kj`` give
    ``w_k ~ sum_j c_kj^4 w_j / sum_j c_kj^4`` (negative similarities count as zero): masks that
    unveil the same parts of the image are scored alike by the model.

    Args:
        weights: ``(N, K)``; only the ``scored`` entries are read.
        features: ``(N, K, F)`` features of every channel's mask.
        scored: ``(N, K)`` booleans.

    Returns:
        ``(N, K)`` estimates, the scored channels included; ``0`` throughout an example with
        no scored channel.
    """
    unit = F.normalize(features, dim=2)
    estimates = torch.zeros_like(weights)
    for example, (known, vectors, values) in enumerate(zip(scored, unit, weights, strict=True)):
        if not bool(known.any()):
            continue
        neighbours = min(_NEIGHBOURS, int(known.sum()))
        similar = (vectors @ vectors[known].T).topk(neighbours, dim=1)
        closeness = similar.values.clamp_min(0.0) ** _SHARPNESS + 1e-12
        estimates[example] = (closeness * values[known][similar.indices]).sum(1) / closeness.sum(1)
    return estimates


def spend_budget(
    budget: float,
    masses: list[Tensor],
    live: list[Tensor],
    weights_of: Callable[[Tensor], Tensor],
    features: Callable[[], Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Score at most ``floor(budget * live channels)`` channels of each example, but never
    fewer than one of each layer where it has a live channel; estimate the others. Returns the
    channels scored and every channel's weight, ``(N, K)``.

    A layer with no channel scored would have every weight estimated from nothing (a tiny
    budget, ``1e-9`` or ``0.01`` of a small model, used to score no channel at all): so each
    layer's channel of most activation mass is always scored, and a budget too small for that
    is raised to it, one pass (two for PCAM+-) per layer and example.

    Without ``features``, one round: the channels of highest :func:`cover_priority` by
    activation mass are scored, and ``weights_of`` weights the others as dead channels. With
    ``features`` (a function giving :func:`mask_features` of every channel, ``(N, K, F)``),
    two rounds: 70% of the budget (still one channel of each layer at least) as above; the
    other weights estimated from the scored channels with similar masks
    (:func:`similar_channel_weights`); the rest of the budget by :func:`cover_priority` of the
    estimated contributions ``w_k m_k``, the scored channels counting as covered; and the
    estimates made again.

    Args:
        budget: In ``(0, 1]``.
        masses: Per layer, ``(N, K_l)`` positive activation mass of each channel.
        live: Per layer, ``(N, K_l)`` booleans: the channel's mask is not all zero.
        weights_of: Scores the channels of an ``(N, K)`` boolean selection and returns every
            channel's weight, the unselected ones weighted as dead channels.
        features: See above.
    """
    alive = torch.cat(live, dim=1)
    widths = [mass.shape[1] for mass in masses]
    layers = torch.stack([layer.any(dim=1) for layer in live], dim=1).sum(dim=1)
    allowed = torch.maximum(allowed_channels(alive, budget), layers)
    if bool((allowed == alive.sum(dim=1)).all()):  # every live channel: the exact method
        return alive, weights_of(alive)
    priority = one_per_layer(cover_priority(masses, live), widths)
    if features is None:
        scored = choose(priority, allowed)
        weights = weights_of(scored)
    else:
        first_count = torch.maximum(allowed_channels(alive, budget * _FIRST_ROUND), layers)
        first = choose(priority, first_count)
        weights = weights_of(first)
        features_now = features()
        estimates = similar_channel_weights(weights, features_now, first)
        contributions = [
            estimate * mass
            for estimate, mass in zip(estimates.split(widths, dim=1), masses, strict=True)
        ]
        priority = cover_priority(contributions, live, list(first.split(widths, dim=1)))
        second = choose(priority, allowed - first.sum(dim=1))
        weights = torch.where(second, weights_of(second), weights)
        scored = first | second
        estimates = similar_channel_weights(weights, features_now, scored)
        weights = torch.where(alive & ~scored, estimates, weights)
    return scored, weights


def one_per_layer(priority: Tensor, widths: list[int]) -> Tensor:
    """``priority`` (``(N, K)``, layers of ``widths`` channels side by side) with the channel
    of highest priority of each layer raised to ``2``, above any :func:`cover_priority`, where
    it is live: :func:`choose` then scores one channel of every layer before a second of any.

    That channel is the layer's of most mass, whose priority is already ``1``; but every
    channel of a layer of no positive mass has priority ``1`` too, and would otherwise take
    the places of other layers' first channels.
    """
    raised = priority.clone()
    starts = accumulate(widths[:-1], initial=0)
    for start, layer in zip(starts, priority.split(widths, dim=1), strict=True):
        best = layer.max(dim=1)  # ties go to the earlier channel
        rows = (best.values > -1).nonzero().squeeze(1)  # dead and done channels are -1
        raised[rows, start + best.indices[rows]] = 2.0
    return raised
