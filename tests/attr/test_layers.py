"""Automatic layer discovery on real architectures, and reading layer outputs."""

from __future__ import annotations

import ast
import re
import warnings
import weakref
from pathlib import Path

import pytest
import torch
import torchvision
from torch import Tensor, nn

from captum_polycam import discover_layers
from captum_polycam.attr import capture
from captum_polycam.attr.capture import LayerInfo, capture_activations, resolve_layers
from captum_polycam.attr.layers import _Numbering, describe_layers
from tests.conftest import ReusedReLU, hooked_modules

IMAGE = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
ATTR = Path(capture.__file__).parent

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


@pytest.mark.slow
@pytest.mark.filterwarnings("error::UserWarning")  # no resolution skipped
@pytest.mark.parametrize("name", sorted(TORCHVISION_LAYERS))
def test_discovery_on_torchvision_models(name: str) -> None:
    model = torchvision.models.get_model(name, weights=None).eval()
    names = discover_layers(model, IMAGE)
    assert names == TORCHVISION_LAYERS[name]
    assert _shapes(model, names) == SHAPES[name]


@pytest.mark.slow
@pytest.mark.filterwarnings("error::UserWarning")
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
    assert hooked_modules(model) == []


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


# Models without a multi-resolution N x C x h x w stack.


def test_discovery_rejects_a_vision_transformer() -> None:
    model = torchvision.models.vit_b_16(weights=None).eval()
    with pytest.raises(ValueError) as error:
        discover_layers(model, IMAGE)
    message = str(error.value)
    # The patch embedding is the only map: the encoder works on N x 197 x 768 tokens.
    assert "at one resolution only, conv_proj (768@14x14)" in message
    assert "needs a convolutional stack of N x C x h x w feature maps at several resolutions" in (
        message
    )
    assert "PolyCam(model, layers=[...])" in message
    assert "reshape tokens" in message
    assert "reshape='tokens'" in message and "one layer, a Score-CAM-like map" in message


@pytest.mark.slow
def test_discovery_warns_that_swin_skips_its_channels_last_stages() -> None:
    model = torchvision.models.swin_t(weights=None).eval()
    with pytest.warns(UserWarning, match="skip resolutions") as record:
        names = discover_layers(model, IMAGE)
    # Only the patch embedding's convolution and the permute before the pooling are
    # N x C x h x w: the stages in between run channels-last.
    assert names == ["features.0.0", "permute"]
    assert len(record) == 1
    assert record[0].filename == __file__
    message = str(record[0].message)
    assert "features.0.0 (96@56x56) is followed by permute (768@7x7), 8x smaller" in message
    assert "channels-last (N x h x w x C) or tokens" in message
    assert "PolyCam(model, layers=[...])" in message


@pytest.mark.filterwarnings("error::UserWarning")
def test_discovery_on_faster_rcnn_leaves_out_per_box_maps() -> None:
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None
    ).eval()
    roi_pool_batches: list[int] = []
    handle = model.roi_heads.box_roi_pool.register_forward_hook(
        lambda _module, _args, output: roi_pool_batches.append(len(output))
    )
    try:
        names = discover_layers(model, torch.rand(1, 3, 320, 320))
    finally:
        handle.remove()
    assert roi_pool_batches and roi_pool_batches[0] > 1  # one 7 x 7 map per box
    assert "roi_heads.box_roi_pool" not in names
    assert names == [
        "backbone.body.1.block.0",
        "backbone.body.3.block.1",
        "backbone.body.6.block.1",
        "backbone.body.12.block.1",
        "backbone.body.16",
    ]


class _BoxPool(nn.Module):
    """Pools two fixed boxes of each example to 3 x 3, one map per box, as RoI pooling does."""

    def forward(self, maps: Tensor) -> Tensor:
        boxes = [maps[..., :4, :4], maps[..., 4:, 4:]]
        return torch.cat([nn.functional.adaptive_max_pool2d(box, 3) for box in boxes])


def test_discovery_ignores_maps_that_are_not_one_per_example() -> None:
    class Detector(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stage1 = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())  # 16 x 16
            self.stage2 = nn.Sequential(nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.ReLU())
            self.box_pool = _BoxPool()  # 2N x 4 x 3 x 3
            self.box_head = nn.Linear(4, 2)

        def forward(self, x: Tensor) -> Tensor:
            boxes = self.box_pool(self.stage2(self.stage1(x)))
            return self.box_head(boxes.mean(dim=(2, 3)))

    assert discover_layers(Detector().eval(), torch.rand(2, 3, 16, 16)) == ["stage1", "stage2"]


