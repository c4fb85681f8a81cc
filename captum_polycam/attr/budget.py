"""Fewer masked passes than channels: which channels to score, and weights for the others.

Pure tensor functions on the channels of one batch, all layers side by side (``(N, K)`` with
``K`` the channels of every layer), free of models and hooks. A layer's map is
``S_l = relu(sum_k w_k A_{l,k})``, so a channel moves ``S_l`` by at most its weight's error
times its own activation: the channels that hold most of their layer's activation mass are
scored, and the others' weights are estimated (see "The pass budget" in the algorithm page of
the documentation, with the measurements that chose these rules).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import accumulate
from numbers import Real
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from captum_polycam.normalisation import upsample

__all__ = [
    "AUTO",
    "AUTO_BUDGETS",
    "DEFAULT_MIN_FIDELITY",
    "BudgetSpent",
    "allowed_channels",
    "check_min_fidelity",
    "check_pass_budget",
    "choose",
    "cover_priority",
    "deepest_first",
    "estimate_fidelity",
    "mask_features",
    "next_channels",
    "one_per_layer",
    "rank_correlation",
    "similar_channel_weights",
    "spend_budget",
]

AUTO = "auto"
# pass_budget="auto": the budgets of its rounds, each about half as large again as the last,
# up to every channel. It starts at 0.11 because below it the check overstated the fidelity of
# PCAM+- maps by up to 0.04 in the replay of 29 photos (at most 0.018 from 0.1 up).
AUTO_BUDGETS = (0.11, 0.17, 0.25, 0.38, 0.57, 0.85, 1.0)
DEFAULT_MIN_FIDELITY = 0.99
# Masks are compared on a grid of 7 cells a side (7 x 7 for an image, 7 x 7 x 7 for a volume):
# every layer's masks meet there, and it tells the parts of an object apart.
_GRID_SIDE = 7
_ADAPTIVE_AVERAGE = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}
# Scored channels whose masks are most alike an unscored one, and how sharply the estimate
# prefers the closest of them (cosine similarity to this power).
_NEIGHBOURS = 8
_SHARPNESS = 4
# The deepest layer's priority over the others' (see deepest_first), the share of a round's
# channels that checks the estimates, and the draws that carry their errors into the map.
# Chosen by replaying the exact scores of 29 photos (the performance page has the figures).
_DEEPEST_GAIN = 2.0
_CHECK_SHARE = 0.1
_DRAWS = 16


def check_pass_budget(value: Any) -> None:
    """A clear error unless ``value`` is ``None``, ``"auto"`` or a real number in ``(0, 1]``."""
    if value is None or (isinstance(value, str) and value == AUTO):
        return
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 < value <= 1:
        raise ValueError(
            "pass_budget must be None (the exact method), 'auto' (as many passes as "
            "min_fidelity asks) or a number in (0, 1], the fraction of the exact masked passes "
            f"to spend; got {value!r}"
        )


def check_min_fidelity(value: Any, pass_budget: Any) -> float:
    """``value`` as a float, with a clear error unless it is ``None`` (the default,
    :data:`DEFAULT_MIN_FIDELITY`) or a number in ``(0, 1]`` given with ``pass_budget="auto"``."""
    if value is None:
        return DEFAULT_MIN_FIDELITY
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 < value <= 1:
        raise ValueError(f"min_fidelity must be a number in (0, 1]; got {value!r}")
    if pass_budget != AUTO:
        raise ValueError(
            "min_fidelity sets how far pass_budget='auto' goes; with pass_budget="
            f"{pass_budget!r} it would do nothing: leave it out, or pass pass_budget='auto'"
        )
    return float(value)


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
    """Each mask of ``(M, 1, *spatial)`` on a coarse grid of the input, 7 cells a side:
    ``(M, 7 ** len(spatial))`` (``(M, 49)`` for images).

    Area averages for masks finer than the grid in every dimension, (bi/tri)linear resampling
    otherwise, so that a channel's features say how much of each cell of the input its mask
    unveils.
    """
    grid = (_GRID_SIDE,) * (masks.dim() - 2)
    if min(masks.shape[2:]) >= _GRID_SIDE:
        pooled = _ADAPTIVE_AVERAGE[len(grid)](masks, grid)
    else:
        pooled = upsample(masks, grid)
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


class BudgetSpent(NamedTuple):
    """What :func:`spend_budget` did for each example of a batch.

    Attributes:
        scored: ``(N, K)`` booleans: the channels scored by a masked pass.
        weights: ``(N, K)`` every channel's weight, scored or estimated.
        fidelity: ``(N,)`` the estimated Spearman correlation of the map with the exact one
            (:func:`estimate_fidelity`); ``1`` where every live channel was scored, NaN where
            the budget left no channel for the check.
    """

    scored: Tensor
    weights: Tensor
    fidelity: Tensor


def spend_budget(
    budget: float | str,
    masses: list[Tensor],
    live: list[Tensor],
    weights_of: Callable[[Tensor], Tensor],
    map_of: Callable[[Tensor], Tensor],
    features: Callable[[], Tensor] | None = None,
    min_fidelity: float = DEFAULT_MIN_FIDELITY,
) -> BudgetSpent:
    """Score some channels of each example, estimate the others' weights, and say how close
    the map is to the exact one.

    A number spends ``max(floor(budget * live channels), L)`` channels of an example with live
    channels in ``L`` layers (each layer's channel of most mass is always scored, so that no
    layer is estimated from nothing). ``"auto"`` spends rounds of growing budgets
    (:data:`AUTO_BUDGETS`), each continuing the last, until an example's fidelity reaches
    ``min_fidelity`` or every live channel is scored.

    In a round, the channels come by priority (:func:`next_channels`); the last tenth of
    the round's channels (one at least, while the layers keep one each) are the check: their
    weights are estimated before they are scored, and the differences
    (:func:`estimate_fidelity`) say how far the weights still estimated may be off. The
    check's channels are those the rule would score next anyway, so it costs the map
    nothing.

    Weights of unscored channels: without ``features`` (PCAM+, PCAM-), those of dead
    channels (what ``weights_of`` gives them); with them (PCAM+-), from the scored channels
    with similar masks (:func:`similar_channel_weights`). With ``features``, the first round
    spends half its channels by activation mass, then the rest by estimated contribution.

    Args:
        budget: In ``(0, 1]``, or ``"auto"``.
        masses: Per layer, ``(N, K_l)`` positive activation mass of each channel.
        live: Per layer, ``(N, K_l)`` booleans: the channel's mask is not all zero.
        weights_of: Scores the channels of an ``(N, K)`` boolean selection and returns every
            channel's weight, the unselected ones weighted as dead channels.
        map_of: The maps of ``(N, K)`` weights, ``(N, P)`` (any resolution: only their ranks
            are compared).
        features: ``features()`` gives :func:`mask_features` of every channel, ``(N, K, F)``.
        min_fidelity: Where ``"auto"`` stops.
    """
    alive = torch.cat(live, dim=1)
    widths = [mass.shape[1] for mass in masses]
    layers = torch.stack([layer.any(dim=1) for layer in live], dim=1).sum(dim=1)
    live_count = alive.sum(dim=1)
    features_now = features() if features is not None else None

    def estimated(weights: Tensor, scored: Tensor) -> Tensor:
        if features_now is None:
            return weights
        estimates = similar_channel_weights(weights, features_now, scored)
        return torch.where(alive & ~scored, estimates, weights)

    def score(selection: Tensor, weights: Tensor | None) -> Tensor:
        fresh = weights_of(selection)
        return fresh if weights is None else torch.where(selection, fresh, weights)

    count = len(alive)
    scored = torch.zeros_like(alive)
    weights: Tensor | None = None
    fidelity = torch.full((count,), math.nan, device=alive.device)
    going = torch.ones(count, dtype=torch.bool, device=alive.device)
    for level in AUTO_BUDGETS if budget == AUTO else (float(budget),):
        total = torch.minimum(torch.maximum(allowed_channels(alive, level), layers), live_count)
        already = scored.sum(dim=1)
        total = torch.where(going, total, already)
        # The check: the last tenth of the round, while every layer keeps its first channel;
        # none when every live channel is scored (the exact weights).
        check = torch.ceil(total * _CHECK_SHARE).long()
        check = torch.minimum(check, total - torch.maximum(layers, already)).clamp_min(0)
        check = torch.where(total >= live_count, 0, check)
        before = total - check
        if weights is None:  # the first round: one channel of each layer first
            priority = one_per_layer(deepest_first(cover_priority(masses, live), widths), widths)
            first = before
            if features_now is not None:  # half by mass, the rest by estimated contribution
                first = torch.minimum(
                    torch.maximum(allowed_channels(alive, level / 2), layers), before
                )
            scored = choose(priority, first)
            weights = score(scored, None)
        missing = (before - scored.sum(dim=1)).clamp_min(0)
        if bool((missing > 0).any()):
            more = next_channels(
                masses, live, scored, estimated(weights, scored), features_now is not None, missing
            )
            weights, scored = score(more, weights), scored | more
        if bool((check > 0).any()):
            guesses = estimated(weights, scored)
            checked = next_channels(masses, live, scored, guesses, features_now is not None, check)
            weights, scored = score(checked, weights), scored | checked
            errors = [
                (weights[example] - guesses[example])[checked[example]] for example in range(count)
            ]
            final = estimated(weights, scored)
            measured = estimate_fidelity(final, alive & ~scored, errors, map_of).to(fidelity)
            fidelity = torch.where(check > 0, measured, fidelity)
        complete = scored.sum(dim=1) >= live_count
        fidelity = torch.where(complete, 1.0, fidelity)
        going &= ~complete & ~(fidelity >= min_fidelity)
        if budget != AUTO or not bool(going.any()):
            break
    assert weights is not None
    return BudgetSpent(scored, estimated(weights, scored), fidelity)


def next_channels(
    masses: list[Tensor],
    live: list[Tensor],
    scored: Tensor,
    weights: Tensor,
    by_contribution: bool,
    count: Tensor,
) -> Tensor:
    """``(N, K)`` booleans: the ``count[n]`` unscored channels of each example to score next.

    By :func:`cover_priority` of the activation masses or, ``by_contribution``, of the
    estimated contributions ``w_k m_k``, the scored channels counting as covered, and
    :func:`deepest_first`.
    """
    widths = [mass.shape[1] for mass in masses]
    if by_contribution:
        masses = [
            weight * mass for weight, mass in zip(weights.split(widths, dim=1), masses, strict=True)
        ]
    priority = cover_priority(masses, live, list(scored.split(widths, dim=1)))
    return choose(deepest_first(priority, widths), count) & (priority >= 0)


def deepest_first(priority: Tensor, widths: list[int]) -> Tensor:
    """``priority`` with every layer's but the deepest's halved: the budget keeps the deepest
    layer's unscored share of mass at half the others'.

    The recursion multiplies every finer stage by the deepest layer's upsampled map, so an
    error there moves every stage: replayed on 29 photos, making one layer's weights exact
    helped most by far for the deepest one.
    """
    scale = torch.full((priority.shape[1],), 1.0 / _DEEPEST_GAIN, dtype=priority.dtype)
    scale[priority.shape[1] - widths[-1] :] = 1.0
    return torch.where(priority >= 0, priority * scale, priority)


def estimate_fidelity(
    weights: Tensor, estimated: Tensor, errors: list[Tensor], map_of: Callable[[Tensor], Tensor]
) -> Tensor:
    """The expected Spearman correlation of each example's map with the exact one, ``(N,)``.

    Each draw adds to every ``estimated`` weight an error drawn (with replacement) from the
    example's measured ``errors``, and the mean correlation of the drawn maps with the map of
    ``weights`` over :data:`_DRAWS` draws is the estimate. The errors are those of the check,
    the channels scored last (of more mass than the channels still estimated): the estimate
    tends to understate the fidelity, the safe side. Draws are seeded per example, so that a
    batch gives each example the estimate it gets alone.

    Args:
        weights: ``(N, K)``, the map's weights.
        estimated: ``(N, K)`` booleans: the weights still estimated.
        errors: Per example, the check's ``scored - estimated`` weights, ``(C_n,)``.
        map_of: The maps of ``(N, K)`` weights, ``(N, P)``.
    """
    reference = map_of(weights)
    total = torch.zeros(len(weights), dtype=torch.float64)
    noise = [torch.Generator().manual_seed(0) for _ in errors]
    for _ in range(_DRAWS):
        drawn = weights.clone()
        for example, (error, generator) in enumerate(zip(errors, noise, strict=True)):
            positions = estimated[example].nonzero().squeeze(1)
            if len(error) == 0 or len(positions) == 0:
                continue
            picks = torch.randint(len(error), (len(positions),), generator=generator)
            drawn[example, positions] += error[picks.to(error.device)].to(drawn)
        total += rank_correlation(map_of(drawn), reference)
    return total / _DRAWS


def rank_correlation(a: Tensor, b: Tensor) -> Tensor:
    """Spearman's rank correlation of each row of ``a`` with that of ``b`` (``(N, P)``), ties
    given their mean rank as SciPy does, ``(N,)`` in float64; ``1`` for two constant rows."""
    ranks_a, ranks_b = _mean_ranks(a), _mean_ranks(b)
    ranks_a = ranks_a - ranks_a.mean(dim=1, keepdim=True)
    ranks_b = ranks_b - ranks_b.mean(dim=1, keepdim=True)
    norms = ranks_a.norm(dim=1) * ranks_b.norm(dim=1)
    both_flat = norms == 0
    # Rounding can take identical rankings a hair past 1.
    correlation = ((ranks_a * ranks_b).sum(dim=1) / norms.clamp_min(1e-300)).clamp(-1.0, 1.0)
    return torch.where(both_flat, 1.0, correlation)


def _mean_ranks(values: Tensor) -> Tensor:
    rows = []
    for row in values.detach().double().cpu():
        ordered, order = row.sort(stable=True)
        _, inverse, counts = torch.unique_consecutive(
            ordered, return_inverse=True, return_counts=True
        )
        ends = counts.cumsum(0).double()
        ranks = torch.empty_like(row)
        ranks[order] = (ends - (counts.double() - 1) / 2)[inverse]
        rows.append(ranks)
    return torch.stack(rows)


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
