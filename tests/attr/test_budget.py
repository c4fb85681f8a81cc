"""The pass budget: passes spent, exactness at 1, batches, known answers, the estimates' rules."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from captum_polycam import PolyCam
from captum_polycam.attr import budget
from captum_polycam.attr.budget import (
    allowed_channels,
    choose,
    cover_priority,
    deepest_first,
    estimate_fidelity,
    mask_features,
    next_channels,
    rank_correlation,
    similar_channel_weights,
    spend_budget,
)
from captum_polycam.attr.capture import capture_activations, resolve_layers
from captum_polycam.attr.poly_cam import _LayerMasks

LAYERS = ["block1", "block2", "block3"]
MODES = {"plus": 1, "minus": 1, "plusminus": 2}


def count_rows(model: nn.Module) -> list[int]:
    """The batch sizes that reach ``model``, recorded by a forward pre-hook."""
    sizes: list[int] = []
    model.register_forward_pre_hook(lambda _module, args: sizes.append(len(args[0])))
    return sizes


@pytest.mark.parametrize("bad", [0, 0.0, -0.5, 1.5, float("nan"), True, "0.5", "Auto", [0.5]])
def test_bad_budgets_are_named(bad: object, tiny_cnn: nn.Module) -> None:
    with pytest.raises(ValueError, match=r"pass_budget must be None .*'auto'.* in \(0, 1\]"):
        PolyCam(tiny_cnn, LAYERS, pass_budget=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("variant", ["plus", "minus", "plusminus"])
def test_budget_one_gives_the_exact_maps(
    variant: str, tiny_cnn: nn.Module, tiny_inputs: Tensor
) -> None:
    # A fixed pass size, so that both runs batch their passes alike, bit for bit.
    exact = PolyCam(tiny_cnn, LAYERS, variant).decompose(tiny_inputs, perturbations_per_eval=4)
    full = PolyCam(tiny_cnn, LAYERS, variant, pass_budget=1.0).decompose(
        tiny_inputs, perturbations_per_eval=4
    )
    assert torch.equal(full.maps, exact.maps)
    assert all(torch.equal(a, b) for a, b in zip(full.stages, exact.stages, strict=True))
    assert full.passes == full.exact_passes == exact.passes == exact.exact_passes > 0


@pytest.mark.parametrize("variant", ["plus", "minus", "plusminus"])
@pytest.mark.parametrize("budget", [0.5, 0.2, 0.01])
def test_the_budget_is_respected(
    variant: str, budget: float, tiny_cnn: nn.Module, tiny_inputs: Tensor
) -> None:
    exact = PolyCam(tiny_cnn, LAYERS, variant).decompose(tiny_inputs[:1])
    live = exact.exact_passes // MODES[variant]
    sizes = count_rows(tiny_cnn)
    result = PolyCam(tiny_cnn, LAYERS, variant, pass_budget=budget).decompose(tiny_inputs[:1])
    # One channel of each layer at least: 0.01 of the 18 channels would score none.
    allowed = MODES[variant] * max(math.floor(budget * live), len(LAYERS))
    black = 0 if variant == "minus" else 1
    assert result.exact_passes == exact.exact_passes
    assert result.passes == allowed
    assert sum(sizes) == 1 + black + allowed  # the clean pass, the black image, the masks
    assert result.maps.shape == (1, 1, 16, 16)
    assert 0 <= float(result.maps.min()) <= float(result.maps.max()) <= 1


@pytest.mark.parametrize("variant", ["plus", "minus", "plusminus"])
@pytest.mark.parametrize("budget", [1e-9, 0.01])
def test_a_tiny_budget_scores_one_channel_of_each_layer(
    variant: str, budget: float, tiny_cnn: nn.Module, tiny_inputs: Tensor
) -> None:
    sizes = count_rows(tiny_cnn)
    result = PolyCam(tiny_cnn, LAYERS, variant, pass_budget=budget).decompose(tiny_inputs)
    # 1e-9 and 0.01 of 18 channels would score none; one per layer and example instead.
    assert result.passes == MODES[variant] * len(LAYERS) * len(tiny_inputs) < result.exact_passes
    black = 0 if variant == "minus" else len(tiny_inputs)
    assert sum(sizes) == len(tiny_inputs) + black + result.passes  # clean, black, masks


@pytest.mark.parametrize("variant", ["plus", "minus", "plusminus"])
def test_the_black_images_come_back_as_a_value_scored_once(
    variant: str, tiny_cnn: nn.Module, tiny_inputs: Tensor
) -> None:
    polycam = PolyCam(tiny_cnn, LAYERS, variant, perturbations_per_eval=1)
    calls = resolve_layers(tiny_cnn, LAYERS)
    batch, activations = capture_activations(lambda: polycam._scorer.prepare(tiny_inputs), calls)
    layers = [_LayerMasks.of(activation) for activation in activations]
    live = torch.cat([layer.live for layer in layers], dim=1)
    sizes = count_rows(tiny_cnn)
    first = polycam._score_masks(batch, layers, live, None, None, False)
    unveils = variant != "minus"
    # The black image X * 0 of each example, in the same passes as the masks, scored as the
    # model scores black images.
    assert sum(sizes) == (len(tiny_inputs) if unveils else 0) + MODES[variant] * int(live.sum())
    if unveils:
        zeros = tiny_cnn(torch.zeros_like(tiny_inputs)).softmax(dim=1)
        expected = zeros.gather(1, batch.targets.index).squeeze(1)
        torch.testing.assert_close(first.black, expected)
    else:
        assert first.black is None and first.unveiled is None
    # Given back, they are not scored again.
    sizes.clear()
    again = polycam._score_masks(batch, layers, live, first.black, None, False)
    assert sum(sizes) == MODES[variant] * int(live.sum())
    assert again.black is first.black
    for old, new in [(first.unveiled, again.unveiled), (first.hidden, again.hidden)]:
        assert (old is None) == (new is None)
        if old is not None:
            torch.testing.assert_close(new, old)


@pytest.mark.parametrize("features", [False, True])
def test_spend_budget_scores_the_channel_of_most_mass_of_each_layer(features: bool) -> None:
    # Layer A: masses 1, 5, 2; layer B: live channels of no positive mass (every channel at
    # priority 1, which must not crowd out layer C); layer C: 3, 4, a dead one, 0.5.
    masses = [
        torch.tensor([[1.0, 5.0, 2.0]]),
        torch.tensor([[0.0, 0.0]]),
        torch.tensor([[3.0, 4.0, 0.0, 0.5]]),
    ]
    live = [
        torch.tensor([[True, True, True]]),
        torch.tensor([[True, True]]),
        torch.tensor([[True, True, False, True]]),
    ]
    asked: list[list[bool]] = []

    def weights_of(scored: Tensor) -> Tensor:
        asked.append(scored[0].tolist())
        return torch.where(scored, 0.5, 0.0)

    scored, weights, fidelity = spend_budget(
        1e-9,
        masses,
        live,
        weights_of,
        lambda weights: weights,
        (lambda: torch.ones(1, 9, 49)) if features else None,
    )
    assert torch.isnan(fidelity).all()  # one channel per layer leaves none for the check
    one_each = [False, True, False, True, False, False, True, False, False]
    assert scored[0].tolist() == one_each
    assert asked[0] == one_each  # scored first, with nothing left for a second round
    assert all(not any(selection) for selection in asked[1:])
    # Estimated from the scored channels' masks (all alike) for PCAM+-, else as dead ones.
    expected = [0.5] * 7 + [0.0, 0.5] if features else [0.5 * s for s in one_each]
    assert weights[0].tolist() == expected


@pytest.mark.parametrize("variant", ["plus", "minus", "plusminus"])
def test_a_batch_equals_its_examples_one_by_one(
    variant: str, tiny_cnn: nn.Module, tiny_inputs: Tensor
) -> None:
    polycam = PolyCam(tiny_cnn, LAYERS, variant, pass_budget=0.4)
    targets = torch.tensor([1, 0, 2])
    batch = polycam.decompose(tiny_inputs, targets)
    singles = [
        polycam.decompose(x[None], t[None]) for x, t in zip(tiny_inputs, targets, strict=True)
    ]
    torch.testing.assert_close(batch.maps, torch.cat([s.maps for s in singles]))
    assert batch.passes == sum(s.passes for s in singles)


class ObjectOnBackground(nn.Module):
    """One full-resolution layer of 16 channels, one per 4 x 4 cell of a 16 x 16 image: the
    channel is the image's mean absolute value on its cell and zero elsewhere. The score only
    sees the top-left 8 x 8 "object" (four cells): softmax of ``[mean |x| over it, 0]``.

    Unveiling a background cell shows the model nothing of the object, exactly as the black
    image; hiding it leaves the object whole, exactly as the clean input. So the weight of a
    background channel is the dead channel's, and the budget's estimate is exact for PCAM+ and
    PCAM- once the four brighter object cells are scored.
    """

    def __init__(self) -> None:
        super().__init__()
        self.cells = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        energy = x.abs().mean(dim=1, keepdim=True)
        cells = torch.zeros(16, 16, 16)
        for k in range(16):
            row, column = divmod(k, 4)
            cells[k, 4 * row : 4 * row + 4, 4 * column : 4 * column + 4] = 1
        self.cells(energy * cells[None])
        evidence = energy[:, 0, :8, :8].mean(dim=(1, 2)) * 4
        return torch.stack([evidence, torch.zeros_like(evidence)], dim=1)


@pytest.mark.parametrize("variant", ["plus", "minus"])
def test_known_answer_background_channels_weigh_as_dead_ones(variant: str) -> None:
    generator = torch.Generator().manual_seed(0)
    image = 0.1 + 0.05 * torch.rand(1, 3, 16, 16, generator=generator)
    image[..., :8, :8] += 1.0  # a bright object: its four cells hold the most activation mass
    model = ObjectOnBackground().eval()
    exact = PolyCam(model, ["cells"], variant).decompose(image, 0)
    # Five channels: the four object cells, then one background cell, the check, whose
    # estimate (a dead channel's weight) is its score: the estimate is exact, and says so.
    budgeted = PolyCam(model, ["cells"], variant, pass_budget=5 / 16).decompose(image, 0)
    assert (budgeted.passes, budgeted.exact_passes) == (5, 16)
    torch.testing.assert_close(budgeted.maps, exact.maps, atol=1e-6, rtol=0)
    assert budgeted.fidelity.tolist() == [1.0]
    assert exact.fidelity.tolist() == [1.0]


def test_allowed_channels_rounds_down_but_not_below_an_exact_fraction() -> None:
    live = torch.tensor([[True] * 10, [True] * 3 + [False] * 7])
    assert allowed_channels(live, 0.3).tolist() == [3, 0]
    assert allowed_channels(live, 1 / 3).tolist() == [3, 1]
    assert allowed_channels(live, 1.0).tolist() == [10, 3]


def test_cover_priority_by_hand() -> None:
    # Layer A: masses 6, 3, 1 (total 10); layer B: masses 1, 1 and a dead channel.
    masses = [torch.tensor([[3.0, 6.0, 1.0]]), torch.tensor([[1.0, 1.0, 0.0]])]
    live = [torch.tensor([[True, True, True]]), torch.tensor([[True, True, False]])]
    priority = cover_priority(masses, live)
    # A: 6 comes first (1 unscored), then 3 (0.4 left), then 1 (0.1); B: 1, then 0.5; dead -1.
    torch.testing.assert_close(priority, torch.tensor([[0.4, 1.0, 0.1, 1.0, 0.5, -1.0]]))
    chosen = choose(priority, torch.tensor([3]))
    assert chosen.tolist() == [[False, True, False, True, True, False]]


def test_similar_channel_weights_by_hand() -> None:
    features = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]]])
    weights = torch.tensor([[0.8, 0.2, float("nan"), float("nan")]])
    scored = torch.tensor([[True, True, False, False]])
    estimates = similar_channel_weights(weights, features, scored)
    # Channel 2 is at cosine 1/sqrt(2) of both: the mean. Channel 3 has channel 0's mask.
    torch.testing.assert_close(estimates[0, 2], torch.tensor(0.5))
    torch.testing.assert_close(estimates[0, 3], torch.tensor(0.8))
    torch.testing.assert_close(estimates[0, :2], torch.tensor([0.8, 0.2]))


def test_mask_features_average_the_cells_of_the_image() -> None:
    mask = torch.zeros(1, 1, 14, 14)
    mask[..., :2, :2] = 1.0  # exactly the top-left cell of the 7 x 7 grid
    features = mask_features(mask)
    assert features.shape == (1, 49)
    assert features[0, 0] == 1.0 and float(features[0, 1:].abs().sum()) == 0.0
    coarse = mask_features(torch.ones(1, 1, 2, 2))  # coarser than the grid: resampled
    torch.testing.assert_close(coarse, torch.ones(1, 49))


@pytest.mark.parametrize("bad", [0, 1.5, float("nan"), True, "0.9"])
def test_bad_min_fidelities_are_named(bad: object, tiny_cnn: nn.Module) -> None:
    with pytest.raises(ValueError, match=r"min_fidelity must be a number in \(0, 1\]"):
        PolyCam(tiny_cnn, LAYERS, pass_budget="auto", min_fidelity=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("budget", [None, 0.5])
def test_min_fidelity_is_refused_where_it_would_do_nothing(budget, tiny_cnn: nn.Module) -> None:
    with pytest.raises(ValueError, match="min_fidelity sets how far pass_budget='auto' goes"):
        PolyCam(tiny_cnn, LAYERS, pass_budget=budget, min_fidelity=0.9)


@pytest.mark.parametrize("variant", ["plus", "minus", "plusminus"])
@pytest.mark.parametrize("min_fidelity", [0.9, 1.0])
def test_auto_runs_rounds_until_the_estimate_reaches_min_fidelity(
    variant: str, min_fidelity: float, tiny_cnn: nn.Module, tiny_inputs: Tensor
) -> None:
    exact = PolyCam(tiny_cnn, LAYERS, variant).decompose(tiny_inputs, perturbations_per_eval=4)
    polycam = PolyCam(tiny_cnn, LAYERS, variant, pass_budget="auto", min_fidelity=min_fidelity)
    rounds = []
    original = budget.estimate_fidelity

    def spy(*args: Any) -> Tensor:
        rounds.append(original(*args))
        return rounds[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(budget, "estimate_fidelity", spy)
        auto = polycam.decompose(tiny_inputs, perturbations_per_eval=4)
    # Each example stops at the first round whose estimate reaches min_fidelity, or with
    # every live channel scored (its fidelity then 1, its map exact).
    reached = torch.stack(rounds) >= min_fidelity - 1e-9
    first = torch.where(reached.any(dim=0), reached.double().argmax(dim=0), len(rounds) - 1)
    for example, round_ in enumerate(first.tolist()):
        if bool(reached[round_, example]):
            torch.testing.assert_close(auto.fidelity[example], rounds[round_][example].float())
        else:
            assert auto.fidelity[example] == 1.0
    assert auto.exact_passes == exact.exact_passes
    assert auto.passes <= auto.exact_passes
    if auto.passes == auto.exact_passes:
        torch.testing.assert_close(auto.maps, exact.maps)
    assert f"pass_budget='auto', min_fidelity={min_fidelity}" in repr(polycam)


@pytest.mark.parametrize("variant", ["plus", "plusminus"])
def test_fidelity_of_a_batch_equals_its_examples_one_by_one(
    variant: str, tiny_cnn: nn.Module, tiny_inputs: Tensor
) -> None:
    for pass_budget in (0.5, "auto"):
        polycam = PolyCam(tiny_cnn, LAYERS, variant, pass_budget=pass_budget)
        batch = polycam.decompose(tiny_inputs, perturbations_per_eval=1)
        singles = [polycam.decompose(x[None], perturbations_per_eval=1) for x in tiny_inputs]
        torch.testing.assert_close(batch.fidelity, torch.cat([s.fidelity for s in singles]))
        torch.testing.assert_close(batch.maps, torch.cat([s.maps for s in singles]))
        assert batch.passes == sum(s.passes for s in singles)
        assert bool(((batch.fidelity > -1) & (batch.fidelity <= 1)).all())


def test_rank_correlation_equals_scipys_with_ties() -> None:
    stats = pytest.importorskip("scipy.stats")
    generator = torch.Generator().manual_seed(3)
    a = torch.randint(0, 5, (4, 40), generator=generator).float()  # many ties
    b = a + torch.randn(4, 40, generator=generator)
    b[0] = b[0].relu()
    expected = [stats.spearmanr(x.numpy(), y.numpy()).statistic for x, y in zip(a, b, strict=True)]
    torch.testing.assert_close(rank_correlation(a, b), torch.tensor(expected, dtype=torch.float64))
    assert rank_correlation(torch.ones(1, 5), torch.ones(1, 5)).tolist() == [1.0]


def test_estimate_fidelity_by_hand() -> None:
    weights = torch.tensor([[1.0, 0.5, 0.0], [1.0, 0.5, 0.0]])
    estimated = torch.tensor([[False, False, True], [False, False, True]])
    patterns = torch.tensor([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 9.0]])

    def map_of(w: Tensor) -> Tensor:
        return w @ patterns

    # No error: the map stays. An error of 1 on channel 2 (from 0): the map [3, 2.5, 2, 10.5]
    # against [3, 2.5, 2, 1.5], ranks 3 2 1 4 against 4 3 2 1: 1 - 6 * 12 / (4 * 15) = -0.2.
    errors = [torch.zeros(2), torch.tensor([1.0])]
    fidelity = estimate_fidelity(weights, estimated, errors, map_of)
    torch.testing.assert_close(fidelity[0], torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(fidelity[1], torch.tensor(-0.2, dtype=torch.float64))


def test_deepest_first_halves_the_other_layers_priorities() -> None:
    priority = torch.tensor([[0.8, -1.0, 0.6, 0.2]])
    halved = deepest_first(priority, [2, 2])
    torch.testing.assert_close(halved, torch.tensor([[0.4, -1.0, 0.6, 0.2]]))
    # Masses 6, 4 | 2, 2: after the first of each, the deepest layer's second channel (half
    # its mass unscored) comes before the first layer's (0.4, halved to 0.2).
    masses = [torch.tensor([[6.0, 4.0]]), torch.tensor([[2.0, 2.0]])]
    live = [torch.ones(1, 2, dtype=torch.bool)] * 2
    scored = torch.tensor([[True, False, True, False]])
    chosen = next_channels(masses, live, scored, torch.zeros(1, 4), False, torch.tensor([1]))
    assert chosen.tolist() == [[False, False, False, True]]
