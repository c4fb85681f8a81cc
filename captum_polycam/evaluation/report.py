"""The final artefacts of an evaluation, in the paper's layout, and the summary read back.

``OUT/npz/{model}_{method}.npz`` holds one ``H x W`` float32 map in ``[0, 1]`` per image,
keyed by the file name; ``OUT/csv/`` the per-image areas and per-step scores of insertion
and deletion (``ins_auc``, ``del_auc``, ``ins_details``, ``del_details``) and every other
per-image value (``scores``); ``summary.csv`` and ``summary.md`` the dataset statistics;
``curves.png`` the mean curves; ``errors.csv`` the images that could not be read.
:func:`~captum_polycam.evaluation.html.write_html_report` then draws ``report.html`` and its
``overlays/`` from them.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from captum_polycam.evaluation.artefacts import npz_writer, write_bytes, write_csv
from captum_polycam.evaluation.methods import method_file_stem
from captum_polycam.metrics.keys import (
    AVERAGE_DROP,
    DELETION,
    DELETION_CURVE,
    INCREASE_IN_CONFIDENCE,
    INSERTION,
    INSERTION_CURVE,
    INSERTION_MINUS_DELETION,
    SCORE_DIRECTIONS,
    SENSITIVITY_MAX,
)
from captum_polycam.metrics.summary import MetricSummary, Statistic

__all__ = ["ERRORS_FILE", "METRICS", "Report", "write_errors", "write_report"]

ERRORS_FILE = "errors.csv"

# The summary's metrics, in the order of its columns, with their headings.
METRICS: dict[str, str] = {
    INSERTION: "insertion",
    DELETION: "deletion",
    INSERTION_MINUS_DELETION: "insertion - deletion",
    AVERAGE_DROP: "average drop (%)",
    INCREASE_IN_CONFIDENCE: "increase in confidence (%)",
    SENSITIVITY_MAX: "max-sensitivity",
}
_PER_IMAGE = (
    "clean_score",
    INSERTION,
    DELETION,
    AVERAGE_DROP,
    INCREASE_IN_CONFIDENCE,
    SENSITIVITY_MAX,
)


def _number(value: Any) -> str:
    # float32 values print with the fewest digits that read back to the same float32.
    return "" if math.isnan(value) else str(np.float32(value))


@dataclass(frozen=True)
class Report:
    """The summary of an evaluation: per method, a :class:`Statistic` per metric.

    Attributes:
        out: The run's folder.
        statistics: ``statistics[method][metric]``; a metric no image has (max-sensitivity
            without ``sensitivity_images``) is left out.
        markdown: ``summary.md``, the table the command line prints.
    """

    out: Path
    statistics: dict[str, dict[str, Statistic]]
    markdown: str

    @classmethod
    def read(cls, out: str | Path) -> Report:
        """Read the summary that a finished run wrote to ``out``."""
        out = Path(out)
        statistics: dict[str, dict[str, Statistic]] = {}
        with (out / "summary.csv").open(newline="") as file:
            for row in csv.DictReader(file):
                statistics.setdefault(row["method"], {})[row["metric"]] = Statistic(
                    float(row["mean"]),
                    float(row["std"]),
                    float(row["ci95_low"]),
                    float(row["ci95_high"]),
                    int(row["images"]),
                    SCORE_DIRECTIONS.get(row["metric"]),
                )
        return cls(out, statistics, (out / "summary.md").read_text())


class _MethodResults:
    """A method's per-image values but its maps, from its shards: ``results[key]`` holds the
    values of every image, in the shards' order."""

    def __init__(self, parts: Sequence[Mapping[str, np.ndarray]]) -> None:
        self.parts = parts

    def __getitem__(self, key: str) -> np.ndarray:
        return np.concatenate([part[key] for part in self.parts])


def _write_maps(path: Path, shards: Iterable[Mapping[str, np.ndarray]]) -> _MethodResults:
    """Write the maps of ``shards`` to the ``.npz`` at ``path``, keyed by image name, one
    shard in memory at a time; return their other values."""
    parts = []
    with npz_writer(path) as add:
        for shard in shards:
            for name, image_map in zip(shard["names"].tolist(), shard["maps"], strict=True):
                add(name, image_map)
            parts.append({key: value for key, value in shard.items() if key != "maps"})
    return _MethodResults(parts)


def write_report(
    out: Path,
    model: str,
    methods: list[tuple[str, Iterable[Mapping[str, np.ndarray]]]],
    n_steps: int,
) -> None:
    """Write every final artefact from each method's shards (in the image list's order)."""
    summaries: dict[str, MetricSummary] = {}
    curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    errors: list[tuple[str, str]] | None = None
    for method, shards in methods:
        stem = f"{model}_{method_file_stem(method)}"
        results = _write_maps(out / "npz" / f"{stem}.npz", shards)
        if errors is None:  # every method's shards record the same unreadable images
            errors = list(
                zip(
                    results["error_names"].tolist(), results["error_messages"].tolist(), strict=True
                )
            )
        _write_csvs(out / "csv", stem, results, n_steps)
        summaries[method] = _summary(results)
        if len(results["names"]):
            curves[method] = (
                results["fractions"][:n_steps],
                results[INSERTION_CURVE].mean(0),
                results[DELETION_CURVE].mean(0),
            )
    write_errors(out, errors or [])
    statistics = {method: summary.compute() for method, summary in summaries.items()}
    write_csv(
        out / "summary.csv",
        ("method", "metric", "better", "mean", "std", "ci95_low", "ci95_high", "images"),
        _summary_rows(statistics),
    )
    write_bytes(out / "summary.md", _markdown(statistics, len(errors or [])).encode())
    if curves:
        _plot_curves(out / "curves.png", curves)


