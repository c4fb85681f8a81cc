"""Dataset statistics and the curve plot."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from matplotlib import pyplot as plt
from torch import Tensor, nn

from captum_polycam.metrics import (
    Deletion,
    Insertion,
    InsertionDeletion,
    MetricSummary,
    ScoreDirection,
    plot_insertion_deletion,
)


class Sum(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        total = x.sum(dim=(1, 2, 3))
        return torch.stack([total, torch.zeros_like(total)], dim=1)


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
    metric = InsertionDeletion(Sum(), n_steps=4, baseline="zeros", score_fn="logit")
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
    torch.testing.assert_close(result["insertion_curve"].fractions,
                               torch.tensor([0.25, 0.5, 0.75, 1.0]))  # fmt: skip

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
    metric = InsertionDeletion(Sum(), n_steps=3, baseline="zeros", score_fn="logit",
                               auc="trapezoid")  # fmt: skip
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
    summary.update(Insertion(Sum(), **options)(x, x, 0))
    summary.update(Deletion(Sum(), **options)(x, x, 0))
    stats = summary.compute()
    assert stats["insertion"].mean == pytest.approx(7.5)
    assert stats["deletion"].mean == pytest.approx(2.5)
    assert stats["deletion_curve"].fractions.tolist() == [0.25, 0.5, 0.75, 1.0]


def test_curves_of_different_protocols_are_not_mixed() -> None:
    x = torch.tensor([[[[4.0, 3.0], [2.0, 1.0]]]])
    summary = MetricSummary()
    summary.update(InsertionDeletion(Sum(), n_steps=4, baseline="zeros")(x, x, 0))
    with pytest.raises(ValueError, match="insertion_curve: the curves' steps"):
        summary.update(InsertionDeletion(Sum(), n_steps=2, baseline="zeros")(x, x, 0))


def test_plot_needs_fractions() -> None:
    summary = MetricSummary()
    curve = torch.ones(1, 3)
    summary.update({"insertion": torch.ones(1), "deletion": torch.ones(1),
                    "insertion_curve": curve, "deletion_curve": curve})  # fmt: skip
    with pytest.raises(ValueError, match="has no fractions"):
        plot_insertion_deletion(summary.compute())
