"""Max- and average-sensitivity: Captum's numbers under the same seed, and analytic cases."""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from typing import Any

import pytest
import torch
from captum.attr import IntegratedGradients, Saliency
from captum.metrics import sensitivity_max
from torch import Tensor, nn

from captum_polycam import PolyCam
from captum_polycam.metrics.sensitivity import Sensitivity, SensitivityResult
from tests.metrics.nd_models import TinyNet

LAYERS = ["block1", "block2", "block3"]


def _captum(explanation_func: Any, inputs: Tensor, seed: int, **kwargs: Any) -> Tensor:
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        # Captum warns about max_examples_per_batch outside [N, N * n], then clamps it.
        warnings.simplefilter("ignore")
        return sensitivity_max(explanation_func, inputs, **kwargs)


def _ours(
    explanation_func: Any,
    inputs: Tensor | tuple[Tensor],
    seed: int,
    n_perturb_samples: int = 10,
    perturb_radius: float = 0.02,
    norm_ord: Any = "fro",
    max_examples_per_batch: int | None = None,
    **kwargs: Any,
) -> SensitivityResult:
    torch.manual_seed(seed)
    metric = Sensitivity(
        explanation_func, n_perturb_samples, perturb_radius, norm_ord, max_examples_per_batch
    )
    return metric(inputs, **kwargs)


@pytest.fixture(autouse=True)
def _quiet_saliency():
    # Saliency warns that the inputs did not require gradients, for every call.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require")
        yield


@pytest.mark.parametrize("target", [[1, 2, 4], torch.tensor([3, 0, 2]), 2])
def test_max_equals_captum_for_saliency(tiny_cnn: nn.Module, tiny_inputs: Tensor, target) -> None:
    explain = Saliency(tiny_cnn).attribute
    expected = _captum(explain, tiny_inputs, 3, target=target, n_perturb_samples=4)
    result = _ours(explain, tiny_inputs, 3, n_perturb_samples=4, target=target)
    torch.testing.assert_close(result.max, expected, rtol=0, atol=0)
    assert result.avg.shape == (3,) and bool((result.avg <= result.max).all())
    assert bool((result.avg < result.max).any())


def test_max_equals_captum_for_integrated_gradients(
    tiny_cnn: nn.Module, tiny_inputs: Tensor
) -> None:
    # Per-example baselines and a tensor target follow their example into the samples.
    explain = IntegratedGradients(tiny_cnn).attribute
    kwargs = {"target": torch.tensor([0, 1, 4]), "baselines": torch.rand(3, 3, 16, 16)}
    expected = _captum(explain, tiny_inputs, 7, n_perturb_samples=3, n_steps=4, **kwargs)
    result = _ours(explain, tiny_inputs, 7, n_perturb_samples=3, n_steps=4, **kwargs)
    torch.testing.assert_close(result.max, expected, rtol=0, atol=0)


def test_max_equals_captum_for_poly_cam(tiny_cnn: nn.Module, tiny_inputs: Tensor) -> None:
    # Fixed passes, so that both runs give the same bits (a measured pass size could differ).
    explain = functools.partial(PolyCam(tiny_cnn, LAYERS).attribute, perturbations_per_eval=4)
    inputs = tiny_inputs[:2]
    expected = _captum(explain, inputs, 1, target=[1, 3], n_perturb_samples=3)
    result = _ours(explain, inputs, 1, n_perturb_samples=3, target=[1, 3])
    torch.testing.assert_close(result.max, expected, rtol=0, atol=0)
    assert bool((result.max > 0).all())


@pytest.mark.parametrize("max_examples_per_batch", [1, 3, 7, 6, 100])
def test_max_equals_captum_in_chunks(
    tiny_cnn: nn.Module, tiny_inputs: Tensor, max_examples_per_batch: int
) -> None:
    # N = 3, n = 4: chunks of 1 sample per example (1, 3), 2 (6, 7) with no remainder,
    # and all of them (100).
    explain = Saliency(tiny_cnn).attribute
    kwargs = {"n_perturb_samples": 4, "max_examples_per_batch": max_examples_per_batch}
    expected = _captum(explain, tiny_inputs, 11, target=[0, 1, 2], **kwargs)
    result = _ours(explain, tiny_inputs, 11, target=[0, 1, 2], **kwargs)
    torch.testing.assert_close(result.max, expected, rtol=0, atol=0)


