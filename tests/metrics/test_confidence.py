"""Average drop and increase in confidence, checked on hand-computed values."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from captum_polycam.metrics.confidence import (
    AverageDrop,
    ConfidenceChange,
    IncreaseInConfidence,
)
from captum_polycam.normalisation import min_max_mask
from tests.conftest import BatchSizes, SumModel
from tests.metrics.nd_models import TotalModel


def sigmoid(value: float) -> float:
    return 1 / (1 + math.exp(-value))


def row(*values: float) -> Tensor:
    """A 1 x 1 x 1 x W float64 tensor."""
    return torch.tensor(values, dtype=torch.float64).view(1, 1, 1, -1)


def test_drop_by_hand() -> None:
    # m = [1, 3] -> M = (m - 1) / (3 - 1) = [0, 1], so O = sigmoid(2) and Y = sigmoid(3).
    # The precedence bug m - min / (max - min) = [0.5, 2.5] would give O = sigmoid(5.5) > Y.
    result = ConfidenceChange(SumModel())(row(1.0, 2.0), row(1.0, 3.0))
    y, o = sigmoid(3.0), sigmoid(2.0)
    torch.testing.assert_close(result.clean, torch.tensor([y], dtype=torch.float64))
    torch.testing.assert_close(result.masked, torch.tensor([o], dtype=torch.float64))
    torch.testing.assert_close(result.drop, torch.tensor([100 * (y - o) / y], dtype=torch.float64))
    assert result.increase.tolist() == [False]


def test_increase_by_hand() -> None:
    # Y = sigmoid(-1 + 2) for the top-1 class 0; M = [0, 1] keeps the 2: O = sigmoid(2) > Y.
    result = ConfidenceChange(SumModel())(row(-1.0, 2.0), row(0.0, 5.0))
    torch.testing.assert_close(result.clean, torch.tensor([sigmoid(1.0)], dtype=torch.float64))
    torch.testing.assert_close(result.masked, torch.tensor([sigmoid(2.0)], dtype=torch.float64))
    assert result.drop.tolist() == [0.0] and result.increase.tolist() == [True]
    assert result.as_dict()["increase_in_confidence"].tolist() == [100.0]


@pytest.mark.parametrize("double_output", [False, True])
def test_unchanged_score_is_neither_a_drop_nor_an_increase(double_output: bool) -> None:
    # M = [0, 1] hides only a zero pixel: O = Y exactly, even when the model answers float32
    # inputs in float64 (the masked scores are kept in the inputs' dtype).
    model = SumModel()
    forward = (lambda x: model(x.double())) if double_output else model
    result = ConfidenceChange(forward)(row(0.0, 0.1).float(), row(-1.0, 4.0).float())
    torch.testing.assert_close(result.masked, result.clean, rtol=0, atol=0)
    assert result.drop.tolist() == [0.0] and result.increase.tolist() == [False]


def test_explicit_target_by_hand() -> None:
    # Class 1 scores sigmoid(-sum(x)): Y = sigmoid(-1), O = sigmoid(-2).
    result = ConfidenceChange(SumModel())(row(-1.0, 2.0), row(0.0, 5.0), target=1)
    y, o = sigmoid(-1.0), sigmoid(-2.0)
    torch.testing.assert_close(result.drop, torch.tensor([100 * (y - o) / y], dtype=torch.float64))
    assert result.increase.tolist() == [False]


def test_min_max_mask_by_hand() -> None:
    inputs = torch.zeros(2, 1, 1, 3)
    maps = torch.tensor([[2.0, 4.0, 6.0], [-1.0, -3.0, 1.0]]).view(2, 1, 1, 3)
    expected = torch.tensor([[0.0, 0.5, 1.0], [0.5, 0.0, 1.0]]).view(2, 1, 3)
    torch.testing.assert_close(min_max_mask(inputs, maps), expected)


def test_constant_map_masks_everything() -> None:
    # M = 0: the masked input is black, O = sigmoid(0) = 1/2.
    assert min_max_mask(torch.zeros(1, 1, 1, 2), torch.full((1, 1, 1, 2), 7.0)).tolist() == [
        [[0.0, 0.0]]
    ]
    result = ConfidenceChange(SumModel())(row(1.0, 2.0), torch.full((1, 1, 1, 2), 7.0))
    y = sigmoid(3.0)
    torch.testing.assert_close(result.masked, torch.tensor([0.5], dtype=torch.float64))
    torch.testing.assert_close(
        result.drop, torch.tensor([100 * (y - 0.5) / y], dtype=torch.float64)
    )


def test_low_resolution_map_is_upsampled_bilinearly() -> None:
    # 2 x 2 -> 4 x 4 (align_corners=False) samples the map at -0.25, 0.25, 0.75, 1.25, clamped:
    # [[0, 0], [0, 4]] becomes 4 * w_r * w_c with w = [0, 1/4, 3/4, 1], so M = w_r * w_c.
    inputs = (torch.arange(16, dtype=torch.float64) + 1).view(1, 1, 4, 4) / 40
    cam = torch.tensor([[0.0, 0.0], [0.0, 4.0]], dtype=torch.float64).view(1, 1, 2, 2)
    weights = torch.tensor([0.0, 0.25, 0.75, 1.0], dtype=torch.float64)
    masked_sum = float((inputs[0, 0] * weights[:, None] * weights[None, :]).sum())
    result = ConfidenceChange(SumModel())(inputs, cam)
    torch.testing.assert_close(result.clean, torch.tensor([sigmoid(3.4)], dtype=torch.float64))
    torch.testing.assert_close(
        result.masked, torch.tensor([sigmoid(masked_sum)], dtype=torch.float64)
    )


@pytest.mark.parametrize(
    ("channel_reduction", "masked_sum"),
    [("sum", 1.0 + 0.5), ("abs_sum", 2.0 - 1.0)],
)
def test_pixel_attributions_are_reduced_over_channels(
    channel_reduction: Any, masked_sum: float
) -> None:
    # Channels [1, 2] and [0.5, -1] (sum 2.5); attributions sum to [2, -1] (M = [1, 0]) and
    # their absolute values to [2, 3] (M = [0, 1]); the mask multiplies both channels.
    inputs = torch.tensor([[[[1.0, 2.0]], [[0.5, -1.0]]]], dtype=torch.float64)
    attributions = torch.tensor([[[[1.0, -2.0]], [[1.0, 1.0]]]], dtype=torch.float64)
    metric = ConfidenceChange(SumModel(), channel_reduction=channel_reduction)
    result = metric(inputs, attributions)
    torch.testing.assert_close(result.clean, torch.tensor([sigmoid(2.5)], dtype=torch.float64))
    torch.testing.assert_close(
        result.masked, torch.tensor([sigmoid(masked_sum)], dtype=torch.float64)
    )


def test_batch_equals_single_examples(tiny_cnn: nn.Module, tiny_inputs: Tensor) -> None:
    maps = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    metric = ConfidenceChange(tiny_cnn, perturbations_per_eval=2)
    batch = metric(tiny_inputs, maps)
    singles = [metric(tiny_inputs[i : i + 1], maps[i : i + 1]) for i in range(3)]
    for field in ("clean", "masked", "drop", "increase"):
        joined = torch.cat([getattr(single, field) for single in singles])
        torch.testing.assert_close(getattr(batch, field), joined)
    assert bool((batch.clean != batch.masked).all())


def test_per_example_forward_args_follow_their_example() -> None:
    # Example 1 is scaled by -1, so its top-1 is class 1: Y = sigmoid(3), O = sigmoid(2).
    inputs = torch.cat([row(1.0, 2.0), row(1.0, 2.0)])
    maps = torch.cat([row(1.0, 3.0), row(1.0, 3.0)])
    scale = torch.tensor([2.0, -1.0], dtype=torch.float64)
    result = ConfidenceChange(SumModel(), perturbations_per_eval=1)(
        inputs, maps, additional_forward_args=scale
    )
    expected = torch.tensor([sigmoid(6.0), sigmoid(3.0)], dtype=torch.float64)
    torch.testing.assert_close(result.clean, expected)
    expected = torch.tensor([sigmoid(4.0), sigmoid(2.0)], dtype=torch.float64)
    torch.testing.assert_close(result.masked, expected)


def test_single_metrics_and_as_dict() -> None:
    inputs = torch.cat([row(1.0, 2.0), row(-1.0, 2.0)])
    maps = torch.cat([row(1.0, 3.0), row(0.0, 5.0)])
    result = ConfidenceChange(SumModel())(inputs, maps)
    drop = AverageDrop(SumModel())(inputs, maps)
    increase = IncreaseInConfidence(SumModel())(inputs, maps)
    y, o = sigmoid(3.0), sigmoid(2.0)
    expected_drop = torch.tensor([100 * (y - o) / y, 0.0], dtype=torch.float64)
    torch.testing.assert_close(drop, expected_drop)
    torch.testing.assert_close(increase, torch.tensor([0.0, 100.0], dtype=torch.float64))
    values = result.as_dict()
    assert values.keys() == {"average_drop", "increase_in_confidence"}
    torch.testing.assert_close(values["average_drop"], drop)
    torch.testing.assert_close(values["increase_in_confidence"], increase)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.drop = drop  # type: ignore[misc]


def test_tuple_forms() -> None:
    result = ConfidenceChange(SumModel())((row(1.0, 2.0),), (row(1.0, 3.0),))
    y, o = sigmoid(3.0), sigmoid(2.0)
    torch.testing.assert_close(result.drop, torch.tensor([100 * (y - o) / y], dtype=torch.float64))


def test_logit_scores() -> None:
    # Y = 3, O = 2: a drop of 1/3. With Y = -1 and O = -3 the relative drop is undefined.
    inputs = torch.cat([row(1.0, 2.0), row(2.0, -3.0)])
    maps = torch.cat([row(1.0, 3.0), row(0.0, 1.0)])
    result = ConfidenceChange(SumModel(), score_fn="logit")(inputs, maps, target=0)
    torch.testing.assert_close(result.masked, torch.tensor([2.0, -3.0], dtype=torch.float64))
    assert result.drop[0].item() == pytest.approx(100 / 3) and math.isnan(result.drop[1].item())


def test_callable_score_fn() -> None:
    result = ConfidenceChange(SumModel(), score_fn=lambda out: out[:, 0] * 2)(
        row(1.0, 2.0), row(1.0, 3.0)
    )
    torch.testing.assert_close(result.clean, torch.tensor([6.0], dtype=torch.float64))
    torch.testing.assert_close(result.masked, torch.tensor([4.0], dtype=torch.float64))


@pytest.mark.parametrize(
    ("inputs", "attributions", "target", "error", "match"),
    [
        (row(1.0, 2.0), torch.ones(2, 1, 1, 2), None, ValueError, "N = 1"),
        (row(1.0, 2.0), row(1.0, math.nan), None, ValueError, "NaN"),
        (row(1.0, 2.0), row(1.0, math.inf), None, ValueError, "Inf"),
        (row(1.0, 2.0), row(1.0, 3.0), 2, ValueError, "out of range"),
        (row(1.0, 2.0), row(1.0, 3.0), [0, 1], ValueError, "target"),
        (torch.ones(1, 2), row(1.0, 3.0), None, ValueError, "4-D"),
        ([1.0, 2.0], row(1.0, 3.0), None, TypeError, "inputs"),
        (row(1.0, 2.0), [1.0, 3.0], None, TypeError, "attributions"),
    ],
)
def test_call_errors(inputs: Any, attributions: Any, target: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        ConfidenceChange(SumModel())(inputs, attributions, target)


def test_constructor_errors() -> None:
    with pytest.raises(TypeError, match="forward_func"):
        ConfidenceChange("model")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="channel_reduction"):
        AverageDrop(SumModel(), channel_reduction="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="score_fn"):
        IncreaseInConfidence(SumModel(), score_fn="probability")
    with pytest.raises(ValueError, match="perturbations_per_eval"):
        ConfidenceChange(SumModel(), perturbations_per_eval=0)


@pytest.mark.filterwarnings("ignore:precision='bf16' runs")
def test_result_carries_the_settings_that_decide_its_numbers() -> None:
    result = ConfidenceChange(SumModel(), "logit", perturbations_per_eval=1, precision="bf16")(
        row(1.0, 2.0), row(1.0, 3.0)
    )
    assert result.protocol == {"score_fn": "logit", "channel_reduction": "sum", "precision": "bf16"}
    assert ConfidenceChange(SumModel())(row(1.0, 2.0), row(1.0, 3.0)).protocol == {
        "score_fn": "softmax",
        "channel_reduction": "sum",
        "precision": "fp32",
    }


# --- Signals and volumes ---------------------------------------------------------------------


def test_signal_by_hand() -> None:
    # M = (m - 0) / 4 = [0, 1/4, 1/2, 1] on both channels: [1, 2, 3, 4] gives
    # 0 + 1/2 + 3/2 + 4 = 6 and [10, 20, 30, 40] gives 60, so O = 66; Y = 110.
    signal = torch.tensor([[[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]]], dtype=torch.float64)
    result = ConfidenceChange(TotalModel(), "logit")(signal, torch.tensor([[[0.0, 1.0, 2.0, 4.0]]]))
    torch.testing.assert_close(result.clean, torch.tensor([110.0], dtype=torch.float64))
    torch.testing.assert_close(result.masked, torch.tensor([66.0], dtype=torch.float64))
    torch.testing.assert_close(result.drop, torch.tensor([40.0], dtype=torch.float64))
    assert result.increase.tolist() == [False]
    # Y = -1 + 2 = 1; the map [2, 4] (N x L, no channel axis) keeps the 2 alone: O = 2 > Y.
    result = ConfidenceChange(TotalModel(), "logit")(
        torch.tensor([[[-1.0, 2.0]]]), torch.tensor([[2.0, 4.0]])
    )
    torch.testing.assert_close(result.masked, torch.tensor([2.0]))
    assert result.increase.tolist() == [True]
    values = result.as_dict()
    assert values["average_drop"].tolist() == [0.0]
    assert values["increase_in_confidence"].tolist() == [100.0]


def test_signal_map_is_upsampled_linearly() -> None:
    # 2 -> 4 samples (align_corners=False) at -0.25, 0.25, 0.75, 1.25, clamped: [0, 4] becomes
    # [0, 1, 3, 4], so M = [0, 1/4, 3/4, 1].
    signal = torch.tensor([[[8.0, 8.0, 8.0, 8.0]]])
    result = AverageDrop(TotalModel(), "logit")(signal, torch.tensor([[[0.0, 4.0]]]))
    # O = 8 * 2 = 16, Y = 32.
    torch.testing.assert_close(result, torch.tensor([50.0]))


def test_volume_by_hand_with_a_trilinear_upsampling() -> None:
    # A 1 x 1 x 2 map of a 2 x 2 x 4 volume: [0, 4] along the columns becomes [0, 1, 3, 4], the
    # same on every row and slice; M = [0, 1/4, 3/4, 1] by column.
    volume = torch.arange(1.0, 33.0, dtype=torch.float64).view(1, 2, 2, 2, 4)
    cam = torch.tensor([0.0, 4.0], dtype=torch.float64).view(1, 1, 1, 1, 2)
    # Voxel (c, d, h, w) holds 1 + 16c + 8d + 4h + w: column w sums to 120 + 8w over both
    # channels, slices and rows, and Y = 120 + 128 + 136 + 144 = 528.
    masked = 0 * 120 + 0.25 * 128 + 0.75 * 136 + 1 * 144
    result = ConfidenceChange(TotalModel(), "logit")(volume, cam)
    torch.testing.assert_close(result.clean, torch.tensor([528.0], dtype=torch.float64))
    torch.testing.assert_close(result.masked, torch.tensor([masked], dtype=torch.float64))
    torch.testing.assert_close(
        result.drop, torch.tensor([100 * (528 - masked) / 528], dtype=torch.float64)
    )


def test_volume_position_attributions_are_reduced_over_channels() -> None:
    # Channel sums 3 and -1 at the two voxels: M = [1, 0]; abs sums 3 and 3: M = 0, O = 0.
    volume = torch.tensor([[1.0, 1.0], [1.0, 1.0]]).view(1, 2, 1, 1, 2)
    attributions = torch.tensor([[1.0, 1.0], [2.0, -2.0]]).view(1, 2, 1, 1, 2)
    signed = ConfidenceChange(TotalModel(), "logit")(volume, attributions)
    torch.testing.assert_close(signed.masked, torch.tensor([2.0]))
    absolute = ConfidenceChange(TotalModel(), "logit", channel_reduction="abs_sum")
    torch.testing.assert_close(absolute(volume, attributions).masked, torch.tensor([0.0]))


@pytest.mark.parametrize(
    ("inputs", "attributions", "match"),
    [
        (torch.ones(1, 1, 2, 2, 4), torch.ones(1, 1, 2, 1, 2), "aspect ratios differ"),
        (torch.ones(1, 1, 2, 2, 4), torch.ones(2, 1, 2, 2, 4), "N = 1"),
        (torch.ones(1, 2, 2, 4), torch.ones(1, 1, 2, 2, 4), r"inputs must be 5-D"),
        (torch.ones(1, 1, 4), torch.ones(1, 3, 4), "attributions with 3 channels"),
    ],
)
def test_bad_signal_and_volume_calls_are_refused_before_any_forward_pass(
    inputs: Tensor, attributions: Tensor, match: str
) -> None:
    counting = BatchSizes(TotalModel())
    with pytest.raises(ValueError, match=match):
        ConfidenceChange(counting)(inputs, attributions)
    assert counting.sizes == []
