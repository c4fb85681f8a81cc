"""Insertion and deletion curves against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from captum_polycam.metrics import Deletion, Insertion, InsertionDeletion
from tests.conftest import BatchSizes, SumModel
from tests.metrics.nd_models import EveryValueModel, LinearModel, TotalModel

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


# --- Signals and volumes ---------------------------------------------------------------------


def _nd_metric(**options) -> InsertionDeletion:
    settings = {"baseline": "zeros", "score_fn": "logit", **options}
    return InsertionDeletion(TotalModel(), **settings)


def test_signal_by_hand() -> None:
    # Samples 1, 4, 2, 3 ranked by themselves: 4, 3, 2, 1 move in turn.
    signal = torch.tensor([[[1.0, 4.0, 2.0, 3.0]]])
    result = _nd_metric(n_steps=4)(signal, signal, target=0)
    torch.testing.assert_close(result.insertion.curve, torch.tensor([[4.0, 7.0, 9.0, 10.0]]))
    torch.testing.assert_close(result.deletion.curve, torch.tensor([[6.0, 3.0, 1.0, 0.0]]))
    torch.testing.assert_close(result.insertion.fractions, torch.tensor([0.25, 0.5, 0.75, 1.0]))
    # 3 steps over 4 samples: ceil(4 / 3) = 2 samples per step, capped at 4.
    result = _nd_metric(n_steps=3)(signal, signal, target=0)
    torch.testing.assert_close(result.insertion.curve, torch.tensor([[7.0, 10.0, 10.0]]))
    torch.testing.assert_close(result.insertion.fractions, torch.tensor([0.5, 1.0, 1.0]))


def test_signal_channels_move_together_and_a_low_resolution_map_is_upsampled_linearly() -> None:
    # Two channels; the sample sums are 3, 30, 300, 3000.
    signal = torch.tensor([[[1.0, 10.0, 100.0, 1000.0], [2.0, 20.0, 200.0, 2000.0]]])
    # A map of 2 samples [a, b] becomes [a, 3a/4 + b/4, a/4 + 3b/4, b]: increasing for
    # [0, 1], so the samples go last first.
    result = _nd_metric(n_steps=4)(signal, torch.tensor([[[0.0, 1.0]]]), target=0)
    torch.testing.assert_close(
        result.insertion.curve, torch.tensor([[3000.0, 3300.0, 3330.0, 3333.0]])
    )
    # N x L maps (no channel axis), and N x C x L attributions summed over the channels.
    decreasing = _nd_metric(n_steps=4)(signal, torch.tensor([[4.0, 3.0, 2.0, 1.0]]), target=0)
    torch.testing.assert_close(
        decreasing.insertion.curve, torch.tensor([[3.0, 33.0, 333.0, 3333.0]])
    )
    summed = _nd_metric(n_steps=4)(signal, -signal, target=0)
    torch.testing.assert_close(summed.insertion.curve, decreasing.insertion.curve)


VOLUME = torch.tensor([[[[[3.0, 8.0], [1.0, 6.0]], [[5.0, 2.0], [7.0, 4.0]]]]])  # 1 x 1 x 2 x 2 x 2


def test_volume_by_hand() -> None:
    # Voxels ranked by themselves: 8, 7, ..., 1.
    result = _nd_metric(n_steps=8)(VOLUME, VOLUME, target=0)
    torch.testing.assert_close(
        result.insertion.curve, torch.tensor([[8.0, 15.0, 21.0, 26.0, 30.0, 33.0, 35.0, 36.0]])
    )
    torch.testing.assert_close(
        result.deletion.curve, torch.tensor([[28.0, 21.0, 15.0, 10.0, 6.0, 3.0, 1.0, 0.0]])
    )
    torch.testing.assert_close(result.insertion.auc, torch.tensor([204.0 / 8]))
    # 3 steps over 8 voxels: ceil(8 / 3) = 3 voxels per step, capped at 8.
    result = _nd_metric(n_steps=3, auc="trapezoid")(VOLUME, VOLUME, target=0)
    torch.testing.assert_close(result.insertion.curve, torch.tensor([[0.0, 21.0, 33.0, 36.0]]))
    torch.testing.assert_close(result.insertion.fractions, torch.tensor([0.0, 3 / 8, 6 / 8, 1.0]))
    area = (3 / 8) * (0 + 21) / 2 + (3 / 8) * (21 + 33) / 2 + (2 / 8) * (33 + 36) / 2
    torch.testing.assert_close(result.insertion.auc, torch.tensor([area]))


def test_volume_ties_go_to_the_later_voxel_first_and_the_mean_baseline() -> None:
    # Row-major order (depth, row, column) holds 3, 8, 1, 6, 5, 2, 7, 4: the last first.
    flat = ones = torch.ones(1, 1, 2, 2, 2)
    result = _nd_metric(n_steps=8)(VOLUME, ones, target=0)
    expected = torch.tensor([4.0, 7.0, 2.0, 5.0, 6.0, 1.0, 8.0, 3.0]).cumsum(0)
    torch.testing.assert_close(result.insertion.curve, expected[None])
    # The mean of the volume, 4.5, everywhere but the moved voxels.
    result = _nd_metric(n_steps=8, baseline="mean")(VOLUME, flat, target=0)
    moved = torch.arange(1.0, 9.0)
    torch.testing.assert_close(result.insertion.curve, (expected + (8 - moved) * 4.5)[None])


def test_more_steps_than_voxels_are_refused_before_any_forward_pass() -> None:
    counting = BatchSizes(TotalModel())
    with pytest.raises(
        ValueError, match=r"^n_steps must be at most 8, the 2 x 2 x 2 voxels of the inputs; got 9$"
    ):
        InsertionDeletion(counting, n_steps=9)(VOLUME, VOLUME, 0)
    with pytest.raises(
        ValueError, match=r"^n_steps must be at most 4, the 4 samples of the inputs; got 5$"
    ):
        InsertionDeletion(counting, n_steps=5)(torch.ones(1, 1, 4), torch.ones(1, 1, 4), 0)
    assert counting.sizes == []


def _gaussian_taps(size: int, sigma: float) -> Tensor:
    offsets = torch.arange(size, dtype=torch.float64) - size // 2
    taps = torch.exp(-(offsets**2) / (2 * sigma**2))
    return taps / taps.sum()


def _baseline_of(inputs: Tensor, **options) -> Tensor:
    """The baseline the metric uses, read off deletion curves of one step: each copy of the
    inputs is scored by one of its values (EveryValueModel), so that the copies together read
    every value of the fully deleted inputs."""
    values = inputs[0].numel()
    copies = inputs.expand(values, *inputs.shape[1:])
    metric = InsertionDeletion(EveryValueModel(), n_steps=1, score_fn="logit", **options)
    deleted = metric(copies, copies[:, :1], target=torch.arange(values)).deletion.curve
    return deleted[:, 0].view(inputs.shape)


def test_volume_blur_is_the_3d_gaussian_in_every_dimension() -> None:
    generator = torch.Generator().manual_seed(3)
    volume = torch.rand(1, 2, 5, 6, 7, generator=generator, dtype=torch.float64)
    size, sigma = 5, 1.5
    taps = _gaussian_taps(size, sigma)
    kernel = taps[:, None, None] * taps[None, :, None] * taps[None, None, :]
    # The whole 3-D kernel at once, on the volume padded by reflection along each axis.
    padded = torch.from_numpy(
        np.pad(volume[0].numpy(), [(0, 0), (2, 2), (2, 2), (2, 2)], mode="reflect")
    )
    expected = F.conv3d(padded[:, None], kernel[None, None])[:, 0][None]
    baseline = _baseline_of(volume, blur_kernel_size=size, blur_sigma=sigma)
    torch.testing.assert_close(baseline, expected, rtol=0, atol=1e-12)


def test_signal_blur_is_the_1d_gaussian() -> None:
    signal = torch.zeros(1, 1, 9, dtype=torch.float64)
    signal[0, 0, 1] = 1.0  # reflected at the left edge onto sample 1 of the padding
    taps = _gaussian_taps(5, 2.0)
    # Sample j takes taps[k] from padded sample j + k: the impulse at 1 (and its mirror image
    # at -1, padded sample 1) reach samples 0 to 3.
    expected = torch.zeros(9, dtype=torch.float64)
    for j in range(9):
        for k in range(5):
            source = j + k - 2
            if abs(source) == 1:
                expected[j] += taps[k]
    baseline = _baseline_of(signal, blur_kernel_size=5, blur_sigma=2.0)
    torch.testing.assert_close(baseline[0, 0], expected, rtol=0, atol=1e-12)


def test_a_volume_of_one_slice_gives_its_images_curves_exactly() -> None:
    # Reflect padding has nothing to reflect along a depth of 1; the blur leaves that axis as
    # it is, which is what copies of the slice blurred by a kernel of sum 1 give.
    generator = torch.Generator().manual_seed(4)
    image = torch.rand(2, 3, 12, 12, generator=generator)
    low_res = torch.rand(2, 1, 3, 3, generator=generator)
    model = LinearModel(3 * 12 * 12)
    # The paper's blur and softmax; passes of one size, whose products round alike.
    metric = InsertionDeletion(model, n_steps=24, perturbations_per_eval=48)
    flat = metric(image, low_res, target=[0, 2])
    volume = metric(image[:, :, None], low_res[:, :, None], target=[0, 2])
    for kind in ("insertion", "deletion"):
        assert torch.equal(getattr(volume, kind).curve, getattr(flat, kind).curve), kind
        assert torch.equal(getattr(volume, kind).fractions, getattr(flat, kind).fractions)
    assert _baseline_of(image[:1, :1, None, :5, :7], blur_kernel_size=3).equal(
        _baseline_of(image[:1, :1, :5, :7], blur_kernel_size=3)[:, :, None]
    )


@pytest.mark.parametrize(
    ("inputs", "kernel_size", "largest", "shown", "note"),
    [
        (torch.ones(1, 1, 3, 8, 8), 7, 5, "3 x 8 x 8 voxels", ""),
        (torch.ones(1, 1, 1, 4, 8), 9, 7, "1 x 4 x 8 voxels", " (a depth of 1 is not blurred)"),
        (torch.ones(1, 2, 6), 13, 11, "6 samples", ""),
    ],
)
def test_a_blur_larger_than_a_signal_or_volume_is_refused(
    inputs: Tensor, kernel_size: int, largest: int, shown: str, note: str
) -> None:
    counting = BatchSizes(TotalModel())
    metric = InsertionDeletion(counting, n_steps=4, blur_kernel_size=kernel_size)
    sides, unit = shown.rsplit(" ", 1)
    with pytest.raises(ValueError) as raised:
        metric(inputs, inputs, 0)
    assert str(raised.value) == (
        f"blur_kernel_size must be at most {largest} for {sides} inputs: the blur's reflect "
        f"padding of blur_kernel_size // 2 {unit} must be smaller than each side{note}; "
        f"got {kernel_size}"
    )
    assert counting.sizes == []
    # The largest kernel that fits blurs constant inputs into themselves.
    fitting = InsertionDeletion(TotalModel(), n_steps=4, score_fn="logit", blur_kernel_size=largest)
    torch.testing.assert_close(
        fitting(inputs, inputs, 0).deletion.curve, torch.full((1, 4), 1.0 * inputs.numel())
    )


def test_volume_attribution_shapes() -> None:
    generator = torch.Generator().manual_seed(5)
    volume = torch.rand(2, 2, 4, 6, 6, generator=generator)
    metric = _nd_metric(n_steps=12)
    low_res = torch.rand(2, 1, 2, 3, 3, generator=generator)
    upsampled = F.interpolate(low_res, size=(4, 6, 6), mode="trilinear", align_corners=False)
    torch.testing.assert_close(
        metric(volume, low_res, 0).insertion.curve, metric(volume, upsampled, 0).insertion.curve
    )
    torch.testing.assert_close(
        metric(volume, upsampled[:, 0], 0).deletion.curve,
        metric(volume, upsampled, 0).deletion.curve,
    )
    signed = torch.randn(2, 2, 4, 6, 6, generator=generator)
    absolute = _nd_metric(n_steps=12, channel_reduction="abs_sum")(volume, signed, 0)
    torch.testing.assert_close(
        absolute.insertion.curve, metric(volume, signed.abs().sum(1), 0).insertion.curve
    )


@pytest.mark.parametrize(
    ("inputs", "attributions", "match"),
    [
        (VOLUME, torch.ones(1, 1, 1, 2, 4), "aspect ratios differ"),
        (VOLUME, torch.ones(1, 2, 2, 2, 2), "attributions with 2 channels"),
        (VOLUME, torch.ones(1, 2, 2), r"N x 1 x d x h x w, N x d x h x w or N x C x D x H x W"),
        (VOLUME[0], VOLUME, r"inputs must be 5-D, N x C x D x H x W.*inputs\[None\]"),
        (torch.ones(1, 1, 4), torch.ones(1, 1, 2, 2), r"inputs must be 4-D"),
        (torch.ones(1, 1, 2, 2, 2, 2), VOLUME, "inputs must be a 3-D float tensor N x C x L"),
    ],
)
def test_bad_signal_and_volume_calls(inputs: Tensor, attributions: Tensor, match: str) -> None:
    counting = BatchSizes(TotalModel())
    with pytest.raises(ValueError, match=match):
        InsertionDeletion(counting, n_steps=1, baseline="zeros")(inputs, attributions, 0)
    assert counting.sizes == []