def test_max_equals_captum_in_chunks_with_a_remainder(
    tiny_cnn: nn.Module, tiny_inputs: Tensor
) -> None:
    # n = 5 in chunks of 2 samples per example: 2, 2, 1. Poly-CAM's passes are fixed, so that
    # its maps are the same bits in both runs (a measured pass size could differ between them).
    explain = functools.partial(PolyCam(tiny_cnn, LAYERS).attribute, perturbations_per_eval=2)
    kwargs = {"n_perturb_samples": 5, "max_examples_per_batch": 5}
    expected = _captum(explain, tiny_inputs[:2], 4, target=[2, 0], **kwargs)
    result = _ours(explain, tiny_inputs[:2], 4, target=[2, 0], **kwargs)
    torch.testing.assert_close(result.max, expected, rtol=0, atol=0)


def test_max_equals_captum_with_per_example_forward_args(
    tiny_cnn: nn.Module, tiny_inputs: Tensor
) -> None:
    def scaled(x: Tensor, scale: Tensor) -> Tensor:
        return tiny_cnn(x) * scale[:, None]

    explain = Saliency(scaled).attribute
    args = (torch.tensor([1.0, -2.0, 0.5]),)
    expected = _captum(
        explain, tiny_inputs, 2, target=1, additional_forward_args=args, n_perturb_samples=3
    )
    result = _ours(explain, tiny_inputs, 2, 3, target=1, additional_forward_args=args)
    torch.testing.assert_close(result.max, expected, rtol=0, atol=0)


def test_max_equals_captum_for_the_infinity_norm(tiny_cnn: nn.Module, tiny_inputs: Tensor) -> None:
    explain = Saliency(tiny_cnn).attribute
    kwargs = {"n_perturb_samples": 3, "norm_ord": math.inf}
    expected = _captum(explain, tiny_inputs, 5, target=0, **kwargs)
    result = _ours(explain, tiny_inputs, 5, target=0, **kwargs)
    torch.testing.assert_close(result.max, expected, rtol=0, atol=0)
    fro = _ours(explain, tiny_inputs, 5, 3, target=0)
    assert not torch.allclose(result.max, fro.max)


def _noise_by_sample(count: int, samples: int, shape: tuple[int, ...], chunk: int) -> Tensor:
    """The noise of sample j of example i at [i, j], drawn as Captum draws it."""
    groups, done = [], 0
    while done < samples:
        size = min(chunk, samples - done)
        noise = torch.FloatTensor(count * size, *shape).uniform_(-0.02, 0.02)  # type: ignore[call-overload]
        groups.append(noise.view(count, size, -1))
        done += size
    return torch.cat(groups, dim=1)


@pytest.mark.parametrize(("max_examples_per_batch", "chunk"), [(None, 5), (4, 2), (2, 1)])
def test_analytic_explanation_by_hand(max_examples_per_batch: int | None, chunk: int) -> None:
    # E(x) = 2 x, so s_ij = ||2 u_ij|| / ||2 x_i|| = ||u_ij|| / ||x_i||.
    generator = torch.Generator().manual_seed(0)
    inputs = torch.rand(2, 1, 3, 3, generator=generator, dtype=torch.float64) + 0.5
    torch.manual_seed(9)
    noise = _noise_by_sample(2, 5, (1, 3, 3), chunk).double()
    expected = noise.norm(dim=2) / inputs.flatten(1).norm(dim=1, keepdim=True)
    result = _ours(lambda x: 2 * x, inputs, 9, 5, 0.02, "fro", max_examples_per_batch)
    torch.testing.assert_close(result.avg, expected.mean(dim=1))
    torch.testing.assert_close(result.max, expected.amax(dim=1))


