"""Layer discovery and Poly-CAM on torchvision's detection and segmentation models.

The models are built with random weights (``weights=None, weights_backbone=None``) and small
internal image sizes, so that each test runs in seconds on a CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torchvision
from torch import Tensor, nn

from captum_polycam import PolyCam, discover_layers
from captum_polycam.attr import poly_cam
from captum_polycam.attr.layers import describe_layers
from tests.conftest import hooked_modules

# (name, channels, side) of each layer discovered, shallow to deep.
Expected = list[tuple[str, int, int]]

RESNET_BODY_AT_64: Expected = [
    ("backbone.body.relu", 64, 32),
    ("backbone.body.layer1", 256, 16),
    ("backbone.body.layer2", 512, 8),
    ("backbone.body.layer3", 1024, 4),
    ("backbone.body.layer4", 2048, 2),
]


# MobileNetV3-Large's post-activation maps, as discovery picks them on the classifier.
MOBILENET_LAYERS = ["1.block.0", "3.block.1", "6.block.1", "12.block.1", "16"]


def _mobilenet_body(prefix: str, sides: tuple[int, ...]) -> Expected:
    channels = [16, 72, 120, 672, 960]
    layers = zip(MOBILENET_LAYERS, channels, sides, strict=True)
    return [(prefix + name, c, side) for name, c, side in layers]


# name -> (builder keyword arguments, input side, layers expected). min_size and max_size set
# the side the detector resizes its images to; the ResNet detectors default to 800, too slow.
DETECTORS: dict[str, tuple[dict[str, Any], int, Expected]] = {
    "fasterrcnn_mobilenet_v3_large_320_fpn": (
        {"min_size": 128, "max_size": 128},
        96,
        _mobilenet_body("backbone.body.", (64, 32, 16, 8, 4)),
    ),
    "fasterrcnn_resnet50_fpn_v2": ({"min_size": 64, "max_size": 64}, 64, RESNET_BODY_AT_64),
    "retinanet_resnet50_fpn": ({"min_size": 64, "max_size": 64}, 64, RESNET_BODY_AT_64),
    "fcos_resnet50_fpn": ({"min_size": 64, "max_size": 64}, 64, RESNET_BODY_AT_64),
    # SSD resizes to a fixed 320 x 320 (its builder does not take a size). Its backbone's extra
    # blocks are plain Sequentials, so their first 1 x 1 convolution (at the resolution of the
    # block's input) counts as the main path and is picked.
    "ssdlite320_mobilenet_v3_large": (
        {},
        96,
        [
            ("backbone.features.0.1.block.0", 16, 160),
            ("backbone.features.0.3.block.1", 72, 80),
            ("backbone.features.0.6.block.1", 120, 40),
            ("backbone.features.0", 672, 20),
            ("backbone.extra.0.0", 256, 10),
            ("backbone.extra.1.0", 128, 5),
            ("backbone.extra.2.0", 128, 3),
            ("backbone.extra.3.0", 64, 2),
        ],
    ),
}

# Dilated backbones: DeepLabV3 and LR-ASPP's MobileNetV3 stops at 1/16, FCN's ResNet at 1/8. The
# dilated stages keep the 1/16 resolution, so backbone.16 is the deepest map of it.
DILATED_MOBILENET_AT_96: Expected = [
    ("backbone.1.block.0", 16, 48),
    ("backbone.3.block.1", 72, 24),
    ("backbone.6.block.1", 120, 12),
    ("backbone.16", 960, 6),
]
SEGMENTERS: dict[str, tuple[dict[str, Any], Expected]] = {
    "deeplabv3_mobilenet_v3_large": ({"aux_loss": False}, DILATED_MOBILENET_AT_96),
    "lraspp_mobilenet_v3_large": ({}, DILATED_MOBILENET_AT_96),
    "fcn_resnet50": (
        {"aux_loss": True},  # the auxiliary classifier reads layer3: it must not be picked
        [("backbone.relu", 64, 48), ("backbone.layer1", 256, 24), ("backbone.layer4", 2048, 12)],
    ),
}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Run on one thread: these small maps gain nothing from a second one, and where another
    process keeps the CPU busy, OpenMP's waiting between threads made a 16-image detector pass
    45 times slower (3.2 s instead of 0.07 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _image(side: int) -> Tensor:
    return torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0))


def _build(name: str, **kwargs: Any) -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.get_model(name, weights=None, weights_backbone=None, **kwargs).eval()


def _described(model: nn.Module, inputs: Tensor) -> Expected:
    return [(layer.name, layer.channels, layer.size[0]) for layer in describe_layers(model, inputs)]


@pytest.mark.filterwarnings("error::UserWarning")  # no resolution skipped
@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_discovery_on_detectors_reads_the_backbone_only(name: str) -> None:
    kwargs, side, expected = DETECTORS[name]
    inputs = _image(side)
    layers = describe_layers(_build(name, **kwargs), inputs)
    # Square maps: the detectors keep the input's aspect ratio.
    assert all(layer.size[0] == layer.size[1] for layer in layers)
    assert [(layer.name, layer.channels, layer.size[0]) for layer in layers] == expected
    # Neither the feature pyramid (backbone.fpn) nor a head (rpn, roi_heads, head).
    assert all(
        layer.name.startswith(("backbone.body.", "backbone.features.", "backbone.extra."))
        for layer in layers
    )


@pytest.mark.filterwarnings("error::UserWarning")
def test_discovery_on_a_detector_that_enlarges_the_input() -> None:
    # At its default 320 x 320, the detector's first maps (160 x 160) exceed the 96 x 96 input:
    # they are measured against the resized image the backbone sees.
    model = _build("fasterrcnn_mobilenet_v3_large_320_fpn")
    inputs = _image(96)
    assert _described(model, inputs) == _mobilenet_body("backbone.body.", (160, 80, 40, 20, 10))
    assert discover_layers(model, inputs) == [
        "backbone.body.1.block.0",
        "backbone.body.3.block.1",
        "backbone.body.6.block.1",
        "backbone.body.12.block.1",
        "backbone.body.16",
    ]


@pytest.mark.filterwarnings("error::UserWarning")
@pytest.mark.parametrize("name", sorted(SEGMENTERS))
def test_discovery_on_segmenters_reads_the_backbone_only(name: str) -> None:
    kwargs, expected = SEGMENTERS[name]
    assert _described(_build(name, **kwargs), _image(96)) == expected


class _OutMap(nn.Module):
    """Returns a segmenter's ``"out"`` map as a tensor, as one wraps it for Captum."""

    def __init__(self, segmenter: nn.Module) -> None:
        super().__init__()
        self.segmenter = segmenter

    def forward(self, x: Tensor) -> Tensor:
        return self.segmenter(x)["out"]


