"""The map normalisers, one per meaning, against values computed by hand."""

from __future__ import annotations

import torch

from captum_polycam.attr import maps
from captum_polycam.normalisation import min_max, min_max_mask, robust_normalise, scale_to_unit


def test_min_max_by_hand_and_a_constant_map_is_zero() -> None:
    values = torch.tensor([[[2.0, 4.0], [6.0, 10.0]], [[3.0, 3.0], [3.0, 3.0]]])
    expected = torch.tensor([[[0.0, 0.25], [0.5, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
    torch.testing.assert_close(min_max(values), expected)


def test_scale_to_unit_by_hand_and_a_zero_map_stays_zero() -> None:
    values = torch.tensor([[[1.0, 2.0], [0.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]])
    expected = torch.tensor([[[0.25, 0.5], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
    torch.testing.assert_close(scale_to_unit(values), expected)


def test_each_meaning_has_one_implementation() -> None:
    assert maps.robust_normalise is robust_normalise
    inputs = torch.zeros(1, 3, 2, 2)
    saliency = torch.tensor([[[[2.0, 4.0], [6.0, 10.0]]]])
    torch.testing.assert_close(min_max_mask(inputs, saliency), min_max(saliency[:, 0]))