def test_zero_explanation_norm_is_replaced_by_one() -> None:
    # E(x) = x - x0 is zero at the clean inputs x0, so s_ij = ||u_ij|| / 1.
    inputs = torch.full((2, 1, 2, 2), 3.0, dtype=torch.float64)

    def explain(x: Tensor) -> Tensor:
        return x - inputs.repeat_interleave(len(x) // len(inputs), dim=0)

    torch.manual_seed(4)
    expected = _noise_by_sample(2, 3, (1, 2, 2), 3).double().norm(dim=2)
    result = _ours(explain, inputs, 4, 3)
    torch.testing.assert_close(result.max, expected.amax(dim=1))
    torch.testing.assert_close(result.avg, expected.mean(dim=1))


def test_tuple_form_passes_tuples(tiny_cnn: nn.Module, tiny_inputs: Tensor) -> None:
    seen = []

    def explain(x: Any, target: Any) -> Any:
        seen.append(type(x))
        return Saliency(tiny_cnn).attribute(x, target=target)

    as_tuple = _ours(explain, (tiny_inputs,), 6, 2, target=1)
    assert seen == [tuple, tuple]
    as_tensor = _ours(explain, tiny_inputs, 6, 2, target=1)
    assert seen[2:] == [Tensor, Tensor]
    torch.testing.assert_close(as_tuple.max, as_tensor.max, rtol=0, atol=0)


def test_arguments_reach_the_explanation_repeated_per_sample() -> None:
    calls: list[dict[str, Any]] = []

    def explain(x: Tensor, **kwargs: Any) -> Tensor:
        calls.append(kwargs)
        return x * 2

    inputs = torch.rand(2, 3, 2, 2) + 1
    scale, shared, baselines = torch.tensor([1.0, 2.0]), torch.ones(3), torch.rand(2, 3, 2, 2)
    shared_baseline = torch.rand(2, 2)  # H x W: N rows by chance, yet shared
    _ours(
        explain,
        inputs,
        0,
        3,
        target=[4, 5],
        additional_forward_args=(scale, shared, "s"),
        baselines=(baselines, shared_baseline),
        n_steps=7,
    )
    clean, perturbed = calls
    assert clean["target"] == [4, 5] and clean["additional_forward_args"][0] is scale
    assert perturbed["target"] == [4, 4, 4, 5, 5, 5] and perturbed["n_steps"] == 7
    expanded, same, text = perturbed["additional_forward_args"]
    assert expanded.tolist() == [1.0, 1.0, 1.0, 2.0, 2.0, 2.0] and same is shared and text == "s"
    assert torch.equal(perturbed["baselines"][0], baselines.repeat_interleave(3, dim=0))
    assert perturbed["baselines"][1] is shared_baseline


def test_target_and_args_are_passed_only_when_given() -> None:
    calls: list[dict[str, Any]] = []

    def explain(x: Tensor, **kwargs: Any) -> Tensor:
        calls.append(kwargs)
        assert not torch.is_grad_enabled()  # Captum explains under torch.no_grad()
        return x

    _ours(explain, torch.rand(2, 3), 0, 2)
    assert calls == [{}, {}]
    _ours(explain, torch.rand(2, 3), 0, 2, additional_forward_args=torch.tensor([1.0, 2.0]))
    assert calls[3]["additional_forward_args"][0].tolist() == [1.0, 1.0, 2.0, 2.0]


def test_given_clean_explanations_are_used_and_the_function_sees_perturbed_inputs_only(
    tiny_cnn: nn.Module, tiny_inputs: Tensor
) -> None:
    polycam = PolyCam(tiny_cnn, LAYERS)
    seen: list[int] = []

    def explain(x: Tensor, target: Any) -> Tensor:
        seen.append(len(x))
        return polycam.attribute(x, target, perturbations_per_eval=2)

    target = torch.tensor([1, 0, 2])
    computed = _ours(explain, tiny_inputs, 5, 4, target=target)
    assert seen == [3, 12]  # the clean inputs, then every perturbed one
    clean = polycam.attribute(tiny_inputs, target, perturbations_per_eval=2)
    given = _ours(explain, tiny_inputs, 5, 4, target=target, explanations=clean)
    assert seen[2:] == [12]  # the perturbed inputs only
    torch.testing.assert_close(given.max, computed.max, rtol=0, atol=0)
    torch.testing.assert_close(given.avg, computed.avg, rtol=0, atol=0)


def test_given_explanations_in_tuple_form_match_the_functions() -> None:
    inputs = torch.rand(2, 3) + 1

    def explain(x: Tensor) -> tuple[Tensor, Tensor]:
        return 2 * x, x[:, :1]

    computed = _ours(explain, inputs, 1, 3)
    given = _ours(explain, inputs, 1, 3, explanations=explain(inputs))
    torch.testing.assert_close(given.max, computed.max, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("explanations", "error", "message"),
    [
        (torch.rand(3, 4), ValueError, r"explanations must be one explanation per input \(2\)"),
        ([1.0, 2.0], TypeError, "explanations must be a tensor or a tuple of tensors"),
        (
            torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, math.nan, 1.0, 1.0]]),
            ValueError,
            "explanations hold NaN or Inf values for the clean inputs of example 1",
        ),
        (torch.rand(2, 2, 2), ValueError, r"explanations: shaped \[\(2, 2\)\] per example, but "),
        (torch.rand(2, 3), ValueError, r"shaped \[\(3,\)\] per example, .* gives \[\(4,\)\]"),
    ],
)
def test_given_explanations_are_checked(explanations: Any, error: type, message: str) -> None:
    # Four values per input from the function: the same number, in another shape, is refused.
    with pytest.raises(error, match=message):
        Sensitivity(lambda x: x, n_perturb_samples=2)(torch.rand(2, 4), explanations=explanations)


