"""Bad input gets a clear error naming the argument; the model is left as it was."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from captum_polycam import PolyCam
from tests.conftest import BatchSizes, DictOutput, ObjectOutput, hooked_modules

LAYERS = ["block1", "block2", "block3"]


@pytest.mark.parametrize(
    ("inputs", "error", "match"),
    [
        ([[1.0]], TypeError, "inputs must be a torch.Tensor"),
        (torch.rand(3, 16, 16), ValueError, "inputs must be a 4-D float tensor"),
        (torch.ones(1, 3, 16, 16, dtype=torch.long), ValueError, "4-D float"),
        (torch.rand(0, 3, 16, 16), ValueError, "inputs is an empty batch"),
        (torch.full((1, 3, 16, 16), float("nan")), ValueError, "inputs contains NaN or Inf"),
        (torch.full((1, 3, 16, 16), float("inf")), ValueError, "inputs contains NaN or Inf"),
    ],
)
def test_bad_inputs(tiny_cnn: nn.Module, inputs, error, match) -> None:
    with pytest.raises(error, match=match):
        PolyCam(tiny_cnn, LAYERS).attribute(inputs)


@pytest.mark.parametrize(
    ("target", "error", "match"),
    [
        ([0, 1], ValueError, "target: the list has 2 entries for 3 examples"),
        (torch.tensor([0, 1]), ValueError, "one entry per example"),
        (5, ValueError, "target is out of range"),
        ([0, 1, -1], ValueError, "target is out of range"),
        ((0, 1), ValueError, "target must pick one value per example"),
        (1.5, TypeError, "target must be"),
        (torch.tensor([0.0, 1.0, 2.0]), TypeError, "target must hold integers"),
    ],
)
def test_bad_targets(tiny_cnn, tiny_inputs, target, error, match) -> None:
    with pytest.raises(error, match=match):
        PolyCam(tiny_cnn, LAYERS).attribute(tiny_inputs, target=target)


def test_layer_name_not_in_model(tiny_cnn: nn.Module) -> None:
    with pytest.raises(ValueError, match="layers: the model has no module named 'block9'"):
        PolyCam(tiny_cnn, ["block1", "block9"])


def test_layer_never_called(tiny_cnn: nn.Module, tiny_inputs: Tensor) -> None:
    tiny_cnn.unused = nn.ReLU()
    with pytest.raises(ValueError, match="layers: unused is never called"):
        PolyCam(tiny_cnn, ["block1", "unused"]).attribute(tiny_inputs)
    assert hooked_modules(tiny_cnn) == []


def test_layer_output_not_a_map(tiny_cnn: nn.Module, tiny_inputs: Tensor) -> None:
    with pytest.raises(ValueError, match=r"layers: the output of head must be an N x C x h x w"):
        PolyCam(tiny_cnn, ["block1", "head"]).attribute(tiny_inputs)
    assert hooked_modules(tiny_cnn) == []


def test_layers_out_of_order(tiny_cnn: nn.Module, tiny_inputs: Tensor) -> None:
    told = r"layers: must go shallow to deep.*block2 \(6@8x8\) comes after block3 \(8@4x4\)"
    with pytest.raises(ValueError, match=told):
        PolyCam(tiny_cnn, ["block3", "block2"]).attribute(tiny_inputs)


@pytest.mark.parametrize("layers", [[], [3], "block1:x"])
def test_malformed_layers(tiny_cnn: nn.Module, layers) -> None:
    with pytest.raises((TypeError, ValueError), match="layers"):
        PolyCam(tiny_cnn, layers)


def test_names_need_a_module(tiny_cnn: nn.Module) -> None:
    with pytest.raises(TypeError, match="layers: the name 'block1' needs forward_func"):
        PolyCam(lambda x: tiny_cnn(x), ["block1"])
    with pytest.raises(TypeError, match="layers=None"):
        PolyCam(lambda x: tiny_cnn(x))


def test_plain_function_with_modules_works(tiny_cnn, tiny_inputs) -> None:
    modules = [tiny_cnn.block1, tiny_cnn.block2, tiny_cnn.block3]
    by_function = PolyCam(lambda x: tiny_cnn(x), modules).attribute(tiny_inputs)
    torch.testing.assert_close(by_function, PolyCam(tiny_cnn, LAYERS).attribute(tiny_inputs))


def test_unknown_variant(tiny_cnn: nn.Module) -> None:
    with pytest.raises(ValueError, match="variant must be one of"):
        PolyCam(tiny_cnn, LAYERS, "both")  # type: ignore[arg-type]


def test_unknown_score_fn(tiny_cnn: nn.Module) -> None:
    with pytest.raises(ValueError, match="score_fn must be"):
        PolyCam(tiny_cnn, LAYERS, score_fn="probability")


@pytest.mark.parametrize("value", [0, -2, 1.5, True])
def test_non_positive_perturbations_per_eval(tiny_cnn, tiny_inputs, value) -> None:
    with pytest.raises(ValueError, match="perturbations_per_eval must be a positive int"):
        PolyCam(tiny_cnn, LAYERS).attribute(tiny_inputs, perturbations_per_eval=value)


def test_hooks_removed_when_the_forward_fails(tiny_cnn, tiny_inputs) -> None:
    polycam = PolyCam(tiny_cnn, LAYERS)
    tiny_cnn.head.forward = lambda x: (_ for _ in ()).throw(RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        polycam.attribute(tiny_inputs)
    assert hooked_modules(tiny_cnn) == []


def test_hooks_removed_when_discovery_fails(tiny_inputs) -> None:
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1)

        def forward(self, x: Tensor) -> Tensor:
            raise RuntimeError(f"boom {self.conv(x).shape}")

    model = Broken().eval()
    with pytest.raises(RuntimeError, match="boom"):
        PolyCam(model).attribute(tiny_inputs)
    assert hooked_modules(model) == []


def test_model_state_is_left_as_it_was(tiny_cnn, tiny_inputs) -> None:
    tiny_cnn.block1[0].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in tiny_cnn.state_dict().items()}
    grads = {k: p.requires_grad for k, p in tiny_cnn.named_parameters()}
    PolyCam(tiny_cnn).attribute(tiny_inputs)
    PolyCam(tiny_cnn, LAYERS).attribute(tiny_inputs)
    assert not tiny_cnn.training
    assert all(torch.equal(before[k], v) for k, v in tiny_cnn.state_dict().items())
    assert {k: p.requires_grad for k, p in tiny_cnn.named_parameters()} == grads
    assert all(p.grad is None for p in tiny_cnn.parameters())
    assert hooked_modules(tiny_cnn) == []


def test_training_mode_warns_and_is_kept(tiny_cnn, tiny_inputs) -> None:
    tiny_cnn.train()
    for explain in (PolyCam(tiny_cnn, LAYERS).attribute, PolyCam(tiny_cnn, LAYERS).decompose):
        with pytest.warns(UserWarning, match="training mode") as record:
            explain(tiny_inputs)
        assert record[0].filename == __file__  # the warning points at the caller's line
    assert tiny_cnn.training


def test_outputs_with_logits_are_scored_and_others_are_told_to_pass_score_fn(
    tiny_cnn, dict_output_cnn, tiny_inputs
) -> None:
    layers = [f"net.{name}" for name in LAYERS]
    expected = PolyCam(tiny_cnn, LAYERS).attribute(tiny_inputs)
    for model in (dict_output_cnn, ObjectOutput(tiny_cnn)):  # a dict, a ModelOutput-like
        torch.testing.assert_close(PolyCam(model, layers).attribute(tiny_inputs), expected)
    scores = DictOutput(tiny_cnn, key="scores")
    with pytest.raises(TypeError, match=r"returned a dict, neither .* nor an output with logits"):
        PolyCam(scores, layers).attribute(tiny_inputs)
    assert hooked_modules(scores) == []
    by_key = PolyCam(scores, layers, score_fn=lambda out: out["scores"].softmax(dim=-1))
    torch.testing.assert_close(by_key.attribute(tiny_inputs), expected)


def test_nan_in_the_clean_output_stops(tiny_cnn, tiny_inputs) -> None:
    tiny_cnn.head.bias.data[2] = float("nan")
    with pytest.raises(ValueError, match="clean inputs contain NaN or Inf"):
        PolyCam(tiny_cnn, LAYERS).attribute(tiny_inputs)


def test_nan_on_masked_inputs_stops(tiny_cnn, tiny_inputs) -> None:
    forward = tiny_cnn.forward

    def unstable(x: Tensor) -> Tensor:  # finite on the clean batch, NaN on masked inputs
        logits = forward(x)
        return logits if len(x) == 3 else logits / 0 * 0

    tiny_cnn.forward = unstable  # type: ignore[method-assign]
    with pytest.raises(
        ValueError,
        match=r"NaN or Inf on some of the \d+ perturbed inputs "
        r"\(Poly-CAM forward passes\)",
    ):
        PolyCam(tiny_cnn, LAYERS, "plus").attribute(tiny_inputs, perturbations_per_eval=2)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_inputs_of_another_dtype_than_the_model(tiny_cnn, tiny_inputs, dtype) -> None:
    with pytest.raises(
        TypeError,
        match=rf"inputs are {dtype} but the model's parameters are "
        r"torch.float32: convert",
    ):
        PolyCam(tiny_cnn, LAYERS).attribute(tiny_inputs.to(dtype))
    assert hooked_modules(tiny_cnn) == []


def test_forward_func_must_be_callable() -> None:
    with pytest.raises(TypeError, match="forward_func must be callable; got str"):
        PolyCam("resnet50", LAYERS)  # type: ignore[arg-type]


def test_a_pass_holds_perturbations_per_eval_per_example(tiny_cnn, tiny_inputs) -> None:
    counting = BatchSizes(tiny_cnn.forward)
    tiny_cnn.forward = counting  # type: ignore[method-assign]
    PolyCam(tiny_cnn, LAYERS, "plus").attribute(tiny_inputs, perturbations_per_eval=2)
    sizes = counting.sizes
    assert sizes[0] == 3 and max(sizes[1:]) == 6 and len(set(sizes[1:-1])) == 1
