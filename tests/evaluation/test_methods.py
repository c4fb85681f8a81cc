"""Methods by name: parsing, the shared Poly-CAM run, Captum's baselines and their scaling."""

from __future__ import annotations

import re

import pytest
import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import Tensor, nn

from captum_polycam import PolyCam
from captum_polycam.evaluation import BASELINES, EvaluationError, build_methods
from captum_polycam.evaluation.methods import method_file_stem, scale_to_unit
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
    (method,) = build_methods([name], tiny_cnn, LAYERS)
    torch.manual_seed(0)
    maps = method.explain(tiny_inputs, torch.tensor([0, 3, 4]))
    assert maps.shape == (3, 1, 16, 16) and maps.dtype == torch.float32
    assert maps.min() >= 0 and maps.max() <= 1
    assert method.parameters and method.name == name


def test_poly_cam_names_select_the_variant_ablation_and_output(
    tiny_cnn: nn.Module, tiny_inputs: Tensor
) -> None:
    names = ["pcam+-", "pcam+-:stage1", "pcam+-:layer1", "pcam-:no-lnorm"]
    methods = build_methods(names, tiny_cnn, LAYERS)
    targets = torch.tensor([1, 1, 0])
    full = PolyCam(tiny_cnn, LAYERS, "plusminus").decompose(tiny_inputs, targets)
    ablation = PolyCam(tiny_cnn, LAYERS, "minus", local_normalisation=False)
    for method, expected in zip(
        methods,
        [full.maps, full.stages[0], full.layer_maps[0], ablation.attribute(tiny_inputs, targets)],
        strict=True,
    ):
        torch.testing.assert_close(method.explain(tiny_inputs, targets), expected)
    assert methods[1].parameters["output"].startswith("stage 1: the deepest 1 layer(s), block3")
    assert methods[3].parameters["local_normalisation"] is False


def test_gradcam_is_captum_layer_gradcam_on_the_deepest_layer_upsampled(
    tiny_cnn: nn.Module, tiny_inputs: Tensor
) -> None:
    (method,) = build_methods(["gradcam"], tiny_cnn, LAYERS)
    targets = torch.tensor([0, 1, 2])
    raw = LayerGradCam(tiny_cnn, tiny_cnn.block3).attribute(
        tiny_inputs, targets, relu_attributions=True
    )
    upsampled = LayerAttribution.interpolate(raw, (16, 16), "bilinear")
    expected = upsampled / upsampled.flatten(1).amax(dim=1)[:, None, None, None]
    expected = expected.nan_to_num(0.0)  # an all-zero Grad-CAM map stays zero
    torch.testing.assert_close(method.explain(tiny_inputs, targets), expected)


def test_a_single_target_applies_to_every_example(tiny_cnn: nn.Module, tiny_inputs: Tensor):
    (method,) = build_methods(["saliency"], tiny_cnn, LAYERS)
    torch.testing.assert_close(
        method.explain(tiny_inputs, torch.tensor([2])),
        method.explain(tiny_inputs, torch.tensor([2, 2, 2])),
    )


def test_random_maps_follow_the_seed(tiny_cnn: nn.Module, tiny_inputs: Tensor) -> None:
    (method,) = build_methods(["random"], tiny_cnn, LAYERS)
    targets = torch.zeros(3, dtype=torch.long)
    torch.manual_seed(5)
    first = method.explain(tiny_inputs, targets)
    torch.manual_seed(5)
    assert torch.equal(first, method.explain(tiny_inputs, targets))


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
    methods = build_methods(names, tiny_cnn, LAYERS)
    targets = torch.tensor([1, 1, 0])
    budgeted = PolyCam(tiny_cnn, LAYERS, "plusminus", pass_budget=0.5).decompose(
        tiny_inputs, targets
    )
    ablation = PolyCam(tiny_cnn, LAYERS, "plus", local_normalisation=False, pass_budget=0.25)
    expected = [budgeted.maps, budgeted.stages[0], ablation.attribute(tiny_inputs, targets)]
    for method, maps in zip(methods[1:], expected, strict=True):
        torch.testing.assert_close(method.explain(tiny_inputs, targets), maps)
    assert "pass_budget" not in methods[0].parameters  # the exact method reads as before
    assert methods[1].parameters["pass_budget"] == 0.5
    assert methods[3].parameters["pass_budget"] == 0.25
    assert method_file_stem(names[1]) == "pcam+-_budget0.5"