def test_result_is_frozen_with_named_values() -> None:
    result = _ours(lambda x: x, torch.rand(3, 4) + 1, 0, 2)
    assert result.as_dict().keys() == {"sensitivity_max", "sensitivity_avg"}
    assert result.as_dict()["sensitivity_avg"] is result.avg
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.max = result.avg  # type: ignore[misc]


def test_result_carries_the_settings_that_decide_its_numbers() -> None:
    result = _ours(lambda x: x, torch.rand(3, 4) + 1, 0, 2, 0.1, 1, max_examples_per_batch=3)
    assert result.protocol == {"n_perturb_samples": 2, "perturb_radius": 0.1, "norm_ord": 1}
    default = _ours(lambda x: x, torch.rand(3, 4) + 1, 0)
    assert default.protocol == {"n_perturb_samples": 10, "perturb_radius": 0.02, "norm_ord": "fro"}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_perturb_samples": 0}, ValueError, "n_perturb_samples"),
        ({"n_perturb_samples": True}, ValueError, "n_perturb_samples"),
        ({"n_perturb_samples": 2.0}, ValueError, "n_perturb_samples"),
        ({"perturb_radius": 0}, ValueError, "perturb_radius"),
        ({"perturb_radius": -0.1}, ValueError, "perturb_radius"),
        ({"perturb_radius": math.nan}, ValueError, "perturb_radius"),
        ({"norm_ord": "nuc"}, ValueError, "norm_ord"),
        ({"norm_ord": True}, ValueError, "norm_ord"),
        ({"max_examples_per_batch": 0}, ValueError, "max_examples_per_batch"),
        ({"explanation_func": "saliency"}, TypeError, "explanation_func"),
    ],
)
def test_constructor_errors(kwargs: dict[str, Any], error: type, match: str) -> None:
    arguments = {"explanation_func": lambda x: x, **kwargs}
    with pytest.raises(error, match=match):
        Sensitivity(**arguments)


