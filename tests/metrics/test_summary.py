"""Dataset statistics and the curve plot."""

from __future__ import annotations

import math
import warnings

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from matplotlib import pyplot as plt
from torch import Tensor, nn

from captum_polycam.metrics import (
    BoxAccuracy,
    ConfidenceChange,
    CurveResult,
    Deletion,
    Insertion,
    InsertionDeletion,
    MeanCurve,
    MetricSummary,
    ScoreDirection,
    Sensitivity,
    Statistic,
    plot_insertion_deletion,
)
from tests.conftest import SumModel
from tests.metrics.nd_models import TotalModel


def test_statistics_by_hand() -> None:
    summary = MetricSummary()
    summary.update(
        {"drop": torch.tensor([1.0, 2.0]), "curve": torch.tensor([[0.0, 1.0], [2.0, 3.0]])}
    )
    summary.update(
        {"drop": torch.tensor([3.0, 6.0]), "curve": torch.tensor([[4.0, 5.0], [6.0, 7.0]])}
    )
    result = summary.compute()
    drop = result["drop"]
    # Values 1, 2, 3, 6: mean 3, sample variance (4 + 1 + 0 + 9) / 3.
    std = math.sqrt(14 / 3)
    assert drop.mean == pytest.approx(3.0) and drop.std == pytest.approx(std)
    assert drop.ci_low == pytest.approx(3 - 1.959964 * std / 2, abs=1e-6)
    assert drop.ci_high == pytest.approx(3 + 1.959964 * std / 2, abs=1e-6)
    assert drop.count == 4 and len(summary) == 4
    curve = result["curve"]
    torch.testing.assert_close(curve.mean, torch.tensor([3.0, 4.0], dtype=torch.float64))
    assert curve.fractions is None and curve.count == 4
    assert drop.direction is None  # not one of the metrics' keys
    assert "95% CI" in str(drop)
    summary.reset()
    assert summary.compute() == {} and len(summary) == 0


def test_single_example_has_zero_spread() -> None:
    summary = MetricSummary()
    summary.update({"auc": torch.tensor([0.5])})
    statistic = summary.compute()["auc"]
    assert (statistic.mean, statistic.std, statistic.ci_low, statistic.ci_high) == (
        0.5,
        0,
        0.5,
        0.5,
    )


def test_update_rejects_mismatched_sizes() -> None:
    with pytest.raises(ValueError, match="one entry per example"):
        MetricSummary().update({"a": torch.ones(2), "b": torch.ones(3)})
    with pytest.raises(TypeError, match="mapping"):
        MetricSummary().update([1, 2])  # type: ignore[arg-type]


def test_summary_of_insertion_deletion_results_and_plots() -> None:
    metric = InsertionDeletion(SumModel(), n_steps=4, baseline="zeros", score_fn="logit")
    x = torch.tensor([[[[4.0, 3.0], [2.0, 1.0]]]])
    summary = MetricSummary()
    summary.update(metric(x, x, 0))  # insertion 7.5, deletion 2.5
    summary.update(metric(x, -x, 0))  # insertion 5, deletion 5
    result = summary.compute()
    assert result["insertion"].mean == pytest.approx(6.25)
    assert result["deletion"].mean == pytest.approx(3.75)
    assert result["insertion_minus_deletion"].mean == pytest.approx(2.5)
    assert result["insertion"].direction is ScoreDirection.HIGHER
    assert result["deletion"].direction is ScoreDirection.LOWER
    assert "higher is better" in str(result["insertion"])
    expected = torch.tensor([2.5, 5.0, 7.5, 10.0], dtype=torch.float64)
    torch.testing.assert_close(result["insertion_curve"].mean, expected)
    torch.testing.assert_close(
        result["insertion_curve"].fractions, torch.tensor([0.25, 0.5, 0.75, 1.0])
    )

    axis = plot_insertion_deletion(result, title="dataset")
    labels = [line.get_label() for line in axis.get_lines()]
    assert labels == ["insertion (AUC 6.250)", "deletion (AUC 3.750)"]
    assert list(axis.get_lines()[0].get_ydata()) == [2.5, 5.0, 7.5, 10.0]
    plt.close(axis.figure)

    batch = metric(torch.cat([x, x]), torch.cat([x, -x]), 0)
    axis = plot_insertion_deletion(batch, index=1)
    assert axis.get_lines()[0].get_label() == "insertion (AUC 5.000)"
    assert axis.get_title() == ""
    plt.close(axis.figure)
    axis = plot_insertion_deletion(batch, index=None)
    assert axis.get_lines()[1].get_label() == "deletion (AUC 3.750)"
    plt.close(axis.figure)
    with pytest.raises(TypeError, match="InsertionDeletionResult"):
        plot_insertion_deletion({"auc": 1})