@pytest.mark.parametrize(
    "name",
    [
        "pcam+:budget0",
        "pcam+:budget1.5",
        "pcam+:budget",
        "pcam+:budget0.5:budget0.2",
        "pcam+:budgetx",
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
    [method] = build_methods(["tests.evaluation.tiny_models:saliency"], tiny_cnn, LAYERS)
    assert method.parameters["attribution"] == "captum.attr._core.saliency.Saliency"
    [polycam] = build_methods(["tests.evaluation.tiny_models:polycam"], tiny_cnn, LAYERS)
    assert polycam.parameters["attribution"].startswith("PolyCam(layers=")  # its own repr


def test_a_failing_custom_factory_is_named(tiny_cnn: nn.Module) -> None:
    name = "tests.evaluation.tiny_models:failing_method"
    with pytest.raises(
        EvaluationError,
        match=f"methods: '{name}' failed to build its "
        "attribution: RuntimeError: no weights for this model",
    ):
        build_methods([name], tiny_cnn, LAYERS)


def test_outputs_of_one_poly_cam_share_a_run_per_batch_and_model(
    tiny_cnn: nn.Module, tiny_inputs: Tensor
) -> None:
    methods = build_methods(["pcam+", "pcam+:no-lnorm", "pcam+:stage1"], tiny_cnn, LAYERS)
    targets = torch.tensor([1, 1, 0])
    runs: list[int] = []
    hook = tiny_cnn.register_forward_pre_hook(lambda _, args: runs.append(len(args[0])))
    try:
        before = [method.explain(tiny_inputs, targets) for method in methods[:2]]
        passes_of_one_run = len(runs)
        # A copy of the same images is the same batch: no new run for another output...
        methods[2].explain(tiny_inputs.clone(), targets)
        assert len(runs) == passes_of_one_run
        # ...but an output asked for again is a new batch or a changed model: a new run.
        with torch.no_grad():
            tiny_cnn.head.bias.add_(torch.tensor([0.0, 5.0, 0.0, 0.0, 0.0]))
        after = methods[0].explain(tiny_inputs, targets)
    finally:
        hook.remove()
    assert len(runs) == 2 * passes_of_one_run
    assert not torch.equal(before[0], after)


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
    methods = build_methods(names, restaged, STAGES, reshape=reshape)
    for method, cnn in zip(methods, expected, strict=True):
        maps = method.explain(tiny_inputs, targets)
        torch.testing.assert_close(maps, cnn.explain(tiny_inputs, targets))
        assert method.parameters["reshape"] == reshape and "reshape" not in cnn.parameters
    assert hooked_modules(restaged) == []


def test_a_reshape_function_is_recorded_by_where_it_lives(tiny_cnn: TinyCNN) -> None:
    restaged = Restaged(tiny_cnn, ToChannelsLast, FromChannelsLast).eval()
    named = "tests.attr.test_reshape:from_channels_last"
    for reshape in (named, from_channels_last):
        (method,) = build_methods(["gradcam"], restaged, STAGES, reshape=reshape)
        assert method.parameters["reshape"] == named
    # A function that cannot be imported by its name is recorded by it, and used as it is.
    inputs, targets = torch.rand(2, 3, 16, 16), torch.tensor([0, 1])
    names = ["pcam+", "gradcam"]
    local = build_methods(names, restaged, STAGES, reshape=lambda x: x.permute(0, 3, 1, 2))
    expected = build_methods(names, tiny_cnn, LAYERS)
    for method, cnn in zip(local, expected, strict=True):
        assert method.parameters["reshape"].endswith("<locals>.<lambda>")
        torch.testing.assert_close(method.explain(inputs, targets), cnn.explain(inputs, targets))
    with pytest.raises(EvaluationError, match="reshape must be None, 'nhwc', 'tokens'"):
        build_methods(["gradcam"], restaged, STAGES, reshape="nchw")
