"""Automatic layer discovery on real architectures, and reading layer outputs."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import Tensor, nn

from captum_polycam import discover_layers
from captum_polycam.attr.layers import capture_activations, resolve_layers

IMAGE = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))

TORCHVISION_LAYERS = {
    "vgg16": ["features.3", "features.8", "features.15", "features.22", "features.29", "features"],
    "resnet50": ["relu", "layer1", "layer2", "layer3", "layer4"],
    "mobilenet_v3_large": [
        "features.1.block.0",
        "features.3.block.1",
        "features.6.block.1",
        "features.12.block.1",
        "features",
    ],
    "convnext_tiny": ["features.1", "features.3", "features.5", "features"],
}
SHAPES = {
    "vgg16": [(64, 224), (128, 112), (256, 56), (512, 28), (512, 14), (512, 7)],
    "resnet50": [(64, 112), (256, 56), (512, 28), (1024, 14), (2048, 7)],
    "mobilenet_v3_large": [(16, 112), (72, 56), (120, 28), (672, 14), (960, 7)],
    "convnext_tiny": [(96, 56), (192, 28), (384, 14), (768, 7)],
}


def _shapes(model: nn.Module, names: list[str]) -> list[tuple[int, int]]:
    _, activations = capture_activations(lambda: model(IMAGE), resolve_layers(model, names))
    return [(a.shape[1], a.shape[2]) for a in activations]


@pytest.mark.parametrize("name", sorted(TORCHVISION_LAYERS))
def test_discovery_on_torchvision_models(name: str) -> None:
    model = torchvision.models.get_model(name, weights=None).eval()
    names = discover_layers(model, IMAGE)
    assert names == TORCHVISION_LAYERS[name]
    assert _shapes(model, names) == SHAPES[name]


def test_discovery_on_efficientnet_lite0_avoids_the_reference_pitfalls(lite0: nn.Module) -> None:
    names = discover_layers(lite0, IMAGE)
    # The post-activation map after each depthwise convolution (the second call of the
    # block's reused ``_swish``), and the head's activation (the second call of the model's).
    assert names == [
        "_blocks.0._swish",
        "_blocks.2._swish",
        "_blocks.4._swish",
        "_blocks.10._swish",
        "_swish",
    ]
    shapes = _shapes(lite0, names)
    assert shapes == [(32, 112), (144, 56), (240, 28), (672, 14), (1280, 7)]
    assert sum(channels for channels, _ in shapes) == 2368
    assert all(
        float(a.min()) >= 0
        for a in capture_activations(lambda: lite0(IMAGE), resolve_layers(lite0, names))[1]
    )


def test_discovery_leaves_the_model_untouched() -> None:
    model = torchvision.models.resnet18(weights=None).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    discover_layers(model, IMAGE)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model._forward_hooks and not model._forward_pre_hooks
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_discovery_skips_padding_and_names_reused_modules_by_call() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pad = nn.ZeroPad2d((0, 1, 0, 1))  # 16 -> 17: not a resolution of its own
            self.down = nn.Conv2d(3, 4, 3, stride=2)
            self.act = nn.ReLU()  # called at 8 x 8, then at 4 x 4
            self.down2 = nn.Conv2d(4, 4, 3, stride=2, padding=1)
            self.tail = nn.Conv2d(4, 4, 1)  # linear, later than the activation at 4 x 4
            self.head = nn.Linear(4, 2)

        def forward(self, x: Tensor) -> Tensor:
            x = self.act(self.down(self.pad(x)))
            x = self.tail(self.act(self.down2(x)))
            return self.head(x.mean(dim=(2, 3)))

    names = discover_layers(Net().eval(), torch.rand(2, 3, 16, 16))
    assert names == ["act:0", "act"]


def test_discovery_rejects_non_modules() -> None:
    with pytest.raises(TypeError, match="model"):
        discover_layers(lambda x: x, IMAGE)  # type: ignore[arg-type]


def test_capture_copies_outputs_before_in_place_changes() -> None:
    class InPlace(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1)

        def forward(self, x: Tensor) -> Tensor:
            y = self.conv(x)
            y += 100  # alters the conv's output tensor after its hook ran
            return y

    model = InPlace().eval()
    x = torch.rand(1, 3, 4, 4)
    _, (activation,) = capture_activations(lambda: model(x), resolve_layers(model, ["conv"]))
    torch.testing.assert_close(activation, model.conv(x))
