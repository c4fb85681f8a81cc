"""Drawing insertion and deletion curves with matplotlib."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from captum_polycam.metrics.insertion_deletion import InsertionDeletionResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["plot_insertion_deletion"]


def plot_insertion_deletion(
    result: InsertionDeletionResult | Mapping[str, Any],
    index: int | None = 0,
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """Draw the insertion and deletion curves, with their areas in the legend.

    Args:
        result: An :class:`InsertionDeletionResult` (one batch), or the dictionary that
            :meth:`MetricSummary.compute` returns after updates with such results (the
            dataset's mean curves and mean areas).
        index: With a batch result, the example to draw; ``None`` draws the batch mean.
        ax: Axes to draw on; a new figure's by default.
        title: Axes title.

    Returns:
        The axes.
    """
    from matplotlib import pyplot as plt

    if isinstance(result, InsertionDeletionResult):
        fractions = result.insertion.fractions.cpu()
        curves = {}
        for name, curve in (("insertion", result.insertion), ("deletion", result.deletion)):
            pick = slice(None) if index is None else slice(index, index + 1)
            curves[name] = (curve.curve[pick].mean(dim=0).cpu(), float(curve.auc[pick].mean()))
    elif isinstance(result, Mapping) and "insertion curve" in result:
        steps = len(result["insertion curve"])
        fractions = torch.arange(1, steps + 1) / steps
        curves = {
            name: (result[f"{name} curve"], result[name].mean) for name in ("insertion", "deletion")
        }
    else:
        raise TypeError(
            "result must be an InsertionDeletionResult or MetricSummary.compute()'s dictionary"
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    for name, (curve, area) in curves.items():
        ax.plot(fractions.numpy(), curve.numpy(), label=f"{name} (AUC {area:.3f})")
    ax.set_xlabel("fraction of pixels inserted or deleted")
    ax.set_ylabel("score of the target")
    ax.set_xlim(0, 1)
    ax.legend()
    if title:
        ax.set_title(title)
    return ax
