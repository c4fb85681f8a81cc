"""Methods by name: parsing, Poly-CAM runs and their outputs, Captum's baselines and their
scaling."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import pytest
import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import Tensor, nn

from captum_polycam import PolyCam
from captum_polycam.evaluation import BASELINES, Method, build_methods
from captum_polycam.evaluation.methods import Run, method_file_stem, scale_to_unit
from captum_polycam.resources import EvaluationError
from tests.attr.test_reshape import from_channels_last
from tests.conftest import (
    FromChannelsLast,
    FromTokens,
    Restaged,
    TinyCNN,
    ToChannelsLast,
    ToTokens,
    hooked_modules,
)

LAYERS = ["block1", "block2", "block3"]


def gradcam_on_block2(model: nn.Module) -> LayerGradCam:
    """A user's method, named ``tests.evaluation.test_methods:gradcam_on_block2``."""
    return LayerGradCam(model, model.block2)


def _explained(runs: Sequence[Run], inputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
    """Every method's maps, each run asked once."""
    return {name: maps for run in runs for name, maps in run.explain(inputs, targets).maps.items()}


def _methods(runs: Sequence[Run]) -> dict[str, Method]:
    return {method.name: method for run in runs for method in run.methods}


def test_scale_to_unit_by_hand() -> None:
    maps = torch.tensor([[[[0.0, 2.0], [1.0, 4.0]]], [[[3.0, 3.0], [3.0, 3.0]]]])
    expected = torch.tensor([[[[0.0, 0.5], [0.25, 1.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])
    torch.testing.assert_close(scale_to_unit(maps), expected)
    torch.testing.assert_close(scale_to_unit(torch.zeros(1, 1, 2, 2)), torch.zeros(1, 1, 2, 2))


@pytest.mark.parametrize(
    "name",
    [
        *BASELINES,
        "pcam+",
        "pcam-:no-lnorm",
        "pcam+-:stage2",
        "tests.evaluation.test_methods:gradcam_on_block2",
    ],
)
def test_every_method_gives_unit_maps_at_the_input_size(
    name: str, tiny_cnn: nn.Module, tiny_inputs: Tensor
) -> None:
    (run,) = build_methods([name], tiny_cnn, LAYERS)
    torch.manual_seed(0)
    maps = run.explain(tiny_inputs, torch.tensor([0, 3, 4])).maps[name]
    assert maps.shape == (3, 1, 16, 16) and maps.dtype == torch.float32
    assert maps.min() >= 0 and maps.max() <= 1
    (method,) = run.methods
    assert method.parameters and method.name == name


def test_poly_cam_names_select_the_variant_ablation_and_output(
    tiny_cnn: nn.Module, tiny_inputs: Tensor
) -> None:
    names = ["pcam+-", "pcam+-:stage1", "pcam+-:layer1", "pcam-:no-lnorm"]
    runs = build_methods(names, tiny_cnn, LAYERS)
    targets = torch.tensor([1, 1, 0])
    full = PolyCam(tiny_cnn, LAYERS, "plusminus").decompose(tiny_inputs, targets)
    ablation = PolyCam(tiny_cnn, LAYERS, "minus", local_normalisation=False)
    explained = _explained(runs, tiny_inputs, targets)
    for name, expected in zip(
        names,
        [full.maps, full.stages[0], full.layer_maps[0], ablation.attribute(tiny_inputs, targets)],
        strict=True,
    ):
        torch.testing.assert_close(explained[name], expected)
    methods = _methods(runs)
    assert (
        methods["pcam+-:stage1"]
        .parameters["output"]
        .startswith("stage 1: the deepest 1 layer(s), block3")
    )
    assert methods["pcam-:no-lnorm"].parameters["local_normalisation"] is False


def test_gradcam_is_captum_layer_gradcam_on_the_deepest_layer_upsampled(
    tiny_cnn: nn.Module, tiny_inputs: Tensor
) -> None:
    (run,) = build_methods(["gradcam"], tiny_cnn, LAYERS)
    targets = torch.tensor([0, 1, 2])
    raw = LayerGradCam(tiny_cnn, tiny_cnn.block3).attribute(
        tiny_inputs, targets, relu_attributions=True
    )
    upsampled = LayerAttribution.interpolate(raw, (16, 16), "bilinear")
    expected = upsampled / upsampled.flatten(1).amax(dim=1)[:, None, None, None]
    expected = expected.nan_to_num(0.0)  # an all-zero Grad-CAM map stays zero
    torch.testing.assert_close(run.explain(tiny_inputs, targets).maps["gradcam"], expected)


def test_a_single_target_applies_to_every_example(tiny_cnn: nn.Module, tiny_inputs: Tensor):
    (run,) = build_methods(["saliency"], tiny_cnn, LAYERS)
    torch.testing.assert_close(
        run.explain(tiny_inputs, torch.tensor([2])).maps["saliency"],
        run.explain(tiny_inputs, torch.tensor([2, 2, 2])).maps["saliency"],
    )


def test_random_maps_follow_the_seed(tiny_cnn: nn.Module, tiny_inputs: Tensor) -> None:
    (run,) = build_methods(["random"], tiny_cnn, LAYERS)
    targets = torch.zeros(3, dtype=torch.long)
    torch.manual_seed(5)
    first = run.explain(tiny_inputs, targets).maps["random"]
    torch.manual_seed(5)
    assert torch.equal(first, run.explain(tiny_inputs, targets).maps["random"])


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ([], "at least one method"),
        (["gradcam", "gradcam"], "gradcam given twice"),
        (["gradcm"], "unknown method 'gradcm'"),
        (["pcam+:stage4"], "asks for stage4, but Poly-CAM runs on 3 layers"),
        (["pcam+:layer0"], "options after pcam\\+ are"),
        (["pcam+:stage1:layer1"], "options after pcam\\+ are"),
        (["pcam+:no-lnorm:no-lnorm"], "options after pcam\\+ are"),
        (["no.such.module:factory"], "'no.such.module:factory': cannot import it"),
        (["builtins:repr"], "must return a Captum attribution .*; got str"),
    ],
)
def test_bad_names_are_refused_with_the_reason(
    names: list[str], message: str, tiny_cnn: nn.Module
) -> None:
    with pytest.raises(EvaluationError, match=message):
        build_methods(names, tiny_cnn, LAYERS)


def test_file_stems_are_safe_on_every_file_system() -> None:
    assert method_file_stem("pcam+-:no-lnorm") == "pcam+-_no-lnorm"
    assert method_file_stem("my.module:method") == "my.module_method"


def test_budget_option_builds_one_budgeted_run_per_budget(
    tiny_cnn: nn.Module, tiny_inputs: Tensor
) -> None:
    names = ["pcam+-", "pcam+-:budget0.5", "pcam+-:budget0.5:stage1", "pcam+:no-lnorm:budget.25"]
    runs = build_methods(names, tiny_cnn, LAYERS)
    assert [[method.name for method in run.methods] for run in runs] == [
        names[:1],
        names[1:3],
        names[3:],
    ]
    targets = torch.tensor([1, 1, 0])
    budgeted = PolyCam(tiny_cnn, LAYERS, "plusminus", pass_budget=0.5).decompose(
        tiny_inputs, targets
    )
    ablation = PolyCam(tiny_cnn, LAYERS, "plus", local_normalisation=False, pass_budget=0.25)
    expected = [budgeted.maps, budgeted.stages[0], ablation.attribute(tiny_inputs, targets)]
    explained = _explained(runs[1:], tiny_inputs, targets)
    for name, maps in zip(names[1:], expected, strict=True):
        torch.testing.assert_close(explained[name], maps)
    methods = _methods(runs)
    assert methods["pcam+-"].parameters["pass_budget"] is None  # the exact method
    assert methods["pcam+-:budget0.5"].parameters["pass_budget"] == 0.5
    assert methods["pcam+:no-lnorm:budget.25"].parameters["pass_budget"] == 0.25
    assert method_file_stem(names[1]) == "pcam+-_budget0.5"


def test_auto_option_builds_an_auto_budgeted_run_that_gives_its_fidelity(
    tiny_cnn: nn.Module, tiny_inputs: Tensor
) -> None:
    runs = build_methods(["pcam+", "pcam+:auto"], tiny_cnn, LAYERS)
    targets = torch.tensor([1, 1, 0])
    exact, auto = (run.explain(tiny_inputs, targets) for run in runs)
    assert exact.fidelity is None
    expected = PolyCam(tiny_cnn, LAYERS, "plus", pass_budget="auto").decompose(tiny_inputs, targets)
    torch.testing.assert_close(auto.maps["pcam+:auto"], expected.maps)
    torch.testing.assert_close(auto.fidelity, expected.fidelity)
    parameters = _methods(runs)["pcam+:auto"].parameters
    assert (parameters["pass_budget"], parameters["min_fidelity"]) == ("auto", 0.99)


@pytest.mark.parametrize(
    "name",
    [
        "pcam+:budget0",
        "pcam+:budget1.5",
        "pcam+:budget",
        "pcam+:budget0.5:budget0.2",
        "pcam+:budgetx",
        "pcam+:auto:budget0.5",
        "pcam+:auto:auto",
    ],
)
def test_bad_budget_options_are_named(name: str, tiny_cnn: nn.Module) -> None:
    with pytest.raises(EvaluationError, match=re.escape(repr(name))):
        build_methods([name], tiny_cnn, LAYERS)


def test_names_that_would_share_artefact_files_are_refused(tiny_cnn: nn.Module) -> None:
    # Both stems are mth_a_b: the second run's maps would overwrite the first's.
    with pytest.raises(EvaluationError, match="mth_a:b and mth:a_b would share"):
        build_methods(["mth_a:b", "mth:a_b"], tiny_cnn, LAYERS)


def test_a_custom_method_is_recorded_without_a_memory_address(tiny_cnn: nn.Module) -> None:
    [run] = build_methods(["tests.evaluation.tiny_models:saliency"], tiny_cnn, LAYERS)
    assert run.methods[0].parameters["attribution"] == "captum.attr._core.saliency.Saliency"
    [polycam] = build_methods(["tests.evaluation.tiny_models:polycam"], tiny_cnn, LAYERS)
    # Its own repr.
    assert polycam.methods[0].parameters["attribution"].startswith("PolyCam(layers=")


def test_a_failing_custom_factory_is_named(tiny_cnn: nn.Module) -> None:
    name = "tests.evaluation.tiny_models:failing_method"
    with pytest.raises(
        EvaluationError,
        match=f"methods: '{name}' failed to build its "
        "attribution: RuntimeError: no weights for this model",
    ):
        build_methods([name], tiny_cnn, LAYERS)


def test_outputs_of_one_poly_cam_configuration_are_one_run_that_computes_anew_each_call(
    tiny_cnn: nn.Module, tiny_inputs: Tensor
) -> None:
    names = ["pcam+", "gradcam", "pcam+:no-lnorm", "pcam-", "pcam+:stage1"]
    runs = build_methods(names, tiny_cnn, LAYERS)
    # One run per configuration, at the place of its first name, its outputs in their order.
    assert [[method.name for method in run.methods] for run in runs] == [
        ["pcam+", "pcam+:no-lnorm", "pcam+:stage1"],
        ["gradcam"],
        ["pcam-"],
    ]
    targets = torch.tensor([1, 1, 0])
    passes: list[int] = []
    hook = tiny_cnn.register_forward_pre_hook(lambda _, args: passes.append(len(args[0])))
    try:
        PolyCam(tiny_cnn, LAYERS, "plus").decompose(tiny_inputs, targets)
        passes_of_one_run = len(passes)
        # Every output of the run from one decomposition: no pass more than Poly-CAM alone.
        before = runs[0].explain(tiny_inputs, targets).maps
        assert list(before) == ["pcam+", "pcam+:no-lnorm", "pcam+:stage1"]
        assert len(passes) == 2 * passes_of_one_run
        # Each call computes anew: the same images again are a new run, which sees the model
        # as it is now.
        with torch.no_grad():
            tiny_cnn.head.bias.add_(torch.tensor([0.0, 5.0, 0.0, 0.0, 0.0]))
        after = runs[0].explain(tiny_inputs, targets).maps
    finally:
        hook.remove()
    assert len(passes) == 3 * passes_of_one_run
    assert not torch.equal(before["pcam+"], after["pcam+"])


def test_a_run_knows_its_masked_passes_per_image(tiny_cnn: nn.Module) -> None:
    names = ["pcam+", "pcam+:stage2", "pcam-", "pcam+-:budget0.3", "gradcam", "random"]
    runs = build_methods(names, tiny_cnn, LAYERS)
    channels = 4 + 6 + 8  # block1, block2, block3
    assert [run.masked_passes_per_image(channels) for run in runs] == [
        channels + 1,  # every channel once, and the black image of the unveiling variant
        channels,
        math.ceil(2 * channels * 0.3) + 1,
        0,
        0,
    ]


def test_a_run_s_masked_passes_bound_those_it_makes(tiny_cnn: nn.Module) -> None:
    inputs = torch.rand(1, 3, 16, 16)
    (run,) = build_methods(["pcam+-", "pcam+-:layer2"], tiny_cnn, LAYERS)
    forwarded: list[int] = []
    hook = tiny_cnn.register_forward_pre_hook(lambda _, args: forwarded.append(len(args[0])))
    try:
        run.explain(inputs, torch.tensor([2]))
    finally:
        hook.remove()
    clean = 1  # the pass that captures the activations
    assert 0 < sum(forwarded) - clean <= run.masked_passes_per_image(4 + 6 + 8)


STAGES = ["stage1", "stage2", "stage3"]


@pytest.mark.parametrize(
    ("layout", "reshape"),
    [((ToChannelsLast, FromChannelsLast), "nhwc"), ((ToTokens, FromTokens), "tokens")],
)
def test_layer_methods_read_a_reshaped_model_as_its_cnn(
    layout: tuple[type[nn.Module], type[nn.Module]],
    reshape: str,
    tiny_cnn: TinyCNN,
    tiny_inputs: Tensor,
) -> None:
    # The restaged model computes what the CNN computes, in another layout: read through the
    # reshape, its layers are the CNN's, so Grad-CAM and Poly-CAM must give the CNN's maps.
    restaged = Restaged(tiny_cnn, *layout).eval()
    names = ["gradcam", "pcam+", "pcam+:layer2"]
    targets = torch.tensor([0, 3, 4])
    expected = build_methods(names, tiny_cnn, LAYERS)
    runs = build_methods(names, restaged, STAGES, reshape=reshape)
    maps, cnn_maps = (_explained(r, tiny_inputs, targets) for r in (runs, expected))
    methods, cnn_methods = _methods(runs), _methods(expected)
    for name in names:
        torch.testing.assert_close(maps[name], cnn_maps[name])
        assert methods[name].parameters["reshape"] == reshape
        assert cnn_methods[name].parameters["reshape"] is None
    assert hooked_modules(restaged) == []


def test_a_reshape_function_is_recorded_by_where_it_lives(tiny_cnn: TinyCNN) -> None:
    restaged = Restaged(tiny_cnn, ToChannelsLast, FromChannelsLast).eval()
    named = "tests.attr.test_reshape:from_channels_last"
    for reshape in (named, from_channels_last):
        (run,) = build_methods(["gradcam"], restaged, STAGES, reshape=reshape)
        assert run.methods[0].parameters["reshape"] == named
    # A function that cannot be imported by its name is recorded by it, and used as it is.
    inputs, targets = torch.rand(2, 3, 16, 16), torch.tensor([0, 1])
    names = ["pcam+", "gradcam"]
    local = build_methods(names, restaged, STAGES, reshape=lambda x: x.permute(0, 3, 1, 2))
    expected = build_methods(names, tiny_cnn, LAYERS)
    maps, cnn_maps = (_explained(r, inputs, targets) for r in (local, expected))
    for name, method in _methods(local).items():
        assert method.parameters["reshape"].endswith("<locals>.<lambda>")
        torch.testing.assert_close(maps[name], cnn_maps[name])
    with pytest.raises(EvaluationError, match="reshape must be None, 'nhwc', 'tokens'"):
        build_methods(["gradcam"], restaged, STAGES, reshape="nchw")
