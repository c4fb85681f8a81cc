"""Bad input gets a clear error naming the argument; the model is left as it was."""

from __future__ import annotations

import threading
import time
import warnings

import numpy as np
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
        (torch.rand(3, 16, 16), ValueError, r"inputs are 3-D .* \(one example without its batch"),
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
    with pytest.raises(ValueError, match=r"layers: the output of head must be an N x C x l, N x"):
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


class NormalisedCNN(nn.Module):
    """Two conv, batch-norm, ReLU blocks at 16 and 8 (at a 16 x 16 input), 3 classes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.block1 = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.block2 = nn.Sequential(
            nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.BatchNorm2d(6), nn.ReLU()
        )
        self.head = nn.Linear(6, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.block2(self.block1(x)).mean(dim=(2, 3)))


@pytest.mark.parametrize("layers", [None, ["block1", "block2"]])
def test_a_model_in_training_mode_comes_back_as_it_went_in(tiny_inputs, layers) -> None:
    model = NormalisedCNN().train()
    model.block2[1].eval()  # each module's own flag is given back
    buffers = dict(model.named_buffers())
    before = {name: buffer.clone() for name, buffer in buffers.items()}
    modes = [module.training for module in model.modules()]
    with pytest.warns(UserWarning, match="batch-norm running statistics.*given back") as record:
        result = PolyCam(model, layers).decompose(tiny_inputs)
    assert "comes back as it went in" in str(record[0].message)
    assert result.passes == result.exact_passes > 50  # each one a batch-norm update
    assert set(buffers) == {
        f"block{b}.1.{name}"
        for b in (1, 2)
        for name in ("running_mean", "running_var", "num_batches_tracked")
    }
    for name, buffer in model.named_buffers():
        assert buffer is buffers[name]
        assert torch.equal(buffer, before[name]), name  # bit for bit
    assert [module.training for module in model.modules()] == modes
    assert hooked_modules(model) == []


@pytest.mark.parametrize(
    ("model_dtype", "inputs_dtype"),
    [
        (torch.float32, torch.float16),
        (torch.float32, torch.float64),
        (torch.float64, torch.float32),
    ],
)
def test_another_dtype_is_told_alike_with_discovered_and_given_layers(
    tiny_cnn, tiny_inputs, model_dtype, inputs_dtype
) -> None:
    model = tiny_cnn.to(model_dtype)
    inputs = tiny_inputs.to(inputs_dtype)
    told = (
        f"inputs are {inputs_dtype} but the model's parameters are {model_dtype}: convert "
        f"the inputs with inputs.to({model_dtype}) or the model with model.to({inputs_dtype})"
    )
    for layers in (None, LAYERS):
        with pytest.raises(TypeError) as raised:
            PolyCam(model, layers).attribute(inputs)
        assert str(raised.value) == told
        assert isinstance(raised.value.__cause__, RuntimeError)  # torch's, kept as the cause
        assert hooked_modules(model) == []


@pytest.mark.parametrize("channels", [1, 4])
def test_inputs_of_other_channels_are_told_what_the_model_takes(
    tiny_cnn, tiny_inputs, channels
) -> None:
    inputs = tiny_inputs[:, :1].repeat(1, channels, 1, 1)
    told = (
        f"inputs have {channels} channels but the model's first convolution, block1.0, takes "
        "3: give the inputs 3 channels, in dimension 1 (convert grayscale or RGBA images to RGB)"
    )
    for layers in (None, LAYERS):
        with pytest.raises(ValueError) as raised:
            PolyCam(tiny_cnn, layers).attribute(inputs)
        assert str(raised.value) == told
        cause = raised.value.__cause__
        assert isinstance(cause, RuntimeError) and "channels" in str(cause)
        assert hooked_modules(tiny_cnn) == []


def test_a_failure_the_inputs_do_not_explain_is_raised_as_it_is(tiny_cnn, tiny_inputs) -> None:
    def broken(x: Tensor) -> Tensor:
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    tiny_cnn.head.forward = broken  # type: ignore[method-assign]
    for layers in (None, LAYERS):
        with pytest.raises(RuntimeError, match=r"^mat1 and mat2 shapes cannot be multiplied$"):
            PolyCam(tiny_cnn, layers).attribute(tiny_inputs)


class Rendezvous(nn.Module):
    """A model whose first forward pass in each thread waits for the other threads' first, so
    that every call is inside the model (hooks registered) at the same time."""

    def __init__(self, net: nn.Module, threads: int) -> None:
        super().__init__()
        self.net = net
        self.barrier = threading.Barrier(threads, timeout=30)
        self.local = threading.local()

    def forward(self, x: Tensor) -> Tensor:
        if not getattr(self.local, "met", False):
            self.local.met = True
            self.barrier.wait()
        return self.net(x)


@pytest.mark.parametrize("layers", [None, [f"net.{name}" for name in LAYERS]])
def test_threads_sharing_one_polycam_get_their_own_maps(tiny_cnn, layers) -> None:
    generator = torch.Generator().manual_seed(2)
    batches = [torch.randn(2, 3, 16, 16, generator=generator) for _ in range(4)]
    model = Rendezvous(tiny_cnn, len(batches)).eval()
    polycam = PolyCam(model, layers)
    expected = [PolyCam(tiny_cnn).attribute(x, perturbations_per_eval=4) for x in batches]
    results: dict[int, Tensor] = {}
    errors: list[BaseException] = []

    def explain(index: int) -> None:
        try:
            results[index] = polycam.attribute(batches[index], perturbations_per_eval=4)
        except BaseException as error:  # reported below, with the thread's traceback
            errors.append(error)

    threads = [threading.Thread(target=explain, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for index, maps in enumerate(expected):
        torch.testing.assert_close(results[index], maps, rtol=0, atol=1e-6)
    assert hooked_modules(model) == []


def test_a_second_thread_is_refused_a_model_in_training_mode(tiny_cnn, tiny_inputs) -> None:
    model = Rendezvous(tiny_cnn, 2).train()
    errors: list[BaseException] = []

    def explain() -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # training mode, said in another test
                PolyCam(model, [f"net.{name}" for name in LAYERS]).attribute(tiny_inputs)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=explain) for _ in range(2)]
    for thread in threads:
        thread.start()
    # One thread waits inside the model for the other's pass, which the refusal never makes.
    deadline = time.monotonic() + 30
    while not errors and time.monotonic() < deadline:
        time.sleep(0.01)
    model.barrier.abort()  # let the waiting one go, its rendezvous missed
    for thread in threads:
        thread.join()
    refused = [e for e in errors if isinstance(e, RuntimeError) and "training mode" in str(e)]
    assert len(refused) == 1
    assert str(refused[0]).startswith(
        "the model (Rendezvous) is in training mode and another thread is running it"
    )
    assert model.training


def test_an_all_zero_map_says_why_and_what_to_try(tiny_cnn, tiny_inputs) -> None:
    # Logits of -10 or less whatever the input: every PCAM+ weight, a logit, is negative.
    with torch.no_grad():
        tiny_cnn.head.weight.zero_()
        tiny_cnn.head.bias.copy_(torch.tensor([-10.0, -11.0, -12.0, -13.0, -14.0]))
    polycam = PolyCam(tiny_cnn, LAYERS, "plus", score_fn="logit")
    with pytest.warns(UserWarning) as record:
        maps = polycam.attribute(tiny_inputs, target=0)
    assert float(maps.abs().max()) == 0.0
    assert len(record) == 1 and record[0].filename == __file__
    assert str(record[0].message) == (
        "Poly-CAM's map is all zero for example(s) [0, 1, 2]: "
        + "; ".join(
            f"at layer {name}, no channel raises the score (no weight is positive)"
            for name in LAYERS
        )
        + ". Try score_fn='softmax', variant='minus' or 'plusminus', or other layers "
        "(post-activation outputs, see describe_layers)"
    )
    # The same model scored by probabilities gives a map, and no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        softmax = PolyCam(tiny_cnn, LAYERS, "plus").attribute(tiny_inputs, target=0)
    assert bool((softmax.flatten(1).amax(dim=1) > 0).all())


def test_numpy_integers_are_taken_wherever_ints_are(tiny_cnn, tiny_inputs) -> None:
    polycam = PolyCam(tiny_cnn, LAYERS, "plus")
    expected = polycam.attribute(tiny_inputs, target=1, perturbations_per_eval=2)
    for target in (np.int64(1), np.int32(1), np.array(1), [np.int64(1)] * 3, [1, np.int8(1), 1]):
        got = polycam.attribute(tiny_inputs, target=target, perturbations_per_eval=np.int64(2))
        assert torch.equal(got, expected), target
    labels = np.array([2, 0, 1])
    by_label = polycam.attribute(tiny_inputs, target=[labels[i] for i in range(3)])
    assert torch.equal(by_label, polycam.attribute(tiny_inputs, target=[2, 0, 1]))
