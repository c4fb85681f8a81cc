"""Drawing insertion and deletion curves with matplotlib."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from captum_polycam.metrics.insertion_deletion import InsertionDeletionResult
from captum_polycam.metrics.keys import DELETION, DELETION_CURVE, INSERTION, INSERTION_CURVE
from captum_polycam.metrics.summary import MeanCurve

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["plot_insertion_deletion"]


def plot_insertion_deletion(
    result: InsertionDeletionResult | Mapping[str, Any],
    index: int | None = 0,
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """Draw the insertion and deletion curves against the fraction of pixels moved, with
    their areas in the legend.

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
        pick = slice(None) if index is None else slice(index, index + 1)
        curves = {
            one.kind: (one.fractions, one.curve[pick].mean(dim=0), float(one.auc[pick].mean()))
            for one in (result.insertion, result.deletion)
        }
    elif isinstance(result, Mapping) and isinstance(result.get(INSERTION_CURVE), MeanCurve):
        curves = {}
        for kind, key in ((INSERTION, INSERTION_CURVE), (DELETION, DELETION_CURVE)):
            mean_curve: MeanCurve = result[key]
            if mean_curve.fractions is None:
                raise ValueError(
                    f"result[{key!r}] has no fractions: update the summary with the metric's "
                    "results (CurveResult or InsertionDeletionResult), not bare tensors"
                )
            curves[kind] = (mean_curve.fractions, mean_curve.mean, result[kind].mean)
    else:
        raise TypeError(
            "result must be an InsertionDeletionResult or MetricSummary.compute()'s dictionary"
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    for kind, (fractions, curve, area) in curves.items():
        ax.plot(
            fractions.detach().cpu().numpy(),
            curve.detach().cpu().numpy(),
            label=f"{kind} (AUC {area:.3f})",
        )
    ax.set_xlabel("fraction of pixels inserted or deleted")
    ax.set_ylabel("score of the target")
    ax.set_xlim(0, 1)
    ax.legend()
    if title:
        ax.set_title(title)
    return ax
