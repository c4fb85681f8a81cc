"""Captum's argument conventions, written once in captum_polycam._conventions."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from captum_polycam._conventions import (
    check_inputs,
    check_int,
    evaluation_mode,
    is_per_example,
    module_of,
    seeded,
    unpack_single,
)


@pytest.mark.parametrize(
    ("inputs", "images", "error", "match"),
    [
        ([[1.0]], True, TypeError, "inputs must be a torch.Tensor; got list"),
        (torch.rand(3, 4, 4), True, ValueError, "inputs must be a 4-D float tensor"),
        (torch.ones(1, 3, 4, 4, dtype=torch.long), True, ValueError, "4-D float tensor"),
        (torch.ones(2, 3, dtype=torch.long), False, TypeError, "inputs must be a float tensor"),
        (torch.tensor(1.0), False, ValueError, "inputs must have a batch dimension"),
        (torch.rand(0, 3, 4, 4), True, ValueError, "inputs is an empty batch"),
        (torch.tensor([[1.0, math.inf]]), False, ValueError, "inputs contains NaN or Inf"),
    ],
)
def test_check_inputs_names_what_is_wrong(
    inputs: object, images: bool, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        check_inputs(inputs, images=images)


def test_check_inputs_returns_good_inputs_as_they_are() -> None:
    images = torch.rand(2, 3, 4, 4)
    assert check_inputs(images) is images
    assert check_inputs(torch.rand(2, 5), images=False).shape == (2, 5)


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