def write_errors(out: Path, errors: Sequence[tuple[str, str]]) -> None:
    """Write ``OUT/errors.csv``: each image that could not be read, and why."""
    write_csv(out / ERRORS_FILE, ("image", "error"), errors)


def _write_csvs(folder: Path, stem: str, results: _MethodResults, n_steps: int) -> None:
    names, targets = results["names"].tolist(), results["targets"].tolist()
    steps = [f"step_{k}" for k in range(1, n_steps + 1)]
    for short, kind in (("ins", INSERTION), ("del", DELETION)):
        areas = results[kind].tolist()
        write_csv(
            folder / f"{short}_auc_{stem}.csv",
            ("image", "target", "auc"),
            ([n, t, _number(a)] for n, t, a in zip(names, targets, areas, strict=True)),
        )
        details = results[f"{kind}_curve"]
        write_csv(
            folder / f"{short}_details_{stem}.csv",
            ("image", "target", *steps),
            ([n, t, *map(_number, row)] for n, t, row in zip(names, targets, details, strict=True)),
        )
    columns = [results[key].tolist() for key in _PER_IMAGE]
    write_csv(
        folder / f"scores_{stem}.csv",
        ("image", "target", *_PER_IMAGE),
        (
            [n, t, *map(_number, values)]
            for n, t, *values in zip(names, targets, *columns, strict=True)
        ),
    )


def _summary(results: _MethodResults) -> MetricSummary:
    summary = MetricSummary()
    insertion = torch.from_numpy(results[INSERTION])
    deletion = torch.from_numpy(results[DELETION])
    summary.update(
        {
            INSERTION: insertion,
            DELETION: deletion,
            INSERTION_MINUS_DELETION: insertion - deletion,
            AVERAGE_DROP: torch.from_numpy(results[AVERAGE_DROP]),
            INCREASE_IN_CONFIDENCE: torch.from_numpy(results[INCREASE_IN_CONFIDENCE]),
        }
    )
    sensitivity = torch.from_numpy(results[SENSITIVITY_MAX])
    sensitivity = sensitivity[~sensitivity.isnan()]
    if len(sensitivity):
        summary.update({SENSITIVITY_MAX: sensitivity})
    return summary


def _summary_rows(statistics: dict[str, dict[str, Any]]) -> Iterator[list[Any]]:
    for method, values in statistics.items():
        for metric in METRICS:
            if metric in values:
                s = values[metric]
                yield [
                    method,
                    metric,
                    SCORE_DIRECTIONS[metric].value,
                    *map(_number, (s.mean, s.std, s.ci_low, s.ci_high)),
                    s.count,
                ]


def _half_width(statistic: Statistic) -> str:
    # One image has no spread to estimate an interval from: 0.0000 would claim certainty.
    if statistic.count < 2:
        return "n/a"
    return f"{(statistic.ci_high - statistic.ci_low) / 2:.4f}"


def _markdown(statistics: dict[str, dict[str, Any]], errors: int) -> str:
    shown = [m for m in METRICS if any(m in values for values in statistics.values())]
    arrows = {"higher": "↑", "lower": "↓"}
    heads = [f"{METRICS[m]} {arrows[SCORE_DIRECTIONS[m].value]}" for m in shown]
    lines = ["| method | " + " | ".join(heads) + " | images |", "|---" * (len(shown) + 2) + "|"]
    for method, values in statistics.items():
        cells = []
        for metric in shown:
            s = values.get(metric)
            cells.append("-" if s is None else f"{s.mean:.4f} ± {_half_width(s)}")
        count = values[INSERTION].count
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {count} |")
    note = (
        "\nMean ± half-width of the 95% confidence interval (normal approximation) over "
        "the images; ↑ higher is better, ↓ lower is better."
    )
    if SENSITIVITY_MAX in shown:
        note += " Max-sensitivity is over the first images only (see summary.csv)."
    if errors:
        note += f" {errors} image(s) could not be read (errors.csv)."
    return "\n".join(lines) + "\n" + note + "\n"


def _plot_curves(path: Path, curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    # A bare Figure draws with Agg whatever pyplot's backend: no window, no global state.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    insertion_axes, deletion_axes = figure.subplots(1, 2, sharey=True)
    for method, (fractions, insertion, deletion) in curves.items():
        insertion_axes.plot(fractions, insertion, label=f"{method} ({insertion.mean():.3f})")
        deletion_axes.plot(fractions, deletion, label=f"{method} ({deletion.mean():.3f})")
    for axes, kind, moved in (
        (insertion_axes, "insertion", "inserted"),
        (deletion_axes, "deletion", "deleted"),
    ):
        axes.set(
            title=f"mean {kind} curve (area)",
            xlabel=f"fraction of pixels {moved}",
            xlim=(0, 1),
            ylim=(0, None),
        )
        axes.legend(fontsize="small")
    insertion_axes.set_ylabel("probability of the target")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    write_bytes(path, buffer.getvalue())