def test_plot_uses_the_curves_fractions_for_trapezoid_and_uneven_steps() -> None:
    # 3 steps over 4 pixels: 2 pixels per step, so the steps move 0, 2, 4 and 4 pixels
    # (trapezoid includes the empty state); the x-axis is not arange(1, S + 1) / S.
    x = torch.tensor([[[[4.0, 3.0], [2.0, 1.0]]]])
    metric = InsertionDeletion(
        SumModel(), n_steps=3, baseline="zeros", score_fn="logit", auc="trapezoid"
    )
    summary = MetricSummary()
    summary.update(metric(x, x, 0))
    stats = summary.compute()
    expected = [0.0, 0.5, 1.0, 1.0]
    assert stats["insertion_curve"].fractions.tolist() == expected
    axis = plot_insertion_deletion(stats)
    assert list(axis.get_lines()[0].get_xdata()) == expected
    plt.close(axis.figure)


def test_single_curves_summarise_under_the_same_keys() -> None:
    x = torch.tensor([[[[4.0, 3.0], [2.0, 1.0]]]])
    options = {"n_steps": 4, "baseline": "zeros", "score_fn": "logit"}
    summary = MetricSummary()
    summary.update(Insertion(SumModel(), **options)(x, x, 0))
    summary.update(Deletion(SumModel(), **options)(x, x, 0))
    stats = summary.compute()
    assert stats["insertion"].mean == pytest.approx(7.5)
    assert stats["deletion"].mean == pytest.approx(2.5)
    assert stats["deletion_curve"].fractions.tolist() == [0.25, 0.5, 0.75, 1.0]


X = torch.tensor([[[[4.0, 3.0], [2.0, 1.0]]]])


def _snapshot(summary: MetricSummary) -> dict:
    return {
        name: (torch.as_tensor(v.mean).tolist(), v.count) for name, v in summary.compute().items()
    }


def test_curves_of_different_protocols_are_not_mixed() -> None:
    summary = MetricSummary()
    summary.update(InsertionDeletion(SumModel(), n_steps=4, baseline="zeros")(X, X, 0))
    with pytest.raises(
        ValueError,
        match=r"^insertion: the protocol differs from the earlier "
        r"batches' in n_steps \(4 then 2\); ",
    ):
        summary.update(InsertionDeletion(SumModel(), n_steps=2, baseline="zeros")(X, X, 0))


def test_baseline_and_score_function_are_part_of_the_protocol() -> None:
    blur = InsertionDeletion(SumModel(), n_steps=4, blur_kernel_size=3)  # softmax by default
    zeros = InsertionDeletion(SumModel(), n_steps=4, baseline="zeros", score_fn="logit")
    summary = MetricSummary()
    summary.update(blur(X, X, 0))
    before = _snapshot(summary)
    with pytest.raises(
        ValueError,
        match=r"in baseline \('blur' then 'zeros'\), "
        r"blur_kernel_size \(3 then not given\), "
        r"blur_sigma \(5\.0 then not given\), "
        r"score_fn \('softmax' then 'logit'\)",
    ):
        summary.update(zeros(X, X, 0))
    with pytest.raises(
        ValueError,
        match=r"^deletion: .* in score_fn \('softmax' then 'logit'\); "
        r"summarise each protocol in its own MetricSummary$",
    ):
        summary.update(
            Deletion(SumModel(), n_steps=4, blur_kernel_size=3, score_fn="logit")(X, X, 0)
        )
    with pytest.raises(ValueError, match=r"in blur_sigma \(5\.0 then 1\.0\)"):
        summary.update(
            InsertionDeletion(SumModel(), n_steps=4, blur_kernel_size=3, blur_sigma=1.0)(X, X, 0)
        )
    assert _snapshot(summary) == before  # a refused batch leaves nothing behind
    # The same protocol from another metric object, or from a single curve, is welcome.
    summary.update(InsertionDeletion(SumModel(), n_steps=4, blur_kernel_size=3)(X, -X, 0))
    summary.update(Insertion(SumModel(), n_steps=4, blur_kernel_size=3)(X, X, 0))
    assert summary.compute()["insertion"].count == 3
    assert summary.compute()["deletion"].count == 2
    assert summary.protocols["insertion_curve"] == {
        "n_steps": 4,
        "baseline": "blur",
        "blur_kernel_size": 3,
        "blur_sigma": 5.0,
        "score_fn": "softmax",
        "auc": "mean",
        "channel_reduction": "sum",
        "precision": "fp32",
    }
    assert summary.protocols["insertion_minus_deletion"] == summary.protocols["deletion"]