@pytest.mark.filterwarnings("error::UserWarning")
def test_discovery_does_not_depend_on_the_model_returning_a_dict() -> None:
    # The backbone's dict of maps ends the search, not the model's output type: the ASPP head
    # (classifier.0, 256@6x6, computed after backbone.16) stays out behind a tensor wrapper too.
    segmenter = _build("deeplabv3_mobilenet_v3_large", aux_loss=False)
    names = [name for name, _, _ in SEGMENTERS["deeplabv3_mobilenet_v3_large"][1]]
    assert discover_layers(_OutMap(segmenter).eval(), _image(96)) == [
        "segmenter." + name for name in names
    ]


def _calibrate_batch_norm(module: nn.Module, images: Tensor) -> None:
    """Set the batch-norm statistics of ``module`` from ``images``, then back to evaluation.

    With random weights and the initial statistics (mean 0, variance 1), MobileNetV3's
    activations shrink stage after stage (maxima 0.4, 0.03, 0.001, then 1e-7 and 1e-8 in the
    layers read here); the deepest layer's Poly-CAM map then comes out all zero and zeroes the
    whole recursion, so a broken run would look the same as a working one.
    """
    for norm in module.modules():
        if isinstance(norm, nn.modules.batchnorm._BatchNorm):
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative average over the passes
    module.train()
    with torch.no_grad():
        module(images)
    module.eval()


@pytest.mark.slow
def test_poly_cam_runs_end_to_end_on_faster_rcnn(monkeypatch: pytest.MonkeyPatch) -> None:
    # box_score_thresh=0 keeps detections whose random-weight scores (about 1/91) are under
    # the default 0.05; the small proposal and detection counts make each pass cheap.
    model = _build(
        "fasterrcnn_mobilenet_v3_large_320_fpn",
        min_size=64,
        max_size=64,
        box_score_thresh=0.0,
        rpn_pre_nms_top_n_test=10,
        rpn_post_nms_top_n_test=10,
        box_detections_per_img=10,
    )
    _calibrate_batch_norm(
        model.backbone.body, torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    )
    inputs = _image(96)
    assert hooked_modules(model) == []

    def total_score(detections: list[dict[str, Tensor]]) -> Tensor:
        """The sum of each image's detection scores, one column."""
        return torch.stack([detection["scores"].sum() for detection in detections])[:, None]

    with torch.no_grad():
        assert total_score(model(inputs)).item() > 0  # the detections the maps explain

    discovered: list[list[str]] = []

    def spy(*args: Any, **kwargs: Any) -> list[str]:
        discovered.append(discover_layers(*args, **kwargs))
        return discovered[-1]

    monkeypatch.setattr(poly_cam, "discover_layers", spy)
    saliency = PolyCam(model, score_fn=total_score).attribute(
        inputs, target=0, perturbations_per_eval=16
    )
    assert discovered == [["backbone.body." + name for name in MOBILENET_LAYERS]]
    assert saliency.shape == (1, 1, 96, 96)
    assert torch.isfinite(saliency).all()
    assert saliency.max().item() == pytest.approx(1, abs=0.05)
    assert saliency.min().item() == 0
    assert saliency.std().item() > 0.05  # a map, not a constant
    assert hooked_modules(model) == []
