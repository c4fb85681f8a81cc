"""Poly-CAM on signals (N x C x L) and volumes (N x C x D x H x W), as on images."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captum_polycam import PolyCam, describe_layers, discover_layers
from tests.reference import normalise, reference_polycam

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_POOL = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}


class TinyNet(nn.Module):
    """Three resolutions (full, half, quarter), ReLU activations, 3 classes, in ``dims``
    spatial dimensions. ``kernel`` may be a tuple, to lift a network into more dimensions."""

    def __init__(self, dims: int, kernel: int | tuple[int, ...] = 3, padding: Any = 1) -> None:
        super().__init__()
        conv = _CONV[dims]
        stride = 2 if isinstance(kernel, int) else tuple(1 if k == 1 else 2 for k in kernel)
        self.block1 = nn.Sequential(conv(2, 4, kernel, padding=padding), nn.ReLU())
        self.block2 = nn.Sequential(conv(4, 6, kernel, stride=stride, padding=padding), nn.ReLU())
        self.block3 = nn.Sequential(conv(6, 8, kernel, stride=stride, padding=padding), nn.ReLU())
        self.pool = _POOL[dims](1)
        self.head = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.block3(self.block2(self.block1(x)))).flatten(1))


LAYERS = ["block1", "block2", "block3"]


def _seeded(dims: int) -> TinyNet:
    torch.manual_seed(dims)
    return TinyNet(dims).eval()


def _inputs(*spatial: int, count: int = 2) -> Tensor:
    return torch.rand(count, 2, *spatial, generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize(("dims", "spatial"), [(1, (16,)), (3, (8, 8, 8))])
@pytest.mark.parametrize("variant", ["plus", "minus", "plusminus"])
def test_signals_and_volumes_follow_the_literal_reference(
    dims: int, spatial: tuple[int, ...], variant: str
) -> None:
    # In float64: PCAM-'s weights are differences of nearby probabilities (about 1/3 each for
    # this random network), so in float32 both sides carry rounding of 1e-5 that depends on the
    # CPU's convolution kernels (AVX2 and AVX-512 round a batch and a single pass differently).
    # In float64 the two agree to the reference's float32 resampling, about 2e-7.
    model = _seeded(dims).double()
    inputs = _inputs(*spatial).double()
    result = PolyCam(model, LAYERS, variant).decompose(inputs, target=[0, 2])
    assert result.maps.shape == (2, 1, *spatial)
    for i, target in enumerate([0, 2]):
        layers = [getattr(model, name) for name in LAYERS]
        expected = reference_polycam(model, inputs[i : i + 1], layers, target, variant)
        for stage, reference in zip(result.stages, expected, strict=True):
            np.testing.assert_allclose(stage[i, 0].numpy(), reference, atol=1e-6)


class PositionScore(nn.Module):
    r"""A score whose Poly-CAM is known in closed form, in any number of spatial dimensions.

    Its logit is :math:`\sum_u c_u x_u` for a fixed positive ramp ``c`` (the second logit is
    0). ``fine`` has one channel per position, the indicator of that position; ``coarse`` one
    channel per cell of 2 positions a side, the indicator of that cell at half resolution.
    Neither depends on the input, so every mask is known: PCAM+ with ``score_fn="logit"``
    weighs ``fine``'s channel ``k`` by ``c_k x_k`` and ``coarse``'s cell ``j`` by
    ``sum_u c_u x_u Up(e_j)(u)``.
    """

    def __init__(self, spatial: tuple[int, ...]) -> None:
        super().__init__()
        self.spatial = spatial
        positions = int(np.prod(spatial))
        self.register_buffer("c", torch.linspace(0.5, 1.5, positions).view(spatial))
        self.fine = nn.Identity()
        self.coarse = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        half = tuple(s // 2 for s in self.spatial)
        for layer, size in ((self.fine, self.spatial), (self.coarse, half)):
            cells = int(np.prod(size))
            indicators = torch.eye(cells, dtype=x.dtype, device=x.device).view(1, cells, *size)
            layer(indicators.expand(len(x), *indicators.shape[1:]))
        logit = (x[:, 0] * self.c).flatten(1).sum(dim=1)
        return torch.stack([logit, torch.zeros_like(logit)], dim=1)


def _linear(maps: Tensor, size: tuple[int, ...]) -> Tensor:
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
    return F.interpolate(maps, size=size, mode=mode, align_corners=False)


@pytest.mark.parametrize("spatial", [(8,), (4, 6), (4, 4, 6)])
def test_a_score_known_in_closed_form_gives_its_maps(spatial: tuple[int, ...]) -> None:
    # Not through the package's own arithmetic: every value below is the formula, spelled out.
    model = PositionScore(spatial).eval()
    x = torch.rand(1, 1, *spatial, generator=torch.Generator().manual_seed(3)) + 0.1
    result = PolyCam(model, ["fine", "coarse"], "plus", score_fn="logit").decompose(x, target=0)
    fine, coarse = result.saliencies
    # fine: channel k's mask is the indicator of position k, so w_k = c_k x_k and
    # S_fine = relu(sum_k w_k e_k) = c * x.
    torch.testing.assert_close(fine[0, 0], model.c * x[0, 0])
    # coarse: cell j's mask is its indicator (p99.9 of one 1 among 0s is below 1: clipped to 1)
    # upsampled (bi/tri)linearly, so w_j = sum_u c_u x_u Up(e_j)(u) and S_coarse(j) = w_j.
    half = tuple(s // 2 for s in spatial)
    cells = torch.eye(int(np.prod(half))).view(-1, 1, *half)
    masks = _linear(cells, spatial)[:, 0]
    weights = (masks * model.c * x[0, 0]).flatten(1).sum(dim=1)
    torch.testing.assert_close(coarse[0, 0], weights.view(half))
    # The recursion: M = relu(LNorm(S_fine, half) * Up(S_coarse)), LNorm dividing by the fine
    # map's own down-then-up resampling; the attribution is its percentile normalisation.
    smoothed = _linear(_linear(fine, half), spatial)
    composite = (fine / smoothed * _linear(coarse, spatial)).relu()
    expected = normalise(composite[0, 0].double().numpy())
    np.testing.assert_allclose(result.maps[0, 0].numpy(), expected, atol=1e-6)


def _lift(model: TinyNet, dims: int) -> TinyNet:
    """``model`` in one more spatial dimension, of size 1 and first: its kernels gain an axis
    of size 1, so that it computes the same on inputs of depth (or height) 1."""
    lifted = TinyNet(dims + 1, kernel=(1,) + (3,) * dims, padding=(0,) + (1,) * dims).eval()
    with torch.no_grad():
        for name in LAYERS:
            source, target = getattr(model, name)[0], getattr(lifted, name)[0]
            target.weight.copy_(source.weight.unsqueeze(2))
            target.bias.copy_(source.bias)
        lifted.head.load_state_dict(model.head.state_dict())
    return lifted


@pytest.mark.parametrize(("dims", "spatial"), [(2, (12, 16)), (1, (16,))])
@pytest.mark.parametrize("variant", ["plus", "plusminus"])
def test_a_network_lifted_by_an_axis_of_size_1_gives_the_same_maps(
    dims: int, spatial: tuple[int, ...], variant: str
) -> None:
    model = _seeded(dims)
    lifted = _lift(model, dims)
    inputs = _inputs(*spatial)
    expected = PolyCam(model, LAYERS, variant).decompose(inputs)
    result = PolyCam(lifted, LAYERS, variant).decompose(inputs.unsqueeze(2))
    for ours, theirs in zip(result.stages, expected.stages, strict=True):
        torch.testing.assert_close(ours.squeeze(2), theirs, atol=1e-5, rtol=1e-5)
    assert result.passes == expected.passes


@pytest.mark.parametrize(
    ("dims", "spatial", "described"),
    [
        (1, (32,), ["block1 (4@32)", "block2 (6@16)", "block3 (8@8)"]),
        (3, (8, 8, 16), ["block1 (4@8x8x16)", "block2 (6@4x4x8)", "block3 (8@2x2x4)"]),
    ],
)
def test_discovery_finds_the_stages_of_signal_and_volume_networks(
    dims: int, spatial: tuple[int, ...], described: list[str]
) -> None:
    model = _seeded(dims)
    inputs = _inputs(*spatial, count=1)
    assert [str(layer) for layer in describe_layers(model, inputs)] == described
    assert discover_layers(model, inputs) == [text.split(" ")[0] for text in described]
    maps = PolyCam(model, variant="plus").attribute(inputs)
    assert maps.shape == (1, 1, *spatial)


def test_a_volume_batch_equals_its_examples_one_by_one_and_leaves_no_hooks() -> None:
    model = _seeded(3)
    inputs = _inputs(6, 8, 8, count=3)
    polycam = PolyCam(model, LAYERS, "plusminus", pass_budget=0.5)
    batch = polycam.decompose(inputs, target=[0, 1, 2])
    for i in range(3):
        single = polycam.decompose(inputs[i : i + 1], target=i)
        torch.testing.assert_close(batch.maps[i : i + 1], single.maps)
        torch.testing.assert_close(batch.fidelity[i : i + 1], single.fidelity)
    assert batch.passes < batch.exact_passes
    assert all(
        not module._forward_hooks and not module._forward_pre_hooks for module in model.modules()
    )


def test_a_volume_is_refused_with_a_layer_of_other_dimensions() -> None:
    class Mixed(TinyNet):
        """A volume network whose ``flat`` layer folds depth into channels: 2-D maps."""

        def __init__(self) -> None:
            super().__init__(3)
            self.flat = nn.Identity()

        def forward(self, x: Tensor) -> Tensor:
            a = self.block1(x)
            self.flat(a.flatten(1, 2))
            return self.head(self.pool(self.block3(self.block2(a))).flatten(1))

    model = Mixed().eval()
    with pytest.raises(ValueError, match=r"layers: flat \(16@8x8\) gives 2-D \(N x C x h x w\) "):
        PolyCam(model, ["flat", "block3"]).attribute(_inputs(4, 8, 8, count=1), target=0)


def test_inputs_without_a_channel_axis_are_refused() -> None:
    model = _seeded(3)
    with pytest.raises(ValueError, match="inputs must be a 3-D float tensor N x C x L, 4-D"):
        PolyCam(model, LAYERS).attribute(torch.rand(2, 8), target=0)
