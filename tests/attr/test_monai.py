"""Poly-CAM on the networks medical imaging uses: MONAI's, in 3D and 1D, with random weights
(no pretrained medical weights can be downloaded here; the method does not need them)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from captum_polycam import PolyCam, describe_layers, discover_layers

_EXTRA = "MONAI is the medical extra: pip install 'captum-polycam[medical]'"
nets = pytest.importorskip("monai.networks.nets", reason=_EXTRA)

# Each network at a size where it keeps at least three resolutions; its discovered stages.
NETWORKS: dict[str, tuple[Callable[[int], nn.Module], tuple[int, ...]]] = {
    "DenseNet121-3d": (lambda dims: nets.DenseNet121(dims, 1, 2), (32, 32, 32)),
    "resnet18-3d": (
        lambda dims: nets.resnet18(spatial_dims=dims, n_input_channels=1, num_classes=2),
        (32, 32, 32),
    ),
    "resnet50-3d": (
        lambda dims: nets.resnet50(spatial_dims=dims, n_input_channels=1, num_classes=2),
        (32, 32, 32),
    ),
    "SEResNet50-3d": (
        lambda dims: nets.SEResNet50(spatial_dims=dims, in_channels=1, num_classes=2),
        (32, 32, 32),
    ),
    "DenseNet121-1d": (lambda dims: nets.DenseNet121(dims, 1, 2), (256,)),
    "resnet18-1d": (
        lambda dims: nets.resnet18(spatial_dims=dims, n_input_channels=1, num_classes=2),
        (256,),
    ),
}


@pytest.fixture(scope="module", params=list(NETWORKS))
def network(request: pytest.FixtureRequest) -> tuple[nn.Module, torch.Tensor]:
    factory, spatial = NETWORKS[request.param]
    torch.manual_seed(0)
    model = factory(len(spatial)).eval()
    inputs = torch.rand(2, 1, *spatial, generator=torch.Generator().manual_seed(1))
    return model, inputs


def test_discovery_finds_the_resolution_stages(network) -> None:
    model, inputs = network
    layers = describe_layers(model, inputs)
    assert len(layers) >= 3, layers
    spatial = inputs.dim() - 2
    assert all(len(layer.size) == spatial for layer in layers)
    sizes = [layer.size[0] for layer in layers]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)
    assert discover_layers(model, inputs) == [layer.name for layer in layers]


def test_a_batch_gives_its_examples_maps_and_leaves_no_hooks(network) -> None:
    # A small budget keeps the test short; the exact method runs the same code on more passes.
    model, inputs = network
    polycam = PolyCam(model, variant="plus", pass_budget=0.02)
    batch = polycam.decompose(inputs, target=[0, 1])
    assert batch.maps.shape == (2, 1, *inputs.shape[2:])
    assert float(batch.maps.amin()) >= 0 and 0 < float(batch.maps.amax()) <= 1
    for i in range(2):
        single = polycam.decompose(inputs[i : i + 1], target=i)
        torch.testing.assert_close(batch.maps[i : i + 1], single.maps, atol=1e-5, rtol=1e-4)
    assert all(
        not module._forward_hooks and not module._forward_pre_hooks for module in model.modules()
    )
