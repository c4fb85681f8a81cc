"""Captum's argument conventions, written once in captum_polycam._conventions."""

from __future__ import annotations

import math
import re
import threading

import numpy as np
import pytest
import torch
from torch import nn

from captum_polycam._conventions import (
    as_int,
    buffers_kept,
    check_inputs,
    check_int,
    evaluation_mode,
    input_errors_explained,
    is_per_example,
    module_of,
    seeded,
    unpack_single,
)


@pytest.mark.parametrize(
    ("inputs", "spatial_dims", "error", "match"),
    [
        ([[1.0]], (2,), TypeError, "inputs must be a torch.Tensor; got list"),
        (torch.rand(3, 4, 4), (2,), ValueError, "inputs must be a 4-D float tensor"),
        (torch.ones(1, 3, 4, 4, dtype=torch.long), (2,), ValueError, "4-D float tensor"),
        (
            torch.rand(3, 4),
            (1, 2, 3),
            ValueError,
            r"inputs must be a 3-D float tensor N x C x L, 4-D float tensor N x C x H x W or "
            r"5-D float tensor N x C x D x H x W; got 2-D",
        ),
        (torch.ones(2, 3, dtype=torch.long), (), TypeError, "inputs must be a float tensor"),
        (torch.tensor(1.0), (), ValueError, "inputs must have a batch dimension"),
        (torch.rand(0, 3, 4, 4), (2,), ValueError, "inputs is an empty batch"),
        (torch.tensor([[1.0, math.inf]]), (), ValueError, "inputs contains NaN or Inf"),
    ],
)
def test_check_inputs_names_what_is_wrong(
    inputs: object, spatial_dims: tuple[int, ...], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        check_inputs(inputs, spatial_dims=spatial_dims)


def test_check_inputs_returns_good_inputs_as_they_are() -> None:
    images = torch.rand(2, 3, 4, 4)
    assert check_inputs(images) is images
    assert check_inputs(torch.rand(2, 5), spatial_dims=()).shape == (2, 5)
    for volumes in (torch.rand(2, 1, 9), torch.rand(2, 1, 3, 4, 5)):
        assert check_inputs(volumes, spatial_dims=(1, 2, 3)) is volumes


def test_unpack_single_takes_a_tensor_or_a_one_tuple() -> None:
    x = torch.rand(1, 3, 4, 4)
    assert unpack_single(x, "inputs") == (x, False)
    assert unpack_single((x,), "inputs") == (x, True)
    with pytest.raises(TypeError, match="attributions must be a tensor or a 1-tuple"):
        unpack_single((x, x), "attributions")


def test_check_int_by_kind() -> None:
    check_int("n", 1)
    check_int("n", 0, 0)
    check_int("n", -5, None)
    check_int("n", None, none=True)
    for value, least, message in [
        (0, 1, "n must be a positive int; got 0"),
        (-1, 0, "n must be a non-negative int; got -1"),
        (True, 1, "n must be a positive int; got True"),
        (1.5, None, "n must be an int; got 1.5"),
    ]:
        with pytest.raises(ValueError, match=message):
            check_int("n", value, least)


def test_check_int_takes_numpy_integers_and_gives_back_a_plain_int() -> None:
    for value in (np.int64(3), np.int32(3), np.uint8(3), np.array(3)):
        checked = check_int("n", value)
        assert checked == 3 and type(checked) is int
    assert check_int("n", 7) == 7 and check_int("n", None, none=True) is None
    for value, message in [
        (np.int64(0), "n must be a positive int; got np.int64(0)"),
        (np.True_, "n must be a positive int; got np.True_"),
        (np.float64(2.0), "n must be a positive int; got np.float64(2.0)"),
        (np.array([2]), "n must be a positive int; got array([2])"),
        (torch.tensor(2), "n must be a positive int; got tensor(2)"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            check_int("n", value)


def test_as_int_takes_integer_scalars_only() -> None:
    assert [as_int(v) for v in (4, np.int64(4), np.array(4), np.uint16(4))] == [4, 4, 4, 4]
    for value in (True, np.True_, 4.0, np.float32(4), np.array([4]), torch.tensor(4), "4"):
        assert as_int(value) is None


class Normalised(nn.Module):
    """A batch-norm model with a buffer that the forward pass replaces instead of updating."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.norm = nn.BatchNorm2d(2)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls = self.calls + 1  # a new tensor, not an update in place
        return self.norm(self.conv(x))


def test_buffers_kept_gives_back_every_buffer_in_training_mode() -> None:
    torch.manual_seed(0)
    model = Normalised().train()
    originals = dict(model.named_buffers())
    before = {name: buffer.clone() for name, buffer in originals.items()}
    with buffers_kept(model):
        with buffers_kept(model):  # nested in one thread: copied once
            model(torch.rand(4, 3, 5, 5))
        model(torch.rand(4, 3, 5, 5))
        assert int(model.norm.num_batches_tracked) == 2 and float(model.calls) == 2
    after = dict(model.named_buffers())
    assert set(after) == {
        "calls",
        "norm.running_mean",
        "norm.running_var",
        "norm.num_batches_tracked",
    }
    for name, buffer in after.items():
        assert buffer is originals[name]  # the same tensors, with their old values
        assert torch.equal(buffer, before[name]), name
    assert model.training and model.norm.training


def test_buffers_kept_refuses_a_second_thread_in_training_mode() -> None:
    model = Normalised().train()
    errors: list[BaseException] = []

    def other_thread() -> None:
        try:
            with buffers_kept(model):
                pass
        except RuntimeError as error:
            errors.append(error)

    with buffers_kept(model):
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert len(errors) == 1
    assert "the model (Normalised) is in training mode and another thread" in str(errors[0])
    assert "copy.deepcopy(model)" in str(errors[0])
    with buffers_kept(model.eval()):  # evaluation mode: nothing kept, nothing refused
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert len(errors) == 1


def test_input_errors_explained_names_dtype_and_channels_and_keeps_the_cause() -> None:
    model = nn.Sequential(nn.Identity(), nn.Conv2d(3, 2, 3))
    for inputs, error, message in [
        (torch.rand(1, 3, 8, 8).double(), TypeError, "inputs are torch.float64 but the model's"),
        (
            torch.rand(1, 4, 8, 8),
            ValueError,
            r"inputs have 4 channels but the model's first convolution, 1, takes 3: give the "
            r"inputs 3 channels, in dimension 1 \(convert grayscale or RGBA images to RGB\)",
        ),
    ]:
        with pytest.raises(error, match=message) as raised, input_errors_explained(model, inputs):
            model(inputs)
        assert isinstance(raised.value.__cause__, RuntimeError)  # torch's own error
    # A failure the inputs do not explain is raised as it is.
    inputs = torch.rand(1, 3, 8, 8)
    with pytest.raises(RuntimeError, match=r"^boom$"), input_errors_explained(model, inputs):
        raise RuntimeError("boom")


def test_is_per_example_follows_captums_rule() -> None:
    assert is_per_example(torch.zeros(3, 2), 3)
    assert not is_per_example(torch.zeros(2, 3), 3)
    assert not is_per_example(torch.tensor(3.0), 3)
    assert not is_per_example([1, 2, 3], 3)


def test_module_of_finds_the_module_behind_a_forward_function() -> None:
    model = nn.Linear(2, 2)
    assert module_of(model) is model
    assert module_of(model.forward) is model
    assert module_of(lambda x: x) is None


def test_evaluation_mode_gives_back_each_modules_flag() -> None:
    model = nn.Sequential(nn.Dropout(), nn.BatchNorm1d(2))
    model[1].eval()
    with evaluation_mode(model):
        assert not any(module.training for module in model.modules())
    assert [module.training for module in model.modules()] == [True, True, False]


def test_seeded_is_reproducible_and_leaves_the_callers_stream() -> None:
    torch.manual_seed(7)
    expected_next = torch.rand(3)
    torch.manual_seed(7)
    with seeded(0, torch.device("cpu")):
        first = torch.rand(3)
    with seeded(0, torch.device("cpu")):
        second = torch.rand(3)
    assert torch.equal(first, second)
    assert torch.equal(torch.rand(3), expected_next)