def test_discovery_raises_when_there_is_one_resolution_or_none() -> None:
    one_resolution = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten())
    with pytest.raises(ValueError) as error:
        discover_layers(one_resolution, torch.rand(2, 3, 8, 8))
    assert "found N x C x h x w feature maps at one resolution only, 1 (4@8x8)" in str(error.value)
    assert "several resolutions" in str(error.value)

    no_map = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    with pytest.raises(ValueError, match="found no N x C x h x w feature map") as error:
        discover_layers(no_map, torch.rand(2, 3, 8, 8))
    assert "PolyCam(model, layers=[...])" in str(error.value)


class _ChannelsFirst(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, 3, 1, 2)


class _HalveChannelsLast(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x[:, ::2, ::2]


class _ChannelsLastStages(nn.Module):
    """Swin-like: a 16 x 16 stem, three stages on N x h x w x C maps (8, 4, 2), a 2 x 2 map."""

    def __init__(self) -> None:
        super().__init__()
        # 32 channels: wider than the input, so that no channels-last tensor looks spatial.
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU())
        self.stages = nn.Sequential(*(_HalveChannelsLast() for _ in range(3)))
        self.channels_first = _ChannelsFirst()
        self.head = nn.Linear(32, 2)

    def forward(self, x: Tensor) -> Tensor:
        x = self.channels_first(self.stages(self.stem(x).permute(0, 2, 3, 1)))
        return self.head(x.mean(dim=(2, 3)))


class _Tap(nn.Module):
    """Runs ``module`` and returns its output unchanged; ``map`` shows it to hooks."""

    def __init__(self, module: nn.Module, to_map: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.map = to_map

    def forward(self, x: Tensor) -> Tensor:
        out = self.module(x)
        self.map(out)
        return out


def test_discovery_warns_about_skipped_resolutions() -> None:
    model, inputs = _ChannelsLastStages().eval(), torch.rand(1, 3, 16, 16)
    with pytest.warns(UserWarning) as record:
        names = discover_layers(model, inputs)
        described = describe_layers(model, inputs)
    assert names == ["stem", "channels_first"]
    assert [layer.name for layer in described] == names
    assert len(record) == 2
    assert [warning.filename for warning in record] == [__file__, __file__]
    assert str(record[0].message).startswith(
        "discover_layers: the layers found skip resolutions: stem (32@16x16) is followed by "
        "channels_first (32@2x2), 8x smaller. The maps in between are probably channels-last"
    )


@pytest.mark.filterwarnings("error::UserWarning")
def test_discovery_reads_channels_last_stages_through_taps() -> None:
    # The recipe of docs/layers.rst: each stage shows its output, permuted, to the hooks.
    model = _ChannelsLastStages().eval()
    for index, stage in enumerate(model.stages):
        model.stages[index] = _Tap(stage, _ChannelsFirst())
    names = discover_layers(model, torch.rand(1, 3, 16, 16))
    assert names == ["stem", "stages.0.map", "stages.1.map", "channels_first"]


def test_discovery_accepts_a_stem_that_quarters_the_side() -> None:
    # 16 -> 4, as ResNet's stem goes from 224 to 56: a factor of 4 is not a gap.
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 4, stride=4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert discover_layers(model.eval(), torch.rand(1, 3, 16, 16)) == ["1", "3"]


# describe_layers


def test_layer_info_reads_as_channels_at_resolution() -> None:
    assert str(LayerInfo("layer1", 256, (56, 56))) == "layer1 (256@56x56)"
    assert str(LayerInfo("act:0", 4, (8, 6))) == "act:0 (4@8x6)"


def test_what_the_attr_modules_take_from_capture_is_public() -> None:
    # Private helpers stay private: layers.py and poly_cam.py import only capture's public names.
    for module in ("layers", "poly_cam"):
        tree = ast.parse((ATTR / f"{module}.py").read_text())
        taken = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "captum_polycam.attr.capture"
            for alias in node.names
        }
        assert taken and taken <= set(capture.__all__), (module, taken - set(capture.__all__))
    assert capture.layer_info("act:0", torch.zeros(2, 4, 8, 6)) == LayerInfo("act:0", 4, (8, 6))
    first, args = capture.first_example(torch.zeros(3, 1, 2, 2), (torch.arange(3), 7))
    assert first.shape == (1, 1, 2, 2) and args[0].tolist() == [0] and args[1] == 7


