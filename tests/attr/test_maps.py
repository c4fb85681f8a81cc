"""Exact values of the map arithmetic, worked out by hand."""

import numpy as np
import pytest
import torch

from captum_polycam.attr.maps import (
    backward_recursion,
    local_normalise,
    percentile,
    robust_normalise,
)
from captum_polycam.normalisation import upsample


@pytest.mark.parametrize("count", [1, 2, 7, 50, 1001])
@pytest.mark.parametrize("q", [0.1, 50.0, 99.9])
def test_percentile_matches_numpy_linear(count: int, q: float) -> None:
    values = torch.randn(3, count, generator=torch.Generator().manual_seed(count))
    expected = np.percentile(values.numpy(), q, axis=-1)
    torch.testing.assert_close(percentile(values, q), torch.from_numpy(expected).float())


@pytest.mark.parametrize("q", [0.0, 0.1, 0.5, 37.0, 50.0, 99.5, 99.9, 100.0])
def test_percentile_reads_exactly_the_sorted_values(q: float) -> None:
    # Read from the nearer end's topk: bit for bit the sorted order statistics, ties and NaN
    # (last, as a sort puts it) included.
    values = torch.rand(2, 3, 1001, generator=torch.Generator().manual_seed(0)).round(decimals=2)
    values[1, 2, 5] = float("nan")
    count = values.shape[-1]
    position = q / 100.0 * (count - 1)
    below, above = int(position), min(int(position) + 1, count - 1)
    ordered = values.sort(dim=-1).values
    low, high = ordered[..., below], ordered[..., above]
    expected = low + (position - below) * (high - low)
    assert torch.equal(percentile(values, q).isnan(), expected.isnan())
    assert torch.equal(percentile(values, q).nan_to_num(-1.0), expected.nan_to_num(-1.0))


def test_robust_normalise_by_hand() -> None:
    # Sorted: 0, 0, 0.5, 2. p0.1 at index 0.003 -> 0; p99.9 at index 2.997 ->
    # 0.5 + 0.997 * (2 - 0.5) = 1.9955. The divisor is p99.9, not p99.9 - p0.1.
    a = torch.tensor([[[[2.0, 0.0], [0.5, 0.0]]]])
    expected = torch.tensor([[[[1.0, 0.0], [0.5 / 1.9955, 0.0]]]])
    torch.testing.assert_close(robust_normalise(a), expected)


def test_robust_normalise_divides_by_high_percentile_not_range() -> None:
    # All values in [10, 20]: a min-max would give [0, 1]; the reference gives (a - lo) / hi.
    a = torch.linspace(10, 20, 1001).reshape(1, 1, 7, 143)
    lo, hi = np.percentile(a.numpy(), 0.1), np.percentile(a.numpy(), 99.9)
    out = robust_normalise(a)
    assert out.max() == pytest.approx((20 - lo) / hi)
    assert out.max() < 0.51


def test_robust_normalise_dead_map_is_zero() -> None:
    assert robust_normalise(torch.zeros(1, 1, 4, 4)).abs().max() == 0


def test_robust_normalise_negative_map_follows_the_reference_divisor() -> None:
    # p99.9 < 0 makes the divisor 1e-12: every position above p0.1 saturates to 1. This is why
    # Poly-CAM wants post-activation (non-negative) layers.
    a = -torch.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    out = robust_normalise(a).flatten()
    assert out[-1] == 0  # the minimum, below p0.1
    assert torch.all(out[:-1] == 1)


def test_upsample_is_bilinear_without_corner_alignment() -> None:
    # 1-D [0, 1] -> 4 samples at source positions -0.25, 0.25, 0.75, 1.25 (clamped).
    row = upsample(torch.tensor([[[[0.0, 1.0]]]]), (1, 4))
    torch.testing.assert_close(row, torch.tensor([[[[0.0, 0.25, 0.75, 1.0]]]]))


def test_local_normalise_factor_two_divides_by_block_mean() -> None:
    s = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])  # mean 3
    expected = torch.tensor([[[[1 / 3, 2 / 3], [1.0, 2.0]]]])
    torch.testing.assert_close(local_normalise(s, (1, 1)), expected)


def test_local_normalise_same_resolution_is_a_support_mask() -> None:
    s = torch.tensor([[[[0.0, 2.0], [5.0, 0.25]]]])
    torch.testing.assert_close(local_normalise(s, (2, 2)), torch.tensor([[[[0.0, 1], [1, 1]]]]))


def test_backward_recursion_by_hand() -> None:
    shallow = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])
    deep = torch.tensor([[[[4.0]]]])
    deepest, composite = backward_recursion([shallow, deep])
    torch.testing.assert_close(deepest, deep)
    # LNorm(shallow, 1x1) = shallow / 3, times the deep map upsampled (constant 4).
    torch.testing.assert_close(composite, shallow / 3 * 4)


def test_backward_recursion_three_layers_and_relu() -> None:
    s1 = torch.tensor([[[[1.0, 3.0, 0.0, 0.0]]]])  # 1 x 4
    s2 = torch.tensor([[[[2.0, 0.0]]]])  # 1 x 2
    s3 = torch.tensor([[[[-1.0]]]])  # 1 x 1, negative: the relu zeroes everything below
    stages = backward_recursion([s1, s2, s3])
    assert [tuple(s.shape[-2:]) for s in stages] == [(1, 1), (1, 2), (1, 4)]
    assert all(float(s.abs().max()) == 0 for s in stages)

    stages = backward_recursion([s1, s2, torch.tensor([[[[2.0]]]])])
    # Down(s2, 1x1) = 1 -> LNorm = [2, 0]; times 2 -> M2 = [4, 0].
    torch.testing.assert_close(stages[1], torch.tensor([[[[4.0, 0.0]]]]))
    # Down(s1, 1x2) = [2, 0] -> Up to 4 = [2, 1.5, 0.5, 0] -> LNorm = [0.5, 2, 0, 0];
    # Up(M2, 4) = [4, 3, 1, 0] -> M1 = [2, 6, 0, 0].
    torch.testing.assert_close(stages[2], torch.tensor([[[[2.0, 6.0, 0.0, 0.0]]]]))


def test_backward_recursion_without_local_normalisation_by_hand() -> None:
    s1 = torch.tensor([[[[1.0, 3.0, 0.0, 0.0]]]])  # 1 x 4
    s2 = torch.tensor([[[[2.0, 0.0]]]])  # 1 x 2
    s3 = torch.tensor([[[[2.0]]]])  # 1 x 1
    stages = backward_recursion([s1, s2, s3], local_normalisation=False)
    # M2 = s2 * Up(M3) = [4, 0]; Up(M2, 4) = [4, 3, 1, 0] -> M1 = [4, 9, 0, 0].
    torch.testing.assert_close(stages[1], torch.tensor([[[[4.0, 0.0]]]]))
    torch.testing.assert_close(stages[2], torch.tensor([[[[4.0, 9.0, 0.0, 0.0]]]]))