@pytest.mark.filterwarnings("ignore:precision='bf16' runs")
@pytest.mark.parametrize(
    ("first", "second", "differs"),
    [
        ({"auc": "mean"}, {"auc": "trapezoid"}, r"auc \('mean' then 'trapezoid'\)"),
        ({}, {"precision": "bf16"}, r"precision \('fp32' then 'bf16'\)"),
        ({}, {"channel_reduction": "abs_sum"}, r"channel_reduction \('sum' then 'abs_sum'\)"),
    ],
)
def test_other_settings_of_the_curves_are_part_of_the_protocol(first, second, differs) -> None:
    options = {"n_steps": 4, "baseline": "zeros", "score_fn": "logit"}
    summary = MetricSummary()
    summary.update(InsertionDeletion(SumModel(), **options, **first)(X, X, 0))
    with pytest.raises(ValueError, match=differs):
        summary.update(InsertionDeletion(SumModel(), **options, **second)(X, X, 0))


def test_batching_settings_are_not_part_of_the_protocol() -> None:
    options = {"n_steps": 4, "baseline": "zeros", "score_fn": "logit"}
    summary = MetricSummary()
    summary.update(InsertionDeletion(SumModel(), **options)(X, X, 0))
    summary.update(InsertionDeletion(SumModel(), **options, perturbations_per_eval=1)(X, X, 0))
    assert len(summary) == 2


def test_confidence_and_sensitivity_protocols_are_checked() -> None:
    summary = MetricSummary()
    summary.update(ConfidenceChange(SumModel())(X, X, 0))
    with pytest.raises(
        ValueError,
        match=r"^average_drop: .* in score_fn \('softmax' then "
        r"'logit'\)",
    ):
        summary.update(ConfidenceChange(SumModel(), score_fn="logit")(X, X, 0))
    inputs = torch.rand(2, 3) + 1
    summary.update(Sensitivity(lambda x: x, n_perturb_samples=2)(inputs))
    with pytest.raises(
        ValueError,
        match=r"^sensitivity_max: .* in perturb_radius "
        r"\(0\.02 then 0\.1\)",
    ):
        summary.update(Sensitivity(lambda x: x, n_perturb_samples=2, perturb_radius=0.1)(inputs))
    # Different metrics under different keys share a summary, each with its own protocol.
    summary.update(InsertionDeletion(SumModel(), n_steps=4, baseline="zeros")(X, X, 0))
    assert set(summary.compute()) >= {"average_drop", "sensitivity_max", "insertion"}


def test_bare_values_do_not_join_results_of_a_protocol() -> None:
    summary = MetricSummary()
    summary.update(ConfidenceChange(SumModel())(X, X, 0))
    with pytest.raises(
        ValueError,
        match=r"average_drop: .* in score_fn \('softmax' then not "
        r"given\), .*bare tensors carry none",
    ):
        summary.update({"average_drop": torch.tensor([10.0])})
    bare = MetricSummary()
    bare.update({"average_drop": torch.tensor([10.0])})
    bare.update({"average_drop": torch.tensor([20.0])})
    assert bare.compute()["average_drop"].mean == pytest.approx(15.0)
    assert bare.protocols == {"average_drop": {}}
    with pytest.raises(
        ValueError,
        match=r"^average_drop: .* in score_fn \(not given then "
        r"'softmax'\), .*bare tensors carry none",
    ):
        bare.update(ConfidenceChange(SumModel())(X, X, 0))


