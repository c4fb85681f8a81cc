"""The stages of the backbones people use now, found and read with random weights: torchvision's
Swin and Swin V2 (channels-last), timm's Swin and ConvNeXt, Hugging Face's Swin (tokens) and
ConvNeXt (whose output carries its logits)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torchvision
from torch import Tensor, nn

from captum_polycam import PolyCam, describe_layers, discover_layers
from tests.conftest import hooked_modules

IMAGE = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
STAGES = ["96@56x56", "192@28x28", "384@14x14", "768@7x7"]


def _timm(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        timm = pytest.importorskip("timm")
        return timm.create_model(name, pretrained=False)

    return build


def _hugging_face(kind: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        transformers = pytest.importorskip("transformers")
        config = getattr(transformers, f"{kind}Config")()
        return getattr(transformers, f"{kind}ForImageClassification")(config)

    return build


# model, reshape, the layers discovered, their shapes (channels@h x w).
FAMILIES: dict[str, tuple[Callable[[], nn.Module], Any, list[str], list[str]]] = {
    "torchvision swin_t": (
        lambda: torchvision.models.swin_t(),
        "nhwc",
        ["features.1", "features.3", "features.5", "features"],
        STAGES,
    ),
    "torchvision swin_v2_t": (
        lambda: torchvision.models.swin_v2_t(),
        "nhwc",
        ["features.1", "features.3", "features.5", "features"],
        STAGES,
    ),
    "timm swin": (
        _timm("swin_tiny_patch4_window7_224"),
        "nhwc",
        ["layers.0", "layers.1", "layers.2", "layers"],
        STAGES,
    ),
    "timm convnext": (
        _timm("convnext_atto"),
        None,
        [f"stages.{s}.blocks.{b}.mlp.act" for s, b in ((0, 1), (1, 1), (2, 5), (3, 1))],
        ["160@56x56", "320@28x28", "640@14x14", "1280@7x7"],
    ),
    "hugging face swin": (
        _hugging_face("Swin"),
        "tokens",
        [f"swin.encoder.layers.{s}.blocks.{b}.mlp" for s, b in ((0, 1), (1, 1), (2, 5), (3, 1))],
        STAGES,
    ),
    "hugging face convnext": (
        _hugging_face("ConvNext"),
        None,
        [f"convnext.encoder.stages.{s}" for s in range(4)],
        STAGES,
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_one_stage_per_resolution_is_found(family: str) -> None:
    build, reshape, names, shapes = FAMILIES[family]
    model = build().eval()
    with torch.no_grad():
        assert discover_layers(model, IMAGE, reshape=reshape) == names
        found = describe_layers(model, IMAGE, names, reshape=reshape)
    assert [f"{x.channels}@{x.size[0]}x{x.size[1]}" for x in found] == shapes
    assert hooked_modules(model) == []


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_a_batch_gives_the_maps_of_single_images(family: str) -> None:
    build, reshape, names, _ = FAMILIES[family]
    model = build().eval()
    inputs = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    # A small pass budget: what is checked is how the stages are read, not the cost.
    polycam = PolyCam(model, names, "plus", reshape=reshape, pass_budget=0.01)
    targets = [1, 0]  # Hugging Face's default configuration has two classes
    batch = polycam.attribute(inputs, target=targets)
    singles = torch.cat(
        [polycam.attribute(x[None], target=t) for x, t in zip(inputs, targets, strict=True)]
    )
    assert batch.shape == (2, 1, 224, 224)
    torch.testing.assert_close(batch, singles, atol=1e-4, rtol=1e-4)
    assert hooked_modules(model) == []


@pytest.mark.slow
def test_hugging_face_outputs_are_scored_from_their_logits() -> None:
    model = _hugging_face("ConvNext")().eval()
    with torch.no_grad():
        output = model(IMAGE)
    assert not isinstance(output, Tensor)  # a ModelOutput
    names = FAMILIES["hugging face convnext"][2]
    polycam = PolyCam(model, names[-2:], "plus", pass_budget=0.05)
    maps = polycam.attribute(IMAGE)  # no score_fn: the softmax of output.logits
    assert maps.shape == (1, 1, 224, 224) and torch.isfinite(maps).all()


def test_a_flat_vit_is_told_to_read_one_layer_as_tokens() -> None:
    model = torchvision.models.vit_b_16().eval()
    with pytest.raises(ValueError, match=r"reshape='tokens'.*one layer, a Score-CAM-like map"):
        discover_layers(model, IMAGE)
    told = (
        "found maps at one resolution only, encoder (768@14x14), reading the layers with "
        "reshape='tokens': this model keeps one grid throughout, as a flat ViT does. Pass one "
        "layer, such as PolyCam(model, layers=['encoder'], reshape='tokens') or --layers encoder "
        "on the command line, for a Score-CAM-like map at that grid; more layers of the same "
        "grid add no detail"
    )
    with pytest.raises(ValueError, match=re.escape(told)):
        discover_layers(model, IMAGE, reshape="tokens")
    found = describe_layers(model, IMAGE, ["encoder.layers.encoder_layer_11"], reshape="tokens")
    assert str(found[0]) == "encoder.layers.encoder_layer_11 (768@14x14)"
