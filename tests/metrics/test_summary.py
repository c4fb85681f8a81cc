"""Dataset statistics and the curve plot."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from matplotlib import pyplot as plt
from torch import Tensor, nn

from captum_polycam.metrics import InsertionDeletion, MetricSummary, plot_insertion_deletion


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
    torch.testing.assert_close(result["curve"], torch.tensor([3.0, 4.0], dtype=torch.float64))
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
    assert result["insertion - deletion"].mean == pytest.approx(2.5)
    expected = torch.tensor([2.5, 5.0, 7.5, 10.0], dtype=torch.float64)
    torch.testing.assert_close(result["insertion curve"], expected)

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
