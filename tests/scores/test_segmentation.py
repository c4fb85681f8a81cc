"""SegmentationScore on hand-made logits: mean probability and logit sum over regions."""

from __future__ import annotations

import math

import pytest
import torch

from captum_polycam import SegmentationScore

# Two inputs, two classes, 1 x 2 pixels. Input 0: logits (0, 0) then (0, log 3); input 1: class 1
# everywhere with logit 2.
LOGITS = torch.tensor(
    [
        [[[0.0, 0.0]], [[0.0, math.log(3.0)]]],
        [[[0.0, 0.0]], [[2.0, 2.0]]],
    ]
)


def test_mean_probability_over_the_whole_image() -> None:
    scores = SegmentationScore(1)({"out": LOGITS})
    p = 1 / (1 + math.exp(-2.0))
    # Input 0: probabilities 1/2 and 3/4 of class 1.
    torch.testing.assert_close(scores, torch.tensor([[(0.5 + 0.75) / 2], [p]]))


def test_logit_sum_over_regions() -> None:
    regions = torch.tensor([[[True, False]], [[False, True]], [[True, True]]])
    scores = SegmentationScore(1, regions, reduction="logit_sum")(LOGITS)
    expected = [[0.0, math.log(3.0), math.log(3.0)], [2.0, 2.0, 4.0]]
    torch.testing.assert_close(scores, torch.tensor(expected))


@pytest.mark.parametrize("reduction", ["mean_probability", "logit_sum"])
@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (torch.zeros(1, 2, dtype=torch.bool), "mask is empty (no pixel is True)"),
        (torch.zeros(1, 1, 2, dtype=torch.uint8), "mask is empty (no pixel is True)"),
        (
            torch.tensor([[[True, False]], [[False, False]], [[False, False]]]),
            "mask: region 1 of 3 is empty (no pixel is True)",
        ),
    ],
)
def test_an_empty_region_is_refused(mask: torch.Tensor, message: str, reduction: str) -> None:
    # The mean over no pixel is undefined: it used to read 0, and the map came out blank.
    with pytest.raises(ValueError) as raised:
        SegmentationScore(1, mask, reduction=reduction)  # type: ignore[arg-type]
    assert str(raised.value) == (
        f"{message}: every region needs at least one pixel; pass mask=None for the whole image"
    )


def test_a_prediction_without_the_class_is_refused() -> None:
    # Class 0 wins input 0's first pixel (a tie) and no pixel of input 1.
    assert SegmentationScore.from_prediction(LOGITS[:1], 0).mask.tolist() == [[[True, False]]]
    with pytest.raises(ValueError) as raised:
        SegmentationScore.from_prediction({"out": LOGITS}, class_index=0)
    assert str(raised.value) == (
        "output: the prediction assigns no pixel to class 0 in example 1 (1 of 2 examples): "
        "there is no region to explain; leave those examples out, or give a mask"
    )
    with pytest.raises(ValueError, match="class_index 5 is out of range for an output of 2"):
        SegmentationScore.from_prediction(LOGITS, class_index=5)


def test_regions_from_the_clean_prediction() -> None:
    score = SegmentationScore.from_prediction({"out": LOGITS}, class_index=1)
    # Input 0 assigns its second pixel to class 1 (the first is a tie, arg-max takes class 0).
    assert score.mask.tolist() == [[[False, True]], [[True, True]]]
    assert score.targets.tolist() == [0, 1]
    p = 1 / (1 + math.exp(-2.0))
    # Input 0 over its own region (pixel 2): 3/4; over input 1's (both pixels): (1/2 + 3/4) / 2.
    torch.testing.assert_close(score(LOGITS), torch.tensor([[0.75, 0.625], [p, p]]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8, torch.int64])
def test_a_zero_one_mask_is_the_boolean_mask(dtype: torch.dtype) -> None:
    regions = torch.tensor([[[True, False]], [[True, True]]])
    expected = SegmentationScore(1, regions)(LOGITS)
    torch.testing.assert_close(SegmentationScore(1, regions.to(dtype))(LOGITS), expected)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-1,), "class_index must be"),
        ((1, torch.zeros(2)), r"mask must be an \(H, W\) or \(E, H, W\) tensor"),
        # A soft mask is not a region: weighting by it would be another score.
        (
            (1, torch.tensor([[0.3, 1.0]])),
            r"mask must be boolean or hold only 0 and 1; got torch.float32 values such as 0.3",
        ),
        ((1, torch.tensor([[0.0, float("nan")]])), r"mask must be boolean or hold only 0 and 1"),
        ((1, torch.tensor([[2, 0]])), r"mask must be boolean .*; got torch.int64 values such as 2"),
        ((1, None, "median"), "reduction must be one of"),
    ],
)
def test_bad_arguments_are_named(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SegmentationScore(*args)


def test_mismatched_output_is_explained() -> None:
    with pytest.raises(ValueError, match="class_index 5"):
        SegmentationScore(5)(LOGITS)
    with pytest.raises(ValueError, match="resolution"):
        SegmentationScore(1, torch.ones(3, 3))(LOGITS)
    with pytest.raises(TypeError, match="'out'"):
        SegmentationScore(1)([LOGITS])


@pytest.mark.parametrize(
    "call",
    [
        lambda output: SegmentationScore(1)(output),
        lambda output: SegmentationScore.from_prediction(output, class_index=1),
    ],
)
def test_a_dict_output_without_out_is_named(call) -> None:
    # It used to end in a bare KeyError: 'out'.
    with pytest.raises(ValueError) as raised:
        call({"aux": LOGITS, "logits": LOGITS})
    assert str(raised.value) == (
        "output: a dict output must hold the (B, classes, H, W) logits under 'out', as "
        "torchvision's FCN, DeepLabV3 and LR-ASPP return; has ['aux', 'logits']"
    )