@pytest.mark.parametrize(
    ("inputs", "error", "match"),
    [
        (torch.ones(2, 3, dtype=torch.long), TypeError, "float"),
        ([[1.0, 2.0]], TypeError, "inputs must be a torch.Tensor"),
        ((torch.ones(2, 3), torch.ones(2, 3)), TypeError, "1-tuple"),
        (torch.tensor(1.0), ValueError, "batch"),
        (torch.ones(0, 3), ValueError, "batch"),
        (torch.tensor([[1.0, math.nan]]), ValueError, "NaN"),
    ],
)
def test_input_errors(inputs: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        Sensitivity(lambda x: x)(inputs)


def test_explanation_errors() -> None:
    inputs = torch.rand(2, 3)
    with pytest.raises(ValueError, match="one explanation per input"):
        Sensitivity(lambda x: x[:1])(inputs)
    with pytest.raises(TypeError, match="explanation_func must return a tensor"):
        Sensitivity(lambda x: x.tolist())(inputs)
    with pytest.raises(ValueError, match="values per perturbed input"):
        Sensitivity(lambda x: x if len(x) == 2 else x[:, :2])(inputs)


def _nan_row(batch: int, row: int, value: float = math.nan) -> Any:
    """An explanation that is the input itself, but ``value`` in row ``row`` of the calls on
    ``batch`` inputs."""

    def explain(inputs: Tensor) -> Tensor:
        explained = inputs.clone()
        if len(inputs) == batch:
            explained[row] = value
        return explained

    return explain


@pytest.mark.parametrize(
    ("explain", "message"),
    [
        # Two examples: the clean call explains 2 inputs, the perturbed one 2 x 3 samples, the
        # samples of an example consecutive (rows 3 to 5 are example 1's).
        (_nan_row(2, 1), "clean inputs of example 1"),
        (_nan_row(2, 0, math.inf), "clean inputs of example 0"),
        (_nan_row(6, 4), "perturbed inputs of example 1"),
        (_nan_row(6, 2, -math.inf), "perturbed inputs of example 0"),
    ],
)
def test_non_finite_explanations_are_refused(explain: Any, message: str) -> None:
    # They used to give NaN sensitivities without a word.
    with pytest.raises(ValueError) as raised:
        Sensitivity(explain, n_perturb_samples=3)(torch.rand(2, 4))
    assert str(raised.value) == (
        f"explanation_func returned NaN or Inf values for the {message}; Sensitivity needs "
        "finite explanations"
    )


# --- Signals and volumes ---------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 7), (2, 3, 4, 5)], ids=["signal", "volume"])
@pytest.mark.parametrize(("max_examples_per_batch", "chunk"), [(None, 4), (4, 2)])
def test_analytic_explanation_of_signals_and_volumes(
    shape: tuple[int, ...], max_examples_per_batch: int | None, chunk: int
) -> None:
    # E(x) = 2 x, so s_ij = ||2 u_ij|| / ||2 x_i|| = ||u_ij|| / ||x_i||: the noise has the
    # inputs' shape, N x C x L or N x C x D x H x W.
    generator = torch.Generator().manual_seed(2)
    inputs = torch.rand(2, *shape, generator=generator, dtype=torch.float64) + 0.5
    torch.manual_seed(6)
    noise = _noise_by_sample(2, 4, shape, chunk).double()
    expected = noise.norm(dim=2) / inputs.flatten(1).norm(dim=1, keepdim=True)
    seen = []

    def explain(x: Tensor) -> Tensor:
        seen.append(tuple(x.shape[1:]))
        return 2 * x

    result = _ours(explain, inputs, 6, 4, 0.02, "fro", max_examples_per_batch)
    torch.testing.assert_close(result.avg, expected.mean(dim=1))
    torch.testing.assert_close(result.max, expected.amax(dim=1))
    assert set(seen) == {shape}


@pytest.mark.parametrize("dims", [1, 3])
def test_max_equals_captum_for_poly_cam_on_signals_and_volumes(dims: int) -> None:
    model = TinyNet(dims)
    inputs = torch.rand(2, 2, *[8] * dims, generator=torch.Generator().manual_seed(dims))
    explain = functools.partial(
        PolyCam(model, ["block1", "block2"]).attribute, perturbations_per_eval=4
    )
    expected = _captum(explain, inputs, 1, target=[1, 2], n_perturb_samples=3)
    result = _ours(explain, inputs, 1, n_perturb_samples=3, target=[1, 2])
    torch.testing.assert_close(result.max, expected, rtol=0, atol=0)
    assert bool((result.max > 0).all()) and bool((result.avg <= result.max).all())


def test_max_equals_captum_for_integrated_gradients_on_volumes() -> None:
    # Per-example volume baselines (5-D, N rows) follow their example into the samples.
    model = TinyNet(3)
    inputs = torch.rand(3, 2, 4, 6, 6, generator=torch.Generator().manual_seed(3))
    explain = IntegratedGradients(model).attribute
    kwargs = {"target": torch.tensor([0, 1, 2]), "baselines": torch.rand(3, 2, 4, 6, 6)}
    expected = _captum(explain, inputs, 7, n_perturb_samples=3, n_steps=4, **kwargs)
    result = _ours(explain, inputs, 7, n_perturb_samples=3, n_steps=4, **kwargs)
    torch.testing.assert_close(result.max, expected, rtol=0, atol=0)