@pytest.mark.slow
def test_describe_layers_on_resnet50() -> None:
    model = torchvision.models.resnet50(weights=None).eval()
    assert [str(layer) for layer in describe_layers(model, IMAGE)] == [
        "relu (64@112x112)",
        "layer1 (256@56x56)",
        "layer2 (512@28x28)",
        "layer3 (1024@14x14)",
        "layer4 (2048@7x7)",
    ]
    # Bottleneck.relu runs three times per block: after conv1, after conv2, after the sum.
    explicit = ["layer2.0.relu:0", (model.layer2[0].relu, 1), "layer2.0.relu", model.layer4]
    assert describe_layers(model, IMAGE, explicit) == [
        LayerInfo("layer2.0.relu:0", 128, (56, 56)),
        LayerInfo("layer2.0.relu:1", 128, (28, 28)),
        LayerInfo("layer2.0.relu", 512, (28, 28)),
        LayerInfo("layer4", 2048, (7, 7)),
    ]


class _TwoStages(nn.Module):
    """Batch norm at 16 x 16, then 8 x 8; ``scale`` has one value per example."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU())
        self.batch_sizes: list[tuple[int, int]] = []

    def forward(self, x: Tensor, scale: Tensor) -> Tensor:
        self.batch_sizes.append((len(x), len(scale)))
        return self.stage2(self.stage1(x) * scale[:, None, None, None]).mean(dim=(1, 2, 3))


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        (None, [LayerInfo("stage1", 4, (16, 16)), LayerInfo("stage2", 6, (8, 8))]),
        (
            ["stage2.0", ("stage1", -1)],
            [LayerInfo("stage2.0", 6, (8, 8)), LayerInfo("stage1", 4, (16, 16))],
        ),
        ("stage1.2", [LayerInfo("stage1.2", 4, (16, 16))]),
    ],
)
def test_describe_layers_runs_the_first_example_and_leaves_the_model_untouched(
    layers: list | str | None, expected: list[LayerInfo]
) -> None:
    torch.manual_seed(0)
    model = _TwoStages().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inputs, scale = torch.rand(3, 3, 16, 16), torch.rand(3)
    assert describe_layers(model, inputs, layers, additional_forward_args=scale) == expected
    assert model.batch_sizes == [(1, 1)]  # one pass, with the first example's scale
    assert all(module.training for module in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert hooked_modules(model) == []


def test_describe_layers_reports_bad_arguments(tiny_cnn: nn.Module) -> None:
    with pytest.raises(TypeError, match=re.escape("model must be an nn.Module; got function")):
        describe_layers(lambda x: x, IMAGE, ["block1"])  # type: ignore[arg-type]
    told = "inputs are 3-D N x C x L but the model's first convolution, block1.0, a Conv2d, takes"
    with pytest.raises(ValueError, match=told):
        describe_layers(tiny_cnn, torch.rand(3, 16, 16), ["block1"])
    with pytest.raises(ValueError, match="no module named 'block9'"):
        describe_layers(tiny_cnn, torch.rand(1, 3, 16, 16), ["block9"])
    with pytest.raises(ValueError, match=re.escape("or N x C x d x h x w tensor; got (1, 5)")):
        describe_layers(tiny_cnn, torch.rand(1, 3, 16, 16), ["head"])


# resolve_layers and capture_activations: every way to name a layer wrongly is a clear error.


def test_a_module_is_found_by_every_name_it_has() -> None:
    model = ReusedReLU()
    (alias,) = resolve_layers(model, ["alias"])
    assert alias.module is model.conv1 and str(alias) == "alias"


@pytest.mark.parametrize(
    ("layers", "duplicate"),
    [
        (["block1", "block2", "block1"], "layers[0] and layers[2] are both block1"),
        (["block1", "block1:-1"], "layers[0] and layers[1] are both block1"),
        (lambda m: ["block2", m.block2], "layers[0] and layers[1] are both block2"),
        (lambda m: [("block3", 0), (m.block3, 0)], "layers[0] and layers[1] are both block3:0"),
    ],
)
def test_a_layer_given_twice_is_refused(tiny_cnn: nn.Module, layers, duplicate: str) -> None:
    layers = layers(tiny_cnn) if callable(layers) else layers
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"layers: {duplicate}; give each layer once (a duplicate would double its masked "
            "passes)"
        ),
    ):
        resolve_layers(tiny_cnn, layers)


def test_a_module_given_by_two_names_is_refused() -> None:
    with pytest.raises(ValueError, match=re.escape("layers[0] and layers[1] are both conv1")):
        resolve_layers(ReusedReLU(), ["conv1", "alias"])


@pytest.mark.parametrize(
    ("layers", "first", "second"),
    [(["act:1", "act"], "act:1", "act"), (["act:0", "act:-2"], "act:0", "act:-2")],
)
def test_two_indices_of_the_same_call_are_refused(layers, first: str, second: str) -> None:
    model = ReusedReLU()
    with pytest.raises(
        ValueError, match=re.escape(f"layers: {first} and {second} are the same output, call ")
    ):
        capture_activations(lambda: model(torch.rand(1, 3, 16, 16)), resolve_layers(model, layers))


@pytest.mark.parametrize(
    ("layer", "error", "message"),
    [
        ("block1:", ValueError, "layers: 'block1:' must be 'name' or 'name:call_index'"),
        (("block1:0", 1), ValueError, "layers: ('block1:0', 1) gives the call index twice"),
        (
            ("block1", "x"),
            TypeError,
            "layers: the call index of ('block1', 'x') must be an int; got 'x'",
        ),
        (
            ("block1", 1.5),
            TypeError,
            "layers: the call index of ('block1', 1.5) must be an int; got 1.5",
        ),
        (
            ("block1", True),
            TypeError,
            "layers: the call index of ('block1', True) must be an int; got True",
        ),
        (
            ("block1", 0, 1),
            TypeError,
            "layers: expected a module, a dotted name or (module, call); got ('block1', 0, 1)",
        ),
    ],
)
def test_malformed_layer_references_are_refused(
    tiny_cnn: nn.Module, layer, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        resolve_layers(tiny_cnn, [layer])


def test_a_call_index_the_module_does_not_have_is_refused() -> None:
    model = ReusedReLU()
    with pytest.raises(
        ValueError,
        match=re.escape("layers: act:99 asks for call 99, but the module is called 2 time(s)"),
    ):
        capture_activations(
            lambda: model(torch.rand(1, 3, 16, 16)), resolve_layers(model, ["act:0", "act:99"])
        )


class _FreedWhileRunning(nn.Module):
    """Three stages; the last one notes whether the first stage's output is still alive."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.second = nn.Sequential(nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.ReLU())
        self.third = nn.Sequential(nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.ReLU())
        self.first_output: weakref.ref[Tensor] | None = None
        self.first_output_alive: bool | None = None

    def forward(self, x: Tensor) -> Tensor:
        first = self.first(x)
        self.first_output = weakref.ref(first)
        second = self.second(first)
        del first  # from here on, only a recording could keep it alive
        self.first_output_alive = self.first_output() is not None
        return self.third(second).mean(dim=(2, 3))


def test_discovery_keeps_no_module_output_alive() -> None:
    # A recording of every module's output of a dense 3D network held hundreds of megabytes;
    # discovery needs the outputs' shapes only, so a map is freed when the model frees it.
    model = _FreedWhileRunning().eval()
    with torch.no_grad():
        model(IMAGE[:, :, :32, :32])
    assert model.first_output_alive is False  # the model alone frees it
    found = discover_layers(model, IMAGE[:, :, :32, :32])
    assert found == ["first", "second", "third"]
    assert model.first_output_alive is False


def test_discovery_tells_a_new_output_from_a_freed_one_with_its_id() -> None:
    # CPython reuses a freed object's id at once; nested modules returning one tensor must
    # share a number, and a new tensor that happens to get a freed one's id must not.
    numbering = _Numbering()
    first = torch.zeros(1)
    number, first_id = numbering.number(first), id(first)
    assert numbering.number(first) == number
    del first
    candidates = (torch.zeros(1) for _ in range(1000))
    second = next((t for t in candidates if id(t) == first_id), None)
    if second is None:
        pytest.skip("no new tensor took the freed one's id")
    assert numbering.number(second) != number