def test_curves_of_another_length_are_refused_at_update() -> None:
    summary = MetricSummary()
    summary.update({"curve": torch.ones(2, 10), "auc": torch.ones(2)})
    before = _snapshot(summary)
    with pytest.raises(
        ValueError,
        match=r"^curve: each example's value has shape \(20,\) here "
        r"and \(10,\) in the earlier batches",
    ):
        summary.update({"curve": torch.ones(2, 20), "auc": torch.ones(2)})
    with pytest.raises(
        ValueError,
        match=r"^auc: each example's value has shape \(3,\) here "
        r"and \(\) in the earlier batches",
    ):
        summary.update({"auc": torch.ones(2, 3)})
    with pytest.raises(
        ValueError,
        match=r"^curve: values must be \(N,\) per-example values or "
        r"\(N, S\) curves; got shape \(2, 10, 1\)",
    ):
        summary.update({"curve": torch.ones(2, 10, 1)})
    with pytest.raises(ValueError, match=r"^auc: values must be .*; got shape \(\)"):
        summary.update({"auc": torch.tensor(1.0)})
    assert _snapshot(summary) == before


def test_insertion_results_of_10_then_20_steps_are_refused() -> None:
    image = torch.rand(1, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    options = {"baseline": "zeros", "score_fn": "logit"}
    summary = MetricSummary()
    summary.update(Insertion(SumModel(), n_steps=10, **options)(image, image, 0))
    with pytest.raises(ValueError, match=r"^insertion: .* in n_steps \(10 then 20\)"):
        summary.update(Insertion(SumModel(), n_steps=20, **options)(image, image, 0))
    # Same protocol, but a 5 x 5 image moves 3 pixels per step and a 4 x 4 one 2: other steps.
    with pytest.raises(ValueError, match=r"^insertion_curve: the curves' steps \(fractions\)"):
        summary.update(Insertion(SumModel(), n_steps=10, **options)(image[..., :4, :4], image, 0))
    # A curve built by hand, with no protocol, says so.
    result = Insertion(SumModel(), n_steps=10, **options)(image, image, 0)
    bare = CurveResult("insertion", result.auc, result.curve, result.fractions)
    with pytest.raises(ValueError, match=r"n_steps \(10 then not given\)"):
        summary.update(bare)


def test_compute_after_empty_batches_gives_nan_with_a_warning() -> None:
    summary = MetricSummary()
    summary.update({"drop": torch.zeros(0), "curve": torch.zeros(0, 3)})
    with pytest.warns(
        UserWarning,
        match=r"no examples for 'drop', 'curve': their statistics "
        r"are NaN",
    ):
        result = summary.compute()
    drop, curve = result["drop"], result["curve"]
    assert isinstance(drop, Statistic) and isinstance(curve, MeanCurve)
    assert drop.count == 0 and curve.count == 0 and len(summary) == 0
    assert all(math.isnan(v) for v in (drop.mean, drop.std, drop.ci_low, drop.ci_high))
    assert curve.mean.shape == (3,) and bool(curve.mean.isnan().all())
    # Examples that come later are summarised as usual, with no warning.
    summary.update({"drop": torch.tensor([1.0, 3.0]), "curve": torch.ones(2, 3)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert summary.compute()["drop"].mean == 2.0


def test_plot_needs_fractions() -> None:
    summary = MetricSummary()
    curve = torch.ones(1, 3)
    summary.update(
        {
            "insertion": torch.ones(1),
            "deletion": torch.ones(1),
            "insertion_curve": curve,
            "deletion_curve": curve,
        }
    )
    with pytest.raises(ValueError, match="has no fractions"):
        plot_insertion_deletion(summary.compute())


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (
            {"drop": torch.tensor([3.0, math.nan]), "auc": torch.ones(2)},
            "drop: the value of example 1 of the batch (example 3 of the summary's 'drop') is nan",
        ),
        (
            {"drop": torch.tensor([-math.inf, 1.0])},
            "drop: the value of example 0 of the batch (example 2 of the summary's 'drop') is -inf",
        ),
        (
            {"drop": torch.ones(2), "curve": torch.tensor([[0.0, 1.0], [math.inf, math.nan]])},
            "curve: the value of example 1 of the batch (example 1 of the summary's 'curve') "
            "is inf",
        ),
    ],
)
def test_non_finite_values_are_refused_at_update(batch: dict, message: str) -> None:
    summary = MetricSummary()
    summary.update({"drop": torch.tensor([1.0, 2.0])})
    with pytest.raises(ValueError) as raised:
        summary.update(batch)
    assert str(raised.value) == (
        f"{message}; MetricSummary averages finite values only: leave the example out, or "
        "find why its metric is not finite"
    )
    # The batch is refused whole: the statistics are those of the first batch alone.
    result = summary.compute()
    assert set(result) == {"drop"} and result["drop"].mean == 1.5 and result["drop"].count == 2


class ShiftedSum(nn.Module):
    """logits = [sum(x) - 10, 0]: a score that is negative on small images."""

    def forward(self, x: Tensor) -> Tensor:
        total = x.sum(dim=(1, 2, 3)) - 10.0
        return torch.stack([total, torch.zeros_like(total)], dim=1)


def test_a_drop_relative_to_a_negative_score_is_refused() -> None:
    # Y = 4 - 10 = -6; the mask of the map [4, 3, 2, 1] is [1, 2/3, 1/3, 0], so O = 2 - 10 = -8:
    # O < Y <= 0, where the relative drop is NaN.
    ones = torch.ones(1, 1, 2, 2)
    saliency = torch.tensor([[[[4.0, 3.0], [2.0, 1.0]]]])
    result = ConfidenceChange(ShiftedSum(), score_fn="logit")(ones, saliency, 0)
    assert result.clean.tolist() == [-6.0] and result.masked.tolist() == [-8.0]
    with pytest.raises(ValueError, match=r"^average_drop: the value of example 0 .* is nan;"):
        MetricSummary().update(result)


def test_summary_of_volume_results_by_hand() -> None:
    # Insertion/deletion of the 2 x 2 x 2 volume of voxels 1 .. 8, ranked by itself and by its
    # opposite, then the box accuracy of two volume maps: results of N-D runs go in as any.
    volume = torch.arange(1.0, 9.0).view(1, 1, 2, 2, 2)
    metric = InsertionDeletion(TotalModel(), n_steps=4, baseline="zeros", score_fn="logit")
    summary = MetricSummary()
    summary.update(metric(volume, volume, 0))  # insertion 15, 26, 33, 36: mean 27.5
    summary.update(metric(volume, -volume, 0))  # insertion 3, 10, 21, 36: mean 17.5
    maps = torch.zeros(2, 1, 2, 3, 3)
    maps[0, 0, 0, 0, 0] = 1.0  # boxes (0, 0, 0, 1, 1, 1) at both thresholds
    maps[1, 0, :, 1:, 1:] = 1.0  # (1, 1, 0, 3, 3, 2)
    maps[1, 0, 1, 2, 2] = 2.0  # ... and at t = 0.6 (1, 2, 2), the box (2, 2, 1, 3, 3, 2)
    boxes = [[[0, 0, 0, 1, 1, 1]], [[2, 2, 1, 3, 3, 2]]]
    summary.update(BoxAccuracy(thresholds=[0.4, 0.6])(maps, boxes=boxes))
    result = summary.compute()
    assert result["insertion"].mean == pytest.approx(22.5)
    assert result["deletion"].mean == pytest.approx(36 - 22.5)
    torch.testing.assert_close(
        result["insertion_curve"].mean,
        torch.tensor([9.0, 18.0, 27.0, 36.0], dtype=torch.float64),
    )
    torch.testing.assert_close(result["insertion_curve"].fractions, torch.arange(1, 5) / 4)
    # Example 1's box at t = 0.4 holds 8 voxels, 1 of them the object's: IoU 1/8, a miss.
    torch.testing.assert_close(
        result["box_accuracy"].mean, torch.tensor([0.5, 1.0], dtype=torch.float64)
    )
    assert result["box_accuracy"].count == 2
