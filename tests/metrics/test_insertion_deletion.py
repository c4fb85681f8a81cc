"""Insertion and deletion curves against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from captum_polycam.metrics import Deletion, Insertion, InsertionDeletion
from tests.conftest import BatchSizes, SumModel

X = torch.tensor([[[[4.0, 3.0], [2.0, 1.0]]]])  # score = sum of the pixels


def _metric(**options) -> InsertionDeletion:
    settings = {"n_steps": 4, "baseline": "zeros", "score_fn": "logit", **options}
    return InsertionDeletion(SumModel(), **settings)


def test_perfect_map_by_hand() -> None:
    result = _metric()(X, X, target=0)
    torch.testing.assert_close(result.insertion.curve, torch.tensor([[4.0, 7.0, 9.0, 10.0]]))
    torch.testing.assert_close(result.deletion.curve, torch.tensor([[6.0, 3.0, 1.0, 0.0]]))
    torch.testing.assert_close(result.insertion.auc, torch.tensor([7.5]))
    torch.testing.assert_close(result.deletion.auc, torch.tensor([2.5]))
    torch.testing.assert_close(result.difference, torch.tensor([5.0]))
    torch.testing.assert_close(result.insertion.fractions, torch.tensor([0.25, 0.5, 0.75, 1.0]))


def test_reversed_map_by_hand() -> None:
    result = _metric()(X, -X, target=0)
    torch.testing.assert_close(result.insertion.curve, torch.tensor([[1.0, 3.0, 6.0, 10.0]]))
    torch.testing.assert_close(result.deletion.curve, torch.tensor([[9.0, 7.0, 4.0, 0.0]]))
    torch.testing.assert_close(result.difference, torch.tensor([0.0]))


def test_constant_map_breaks_ties_by_the_later_pixel_first() -> None:
    # Pixels in row-major order 0..3 carry 4, 3, 2, 1: the later pixel first means 1, 2, 3, 4.
    result = _metric()(X, torch.ones(1, 1, 2, 2), target=0)
    torch.testing.assert_close(result.insertion.curve, torch.tensor([[1.0, 3.0, 6.0, 10.0]]))


def test_several_pixels_per_step() -> None:
    # 3 steps over 4 pixels: ceil(4 / 3) = 2 pixels per step, capped at 4.
    result = _metric(n_steps=3)(X, X, target=0)
    torch.testing.assert_close(result.insertion.curve, torch.tensor([[7.0, 10.0, 10.0]]))
    torch.testing.assert_close(result.insertion.fractions, torch.tensor([0.5, 1.0, 1.0]))


def test_trapezoid_includes_the_empty_state() -> None:
    result = _metric(auc="trapezoid")(X, X, target=0)
    torch.testing.assert_close(result.insertion.curve, torch.tensor([[0.0, 4.0, 7.0, 9.0, 10.0]]))
    # 0.25 * ((0 + 4) + (4 + 7) + (7 + 9) + (9 + 10)) / 2
    torch.testing.assert_close(result.insertion.auc, torch.tensor([6.25]))
    torch.testing.assert_close(result.deletion.auc, torch.tensor([0.25 * (16 + 9 + 4 + 1) / 2]))


@pytest.mark.parametrize(
    ("baseline", "expected"),
    [
        ("mean", [3 * 2.5 + 4, 2 * 2.5 + 7, 2.5 + 9, 10.0]),  # mean pixel 2.5
        (torch.full((1, 2, 2), 1.0), [3 + 4, 2 + 7, 1 + 9, 10.0]),
        (lambda x: x * 0 - 1, [-3 + 4, -2 + 7, -1 + 9, 10.0]),
    ],
)
def test_other_baselines(baseline, expected) -> None:
    result = _metric(baseline=baseline)(X, X, target=0)
    torch.testing.assert_close(result.insertion.curve, torch.tensor([expected]))


def test_blur_baseline_is_the_papers_gaussian() -> None:
    image = torch.zeros(1, 1, 16, 16)
    image[0, 0, 3, 12] = 1.0
    taps = torch.exp(-(torch.arange(-5.0, 6.0) ** 2) / (2 * 5.0**2))
    kernel = (taps / taps.sum())[:, None] * (taps / taps.sum())[None, :]
    expected = F.conv2d(F.pad(image, (5, 5, 5, 5), mode="reflect"), kernel[None, None])
    # Insertion with nothing salient: every step shows the baseline except the moved pixels.
    metric = InsertionDeletion(SumModel(), n_steps=256, score_fn="logit")
    result = metric(image, -torch.arange(256.0).reshape(1, 1, 16, 16), target=0)
    first_step = expected.sum() - expected[0, 0, 0, 0] + image[0, 0, 0, 0]
    torch.testing.assert_close(result.insertion.curve[0, 0], first_step)


def test_softmax_is_the_default_score() -> None:
    metric = InsertionDeletion(SumModel(), n_steps=4, baseline="zeros")
    result = metric(X, X, target=0)
    expected = torch.tensor([[4.0, 7.0, 9.0, 10.0]]).sigmoid()  # softmax([s, 0])[0]
    torch.testing.assert_close(result.insertion.curve, expected)


def test_attribution_shapes() -> None:
    inputs = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    metric = _metric(n_steps=16)
    low_res = torch.rand(2, 1, 2, 2, generator=torch.Generator().manual_seed(1))
    upsampled = F.interpolate(low_res, size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(
        metric(inputs, low_res, 0).insertion.curve, metric(inputs, upsampled, 0).insertion.curve
    )
    torch.testing.assert_close(
        metric(inputs, upsampled[:, 0], 0).deletion.curve,
        metric(inputs, upsampled, 0).deletion.curve,
    )
    signed = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(
        metric(inputs, signed, 0).insertion.curve, metric(inputs, signed.sum(1), 0).insertion.curve
    )
    absolute = _metric(n_steps=16, channel_reduction="abs_sum")(inputs, signed, 0)
    torch.testing.assert_close(
        absolute.insertion.curve, metric(inputs, signed.abs().sum(1), 0).insertion.curve
    )


def test_single_curves_equal_the_combined_metric(tiny_cnn, tiny_inputs) -> None:
    saliency = tiny_inputs.abs().sum(dim=1, keepdim=True)
    both = InsertionDeletion(tiny_cnn, n_steps=32)(tiny_inputs, saliency)
    insertion = Insertion(tiny_cnn, n_steps=32)(tiny_inputs, saliency)
    deletion = Deletion(tiny_cnn, n_steps=32)(tiny_inputs, saliency)
    torch.testing.assert_close(insertion.curve, both.insertion.curve)
    torch.testing.assert_close(deletion.auc, both.deletion.auc)


@pytest.mark.parametrize("per_eval", [1, 7, 50, 1000])
def test_chunk_size_and_batching_do_not_change_results(tiny_cnn, tiny_inputs, per_eval) -> None:
    saliency = tiny_inputs[:, :1]
    reference = InsertionDeletion(tiny_cnn, n_steps=20, perturbations_per_eval=64)
    chunked = InsertionDeletion(tiny_cnn, n_steps=20, perturbations_per_eval=per_eval)
    expected = reference(tiny_inputs, saliency, [0, 1, 2])
    result = chunked(tiny_inputs, saliency, [0, 1, 2])
    torch.testing.assert_close(result.insertion.curve, expected.insertion.curve, atol=1e-5, rtol=0)
    torch.testing.assert_close(result.deletion.curve, expected.deletion.curve, atol=1e-5, rtol=0)
    for i in range(3):
        single = chunked(tiny_inputs[i : i + 1], saliency[i : i + 1], i)
        torch.testing.assert_close(
            single.insertion.curve, expected.insertion.curve[i : i + 1], atol=1e-5, rtol=0
        )


def test_default_target_is_top1(tiny_cnn, tiny_inputs) -> None:
    metric = InsertionDeletion(tiny_cnn, n_steps=8)
    saliency = tiny_inputs[:, :1]
    top1 = tiny_cnn(tiny_inputs).argmax(dim=1)
    torch.testing.assert_close(
        metric(tiny_inputs, saliency).insertion.auc,
        metric(tiny_inputs, saliency, top1).insertion.auc,
    )


def test_last_step_is_the_full_image_and_the_baseline(tiny_cnn, tiny_inputs) -> None:
    metric = InsertionDeletion(tiny_cnn, n_steps=10, baseline="zeros")
    result = metric(tiny_inputs, tiny_inputs[:, :1], target=1)
    probabilities = tiny_cnn(tiny_inputs).softmax(dim=1)[:, 1]
    blank = tiny_cnn(torch.zeros_like(tiny_inputs)).softmax(dim=1)[:, 1]
    torch.testing.assert_close(result.insertion.curve[:, -1], probabilities.detach())
    torch.testing.assert_close(result.deletion.curve[:, -1], blank.detach())


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda m: m(X, torch.ones(2, 1, 2, 2), 0), ValueError, "attributions must be"),
        (lambda m: m(X, torch.ones(1, 1, 1, 4), 0), ValueError, "aspect ratios differ"),
        (lambda m: m(X, torch.ones(1, 2, 2, 2), 0), ValueError, "attributions with 2 channels"),
        (lambda m: m(X, torch.full((1, 1, 2, 2), math.nan), 0), ValueError, "NaN"),
        (lambda m: m(X, X, 2), ValueError, "target is out of range"),
        (lambda m: m(X[0], X, 0), ValueError, "inputs must be"),
        (lambda m: m(X, X.numpy(), 0), TypeError, "attributions must be a tensor"),
    ],
)
def test_bad_calls(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call(_metric())


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="n_steps must be a positive int"):
        InsertionDeletion(SumModel(), n_steps=0)
    with pytest.raises(ValueError, match="baseline must be"):
        InsertionDeletion(SumModel(), baseline="noise")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"baseline of shape \(3, 2, 2\) cannot broadcast"):
        _metric(baseline=torch.zeros(3, 2, 2))(X, X, 0)
    with pytest.raises(ValueError, match="auc must be"):
        InsertionDeletion(SumModel(), auc="simpson")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="channel_reduction"):
        _metric(channel_reduction="max")(X, X, 0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "call",
    [
        lambda model: InsertionDeletion(model, n_steps=5, baseline="zeros")(X, X, 0),
        lambda model: InsertionDeletion(model, n_steps=5, auc="trapezoid").curves((X,), X, 0),
        lambda model: Deletion(model, n_steps=5)(X, X),
    ],
)
def test_more_steps_than_pixels_are_refused_before_any_forward_pass(call) -> None:
    # Steps past the 4th would all show the full image (insertion) or the baseline (deletion).
    counting = BatchSizes(SumModel())
    with pytest.raises(
        ValueError,
        match=r"n_steps must be at most 4, the 2 x 2 pixels of the "
        r"inputs; got 5",
    ):
        call(counting)
    assert counting.sizes == []


def test_results_carry_the_settings_that_decide_their_numbers() -> None:
    result = InsertionDeletion(SumModel(), n_steps=4, blur_kernel_size=3)(X, X, 0)
    expected = {
        "n_steps": 4,
        "baseline": "blur",
        "blur_kernel_size": 3,
        "blur_sigma": 5.0,
        "score_fn": "softmax",
        "auc": "mean",
        "channel_reduction": "sum",
        "precision": "fp32",
    }
    assert result.protocol == expected
    assert result.insertion.protocol == result.deletion.protocol == expected

    def my_score(output: Tensor) -> Tensor:
        return output

    # A tensor baseline is known as "tensor", a callable by its name; no blur settings then.
    options = {
        "n_steps": 2,
        "baseline": torch.zeros(1, 1, 1),
        "score_fn": my_score,
        "auc": "trapezoid",
        "perturbations_per_eval": 1,
    }
    custom = {
        "n_steps": 2,
        "baseline": "tensor",
        "score_fn": my_score.__qualname__,
        "auc": "trapezoid",
        "channel_reduction": "sum",
        "precision": "fp32",
    }
    assert InsertionDeletion(SumModel(), **options)(X, X, 0).protocol == custom
    assert Deletion(SumModel(), **options)(X, X, 0).protocol == custom


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"blur_kernel_size": 10}, "blur_kernel_size must be odd, so that the kernel centres on "),
        ({"blur_kernel_size": 0}, "blur_kernel_size must be a positive int; got 0"),
        ({"blur_kernel_size": 3.0}, "blur_kernel_size must be a positive int; got 3.0"),
        ({"blur_sigma": 0.0}, "blur_sigma must be a positive finite number; got 0.0"),
        ({"blur_sigma": -1.0}, "blur_sigma must be a positive finite number; got -1.0"),
        ({"blur_sigma": math.nan}, "blur_sigma must be a positive finite number; got nan"),
        ({"blur_sigma": math.inf}, "blur_sigma must be a positive finite number; got inf"),
        ({"blur_sigma": "5"}, "blur_sigma must be a positive finite number; got '5'"),
    ],
)
@pytest.mark.parametrize("metric", [InsertionDeletion, Insertion, Deletion])
def test_blur_settings_are_checked_at_construction(metric, options, message) -> None:
    # torchvision would refuse an even kernel only at the first call, deep in its blur.
    with pytest.raises(ValueError) as raised:
        metric(SumModel(), **options)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("inputs", "kernel_size", "largest"),
    [(X, 5, 3), (torch.ones(1, 3, 32, 32), 101, 63), (torch.ones(1, 1, 2, 40), 5, 3)],
)
def test_a_blur_larger_than_the_inputs_is_refused_before_any_forward_pass(
    inputs: Tensor, kernel_size: int, largest: int
) -> None:
    # Reflect padding of kernel_size // 2 pixels needs more than that on each side.
    counting = BatchSizes(SumModel())
    metric = InsertionDeletion(counting, n_steps=4, blur_kernel_size=kernel_size)
    height, width = inputs.shape[-2:]
    with pytest.raises(ValueError) as raised:
        metric(inputs, inputs, 0)
    assert str(raised.value) == (
        f"blur_kernel_size must be at most {largest} for {height} x {width} inputs: the blur's "
        f"reflect padding of blur_kernel_size // 2 pixels must be smaller than each side; "
        f"got {kernel_size}"
    )
    assert counting.sizes == []
    # The largest kernel that fits blurs a constant image into itself: the deletion curve of
    # the pixel sum stays at the image's sum.
    fitting = InsertionDeletion(SumModel(), n_steps=4, score_fn="logit", blur_kernel_size=largest)
    ones = torch.ones_like(inputs)
    torch.testing.assert_close(
        fitting(ones, ones, 0).deletion.curve, torch.full((1, 4), 1.0 * ones.numel())
    )
    # Without the blur the kernel plays no part.
    zeros = InsertionDeletion(SumModel(), n_steps=4, baseline="zeros", blur_kernel_size=kernel_size)
    assert zeros(inputs, inputs, 0).deletion.curve.shape == (1, 4)
