"""PolyCam against hand-computed values and against a literal transcription of the spec."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from captum_polycam import PolyCam
from tests.conftest import BatchSizes, DropsRowsWhenPerturbed, ReusedReLU
from tests.reference import normalise, reference_polycam

LAYERS = ["block1", "block2", "block3"]


class Analytic(nn.Module):
    """Score = softmax([sum(x), 0])[0] = sigmoid(sum(x)); one 3-channel layer at input size.

    Channels: relu(x), relu(-x), and a constant 1 whose mask is empty (a "dead" channel).
    """

    def __init__(self) -> None:
        super().__init__()
        conv = nn.Conv2d(1, 3, 1)
        with torch.no_grad():
            conv.weight.copy_(torch.tensor([1.0, -1.0, 0.0]).reshape(3, 1, 1, 1))
            conv.bias.copy_(torch.tensor([0.0, 0.0, 1.0]))
        self.features = nn.Sequential(conv, nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        self.features(x)
        total = x.sum(dim=(1, 2, 3))
        return torch.stack([total, torch.zeros_like(total)], dim=1)


def _sigmoid(value: float) -> float:
    return 1 / (1 + math.exp(-value))


@pytest.mark.parametrize("variant", ["plus", "minus", "plusminus"])
def test_weights_and_map_by_hand(variant: str) -> None:
    x = torch.tensor([[[[2.0, -1.0], [0.5, -3.0]]]])
    # Masks: relu(x) = [[2, 0], [0.5, 0]] has p99.9 = 1.9955 -> [[1, 0], [0.5 / 1.9955, 0]];
    # relu(-x) = [[0, 1], [0, 3]] has p99.9 = 2.994 -> [[0, 1 / 2.994], [0, 1]]; the constant
    # channel normalises to 0 (p0.1 = 1).
    h0, h1 = 0.5 / 1.9955, 1 / 2.994
    clean = _sigmoid(2 - 1 + 0.5 - 3)
    unveil = [_sigmoid(2 + 0.5 * h0), _sigmoid(-h1 - 3), _sigmoid(0.0)]
    hide = [_sigmoid(-1 + 0.5 * (1 - h0) - 3), _sigmoid(2 - (1 - h1) + 0.5), clean]
    weights = {
        "plus": unveil,
        "minus": [max(clean - p, 0) for p in hide],
        "plusminus": [max(u + clean - p, 0) for u, p in zip(unveil, hide, strict=True)],
    }[variant]
    w0, w1, w2 = weights
    saliency = np.array([[2 * w0 + w2, w1 + w2], [0.5 * w0 + w2, 3 * w1 + w2]])

    maps = PolyCam(Analytic().eval(), ["features"], variant).attribute(x, target=0)

    np.testing.assert_allclose(maps[0, 0].numpy(), normalise(saliency), atol=1e-6)


@pytest.mark.parametrize("variant", ["plus", "minus", "plusminus"])
def test_matches_reference_transcription(tiny_cnn: nn.Module, tiny_inputs: Tensor, variant: str):
    targets = [0, 3, 4]
    maps, stages = PolyCam(tiny_cnn, LAYERS, variant).attribute(
        tiny_inputs, target=targets, return_stages=True
    )
    layers = [getattr(tiny_cnn, name) for name in LAYERS]
    for i, target in enumerate(targets):
        expected = reference_polycam(tiny_cnn, tiny_inputs[i : i + 1], layers, target, variant)
        assert len(stages) == len(expected) == 3
        for stage, reference in zip(stages, expected, strict=True):
            np.testing.assert_allclose(stage[i, 0].numpy(), reference, atol=1e-4)
        torch.testing.assert_close(maps, stages[-1])


@pytest.mark.parametrize("variant", ["plus", "plusminus"])
def test_decompose_gives_the_reference_stages_and_single_layer_maps(
    tiny_cnn: nn.Module, tiny_inputs: Tensor, variant: str
) -> None:
    result = PolyCam(tiny_cnn, LAYERS, variant).decompose(tiny_inputs, target=[1, 0, 2])
    layers = [getattr(tiny_cnn, name) for name in LAYERS]
    for i, target in enumerate([1, 0, 2]):
        stages, singles = reference_polycam(
            tiny_cnn, tiny_inputs[i : i + 1], layers, target, variant, with_layer_maps=True
        )
        for ours, reference in zip(
            [*result.stages, *result.layer_maps], [*stages, *singles], strict=True
        ):
            assert ours.shape == (3, 1, 16, 16)
            np.testing.assert_allclose(ours[i, 0].numpy(), reference, atol=1e-4)
    # The deepest stage is the deepest layer alone: the recursion starts there.
    torch.testing.assert_close(result.stages[0], result.layer_maps[-1])
    torch.testing.assert_close(
        result.maps, PolyCam(tiny_cnn, LAYERS, variant).attribute(tiny_inputs, target=[1, 0, 2])
    )


def test_output_contract(tiny_cnn: nn.Module, tiny_inputs: Tensor) -> None:
    maps, stages = PolyCam(tiny_cnn, LAYERS).attribute(tiny_inputs, return_stages=True)
    assert maps.shape == (3, 1, 16, 16)
    assert maps.dtype == tiny_inputs.dtype and maps.device == tiny_inputs.device
    assert float(maps.min()) >= 0 and float(maps.max()) <= 1
    assert float(maps.amax(dim=(1, 2, 3)).min()) > 0.5
    assert all(stage.shape == maps.shape for stage in stages)
    assert not maps.requires_grad


def test_default_target_is_top1(tiny_cnn: nn.Module, tiny_inputs: Tensor) -> None:
    polycam = PolyCam(tiny_cnn, LAYERS)
    top1 = tiny_cnn(tiny_inputs).argmax(dim=1)
    torch.testing.assert_close(polycam.attribute(tiny_inputs), polycam.attribute(tiny_inputs, top1))


def test_target_forms_agree(tiny_cnn: nn.Module, tiny_inputs: Tensor) -> None:
    polycam = PolyCam(tiny_cnn, LAYERS, "plus")
    as_list = polycam.attribute(tiny_inputs, target=[2, 2, 2])
    for target in (2, torch.tensor(2), torch.tensor([2, 2, 2]), [(2,), (2,), (2,)]):
        torch.testing.assert_close(polycam.attribute(tiny_inputs, target=target), as_list)


def test_tuple_targets_index_multidimensional_outputs(tiny_cnn: nn.Module, tiny_inputs: Tensor):
    class Grid(nn.Module):  # the same logits, shaped N x 2 x 3 (class 5 padded away)
        def __init__(self, flat: nn.Module) -> None:
            super().__init__()
            self.flat = flat

        def forward(self, x: Tensor) -> Tensor:
            logits = self.flat(x)
            return torch.cat([logits, logits[:, :1]], dim=1).reshape(-1, 2, 3)

    grid = Grid(tiny_cnn).eval()
    layers = [f"flat.{name}" for name in LAYERS]
    by_tuple = PolyCam(grid, layers, score_fn="logit").attribute(
        tiny_inputs, [(0, 1), (1, 0)] * 1 + [(1, 1)]
    )
    by_index = PolyCam(tiny_cnn, LAYERS, score_fn="logit").attribute(tiny_inputs, [1, 3, 4])
    torch.testing.assert_close(by_tuple, by_index)


def test_score_fn_callable_for_regression(tiny_cnn: nn.Module, tiny_inputs: Tensor) -> None:
    def second_logit(output: Tensor) -> Tensor:
        return output[:, 1]

    regression = PolyCam(tiny_cnn, LAYERS, score_fn=second_logit).attribute(tiny_inputs)
    logit = PolyCam(tiny_cnn, LAYERS, score_fn="logit").attribute(tiny_inputs, target=1)
    torch.testing.assert_close(regression, logit)
    softmax = PolyCam(tiny_cnn, LAYERS).attribute(tiny_inputs, target=1)
    assert not torch.allclose(softmax, logit)


def test_single_output_unit_is_scored_by_sigmoid(tiny_cnn: nn.Module, tiny_inputs: Tensor):
    binary = nn.Sequential(tiny_cnn, nn.Linear(5, 1)).eval()
    layers = [f"0.{name}" for name in LAYERS]
    default = PolyCam(binary, layers).attribute(tiny_inputs)
    explicit = PolyCam(binary, layers, score_fn=lambda out: out.sigmoid()).attribute(
        tiny_inputs, target=0
    )
    torch.testing.assert_close(default, explicit)


def test_batch_equals_single_calls(tiny_cnn: nn.Module, tiny_inputs: Tensor) -> None:
    polycam = PolyCam(tiny_cnn, LAYERS)
    batch = polycam.attribute(tiny_inputs, target=[0, 1, 2])
    for i in range(len(tiny_inputs)):
        single = polycam.attribute(tiny_inputs[i : i + 1], target=i)
        torch.testing.assert_close(batch[i : i + 1], single, atol=1e-5, rtol=0)


@pytest.mark.parametrize("per_eval", [1, 3, 7, 1000])
def test_chunk_size_does_not_change_the_result(tiny_cnn, tiny_inputs, per_eval: int) -> None:
    polycam = PolyCam(tiny_cnn, LAYERS)
    reference = polycam.attribute(tiny_inputs, perturbations_per_eval=64)
    chunked = polycam.attribute(tiny_inputs, perturbations_per_eval=per_eval)
    torch.testing.assert_close(chunked, reference, atol=1e-5, rtol=0)


def test_forward_pass_count_and_progress(tiny_cnn, tiny_inputs, capsys) -> None:
    counting = BatchSizes(tiny_cnn.forward)
    tiny_cnn.forward = counting  # type: ignore[method-assign]
    calls = counting.sizes
    PolyCam(tiny_cnn, LAYERS, "plusminus").attribute(
        tiny_inputs[:1], perturbations_per_eval=5, show_progress=True
    )
    # One clean pass, then at most 2 per channel (18 channels) plus one black image.
    assert calls[0] == 1
    assert all(size <= 5 for size in calls[1:])
    assert sum(calls[1:]) <= 2 * 18 + 1
    assert "Poly-CAM forward passes" in capsys.readouterr().err


def test_additional_forward_args_follow_their_example(tiny_cnn: nn.Module, tiny_inputs: Tensor):
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = tiny_cnn

        def forward(self, x: Tensor, scale: Tensor, offset: float) -> Tensor:
            return self.net(x) * scale[:, None] + offset

    model = Scaled().eval()
    layers = [f"net.{name}" for name in LAYERS]
    scale = torch.tensor([1.0, -2.0, 0.5])
    batch = PolyCam(model, layers).attribute(tiny_inputs, 1, (scale, 0.25))
    for i in range(3):
        single = PolyCam(model, layers).attribute(
            tiny_inputs[i : i + 1], 1, (scale[i : i + 1], 0.25)
        )
        torch.testing.assert_close(batch[i : i + 1], single, atol=1e-5, rtol=0)


def test_discovery_with_per_example_forward_args(tiny_cnn: nn.Module, tiny_inputs: Tensor):
    class Shifted(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = tiny_cnn

        def forward(self, x: Tensor, shift: Tensor) -> Tensor:
            return self.net(x + shift[:, :, None, None])

    model = Shifted().eval()
    shift = torch.rand(3, 3)
    discovered = PolyCam(model).attribute(tiny_inputs, 0, (shift,))
    explicit = PolyCam(model, [f"net.{name}" for name in LAYERS]).attribute(tiny_inputs, 0, shift)
    torch.testing.assert_close(discovered, explicit)


def test_modules_names_and_call_indices_are_equivalent(tiny_cnn, tiny_inputs) -> None:
    by_name = PolyCam(tiny_cnn, LAYERS).attribute(tiny_inputs)
    by_module = PolyCam(tiny_cnn, [tiny_cnn.block1, tiny_cnn.block2, tiny_cnn.block3])
    torch.testing.assert_close(by_module.attribute(tiny_inputs), by_name)
    by_call = PolyCam(tiny_cnn, ["block1:0", ("block2", -1), (tiny_cnn.block3, 0)])
    torch.testing.assert_close(by_call.attribute(tiny_inputs), by_name)


def test_reused_module_call_index_selects_the_right_output(tiny_inputs: Tensor) -> None:
    model = ReusedReLU().eval()  # one ReLU object called at 16 x 16, then at 8 x 8
    _, stages = PolyCam(model, ["act:0", "act"]).attribute(tiny_inputs, return_stages=True)
    assert len(stages) == 2
    with pytest.raises(ValueError, match=r"act:5.*called 2 time"):
        PolyCam(model, ["act:5"]).attribute(tiny_inputs)


def test_interpolated_stages_work_with_layer_attribution(tiny_cnn, tiny_inputs) -> None:
    from captum.attr import LayerAttribution

    _, stages = PolyCam(tiny_cnn, LAYERS).attribute(tiny_inputs, return_stages=True)
    resized = LayerAttribution.interpolate(stages[0], (32, 32), "bilinear")
    assert resized.shape == (3, 1, 32, 32)
    torch.testing.assert_close(LayerAttribution.interpolate(stages[-1], (16, 16)), stages[-1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_inputs_give_cuda_maps_equal_to_cpu(tiny_cnn, tiny_inputs) -> None:
    cpu = PolyCam(tiny_cnn, LAYERS).attribute(tiny_inputs)
    model = tiny_cnn.cuda()
    gpu = PolyCam(model, LAYERS).attribute(tiny_inputs.cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)


def test_without_local_normalisation_matches_the_reference(tiny_cnn, tiny_inputs) -> None:
    ablated = PolyCam(tiny_cnn, LAYERS, "plus", local_normalisation=False)
    maps, stages = ablated.attribute(tiny_inputs, target=[0, 3, 4], return_stages=True)
    with_lnorm = PolyCam(tiny_cnn, LAYERS, "plus").attribute(tiny_inputs, target=[0, 3, 4])
    assert not torch.allclose(maps, with_lnorm, atol=1e-3)
    layers = [getattr(tiny_cnn, name) for name in LAYERS]
    for i, target in enumerate([0, 3, 4]):
        expected = reference_polycam(
            tiny_cnn, tiny_inputs[i : i + 1], layers, target, "plus", local_normalisation=False
        )
        for stage, reference in zip(stages, expected, strict=True):
            np.testing.assert_allclose(stage[i, 0].numpy(), reference, atol=1e-4)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.filterwarnings("ignore:precision=.* slower than fp32")  # as fast as this CPU is
def test_lower_precision_maps_stay_close_to_fp32(tiny_cnn, tiny_inputs, precision) -> None:
    exact = PolyCam(tiny_cnn, LAYERS, "plusminus").decompose(tiny_inputs)
    lowered = PolyCam(tiny_cnn, LAYERS, "plusminus", precision=precision).decompose(tiny_inputs)
    assert lowered.maps.dtype == torch.float32
    # The clean pass and the activations stay fp32: the deepest layer's ranking of positions
    # only moves where channel weights moved.
    torch.testing.assert_close(lowered.maps, exact.maps, atol=0.1, rtol=0)
    assert "precision='" + precision + "'" in repr(PolyCam(tiny_cnn, LAYERS, precision=precision))


def test_compiled_scoring_compiles_once_and_matches_eager(
    tiny_cnn, tiny_inputs, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torch._dynamo.testing import CompileCounter

    counter = CompileCounter()  # a backend that counts compilations and runs the graph
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compile_(fn, backend=counter, **kw))
    torch._dynamo.reset()
    # 54 masked inputs per plan in passes of 3 x 4: the last pass is padded, not recompiled.
    compiled = PolyCam(tiny_cnn, LAYERS, "plus", compile=True)
    maps = compiled.attribute(tiny_inputs, target=[0, 1, 2], perturbations_per_eval=4)
    eager = PolyCam(tiny_cnn, LAYERS, "plus").attribute(
        tiny_inputs, target=[0, 1, 2], perturbations_per_eval=4
    )
    torch.testing.assert_close(maps, eager)
    assert counter.frame_count == 1
    assert "compile=True" in repr(compiled)


def test_a_model_that_drops_rows_on_masked_passes_is_refused(tiny_cnn, tiny_inputs) -> None:
    model = DropsRowsWhenPerturbed(tiny_cnn).eval()
    polycam = PolyCam(model, ["net.block1", "net.block2", "net.block3"], "plus")
    with pytest.raises(
        ValueError,
        match=re.escape(
            "forward_func (scored with score_fn='softmax') must give one row of scores per input "
            "on every pass, shaped as on the clean pass: a perturbed pass of 3 inputs gave shape "
            "(1, 5), expected (3, 5)"
        ),
    ):
        polycam.attribute(tiny_inputs, perturbations_per_eval=1)
    assert model.passes == 2  # the first masked pass stopped it


def test_a_score_fn_that_drops_rows_on_masked_passes_is_refused(tiny_cnn, tiny_inputs) -> None:
    calls = []

    def detections(output: Tensor) -> Tensor:
        calls.append(len(output))
        scores = output.softmax(dim=1)
        return scores if len(calls) == 1 else scores[scores[:, 0] > 1.0]  # none detected

    polycam = PolyCam(tiny_cnn, LAYERS, "plus", score_fn=detections)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "score_fn must give one row of scores per input on every pass, shaped as on the clean "
            "pass: a perturbed pass of 6 inputs gave shape (0, 5), expected (6, 5)"
        ),
    ):
        polycam.attribute(tiny_inputs, target=0, perturbations_per_eval=2)


@pytest.mark.parametrize(
    "layers", [["conv1", "conv1"], ["act:0", ("act", 0)], lambda m: ["conv2", m.conv2]]
)
def test_a_layer_given_twice_is_refused_on_construction(layers) -> None:
    model = ReusedReLU().eval()
    layers = layers(model) if callable(layers) else layers
    with pytest.raises(
        ValueError,
        match=r"layers: layers\[0\] and layers\[1\] are both "
        r"(conv1|act:0|conv2); give each layer once",
    ):
        PolyCam(model, layers)
    assert model.passes == 0


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        (
            ["act:0", "act:1", "act"],
            "layers: act:1 and act are the same output, call 1 of the 2 "
            "calls of the module; give each layer once",
        ),
        (
            ["act:0", "act:99"],
            "layers: act:99 asks for call 99, but the module is called 2 time(s)",
        ),
        (
            ["act:1", "act:0"],
            "layers: must go shallow to deep, by non-increasing resolution; "
            "act:0 (4@16x16) comes after act:1 (4@8x8)",
        ),
    ],
)
def test_layer_errors_come_before_any_masked_pass(tiny_inputs: Tensor, layers, message) -> None:
    model = ReusedReLU().eval()
    polycam = PolyCam(model, layers)
    with pytest.raises(ValueError, match=re.escape(message)):
        polycam.attribute(tiny_inputs)
    assert model.passes == 1  # the clean pass only


def test_bf16_much_slower_than_fp32_on_the_cpu_warns_once(
    tiny_cnn, tiny_inputs, monkeypatch: pytest.MonkeyPatch
) -> None:
    from captum_polycam.perturbation import tuning
    from captum_polycam.perturbation.scoring import _LOWERED

    _LOWERED.forget()
    measured: list[bool] = []

    def fake_slowdown(run, clock=None) -> float:  # as measured on an AVX2-only AMD EPYC
        measured.append(True)
        return 17.2

    monkeypatch.setattr(tuning, "slowdown", fake_slowdown)
    monkeypatch.setattr(tuning, "cpu_flags", lambda: frozenset({"avx", "avx2"}))
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    polycam = PolyCam(tiny_cnn, LAYERS, "plus", precision="bf16")
    with pytest.warns(
        UserWarning,
        match=re.escape(
            "precision='bf16' runs 17x slower than fp32 on this CPU (AVX2, no native bf16), "
            "measured on one input of this model; use precision='fp32'"
        ),
    ) as record:
        polycam.attribute(tiny_inputs)
    assert [w.filename for w in record] == [__file__]  # it names the line that asked for it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        polycam.attribute(tiny_inputs)  # once per model and input shape, not per call
    assert measured == [True]


@pytest.mark.parametrize("variant", ["plus", "plusminus"])
def test_recomposed_without_lnorm_equals_a_run_without_it(tiny_cnn, tiny_inputs, variant) -> None:
    result = PolyCam(tiny_cnn, LAYERS, variant).decompose(tiny_inputs, perturbations_per_eval=4)
    ablation = PolyCam(tiny_cnn, LAYERS, variant, local_normalisation=False).decompose(
        tiny_inputs, perturbations_per_eval=4
    )
    recomposed = result.recomposed(local_normalisation=False)
    for got, expected in zip(
        [recomposed.maps, *recomposed.stages], [ablation.maps, *ablation.stages], strict=True
    ):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert recomposed.layer_maps is result.layer_maps  # the weights are not touched
    back = recomposed.recomposed(local_normalisation=True)
    torch.testing.assert_close(back.maps, result.maps, rtol=0, atol=0)
