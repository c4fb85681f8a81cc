"""The final artefacts of an evaluation, in the paper's layout, and the summary read back.

``OUT/npz/{model}_{method}.npz`` holds one ``H x W`` float32 map in ``[0, 1]`` per image
(``D x H x W`` per scan), keyed by the file name; ``OUT/csv/`` the per-image areas and per-step
scores of insertion and deletion (``ins_auc``, ``del_auc``, ``ins_details``, ``del_details``) and
every other per-image value (``scores``); ``summary.csv`` and ``summary.md`` the dataset
statistics; ``curves.png`` the mean curves; ``errors.csv`` the images that could not be read. A
run with ground truth adds the localisation values to ``scores``, the boxes each image was
measured against (``csv/ground_truth_{model}.csv``, in the input's frame) and the box accuracy
at every threshold (``csv/box_accuracy_{model}.csv``), and the centre prior's row to the
summary. :func:`~captum_polycam.evaluation.html.write_html_report` then draws ``report.html``
and its ``overlays/`` from them.
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
from captum_polycam.evaluation.methods import FIDELITY, method_file_stem
from captum_polycam.metrics.keys import (
    AVERAGE_DROP,
    BOX_ACCURACY,
    DELETION,
    DELETION_CURVE,
    ENERGY_POINTING_GAME,
    INCREASE_IN_CONFIDENCE,
    INSERTION,
    INSERTION_CURVE,
    INSERTION_MINUS_DELETION,
    POINTING_GAME,
    SCORE_DIRECTIONS,
    SENSITIVITY_MAX,
)
from captum_polycam.metrics.localisation import best_threshold
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
    POINTING_GAME: "pointing game",
    ENERGY_POINTING_GAME: "energy in ground truth",
    BOX_ACCURACY: "box accuracy",
}
# The metrics that need ground truth, and the name of the centre prior's row beside the
# methods in their table.
LOCALISATION = (POINTING_GAME, ENERGY_POINTING_GAME, BOX_ACCURACY)
PRIOR_ROW = "centre (prior)"
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

    def __contains__(self, key: str) -> bool:
        return bool(self.parts) and key in self.parts[0]


@dataclass(frozen=True)
class _BoxAccuracy:
    """A method's box accuracy over the run: at every threshold, and the best one's index
    (:func:`~captum_polycam.metrics.best_threshold`, Choe et al.'s MaxBoxAcc)."""

    thresholds: np.ndarray
    accuracy: np.ndarray  # (T,), NaN when no image has ground truth
    best: int

    @classmethod
    def of(cls, hits: np.ndarray, thresholds: np.ndarray) -> _BoxAccuracy:
        measured = hits[~np.isnan(hits).any(axis=1)]
        if not len(measured):
            return cls(thresholds, np.full(len(thresholds), np.nan), 0)
        accuracy = measured.mean(axis=0)
        return cls(thresholds, accuracy, best_threshold(accuracy, thresholds).index)

    def per_image(self, hits: np.ndarray) -> np.ndarray:
        """Each image's hit at the best threshold (NaN where it has no value)."""
        return hits[:, self.best]


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
    box_accuracy: dict[str, _BoxAccuracy] = {}
    first: _MethodResults | None = None
    for method, shards in methods:
        stem = f"{model}_{method_file_stem(method)}"
        results = _write_maps(out / "npz" / f"{stem}.npz", shards)
        if first is None:  # every method's shards record the same images and ground truth
            first = results
            errors = list(
                zip(
                    results["error_names"].tolist(), results["error_messages"].tolist(), strict=True
                )
            )
        if BOX_ACCURACY in results:
            box_accuracy[method] = _BoxAccuracy.of(
                results[BOX_ACCURACY], results.parts[0]["box_thresholds"]
            )
        _write_csvs(out / "csv", stem, results, n_steps, box_accuracy.get(method))
        summaries[method] = _summary(results, box_accuracy.get(method))
        if len(results["names"]):
            curves[method] = (
                results["fractions"][:n_steps],
                results[INSERTION_CURVE].mean(0),
                results[DELETION_CURVE].mean(0),
            )
    write_errors(out, errors or [])
    excluded = dropped = 0
    if first is not None and box_accuracy:
        if "centre" not in summaries:  # the prior, unless the run explained it as a method
            prior = _BoxAccuracy.of(
                first[f"prior_{BOX_ACCURACY}"], first.parts[0]["box_thresholds"]
            )
            box_accuracy[PRIOR_ROW] = prior
            summaries[PRIOR_ROW] = _localisation_summary(first, prior, prefix="prior_")
        excluded = _write_ground_truth(out / "csv", model, first)
        dropped = int(first["truth_dropped"].sum())
        _write_box_accuracy(out / "csv" / f"box_accuracy_{model}.csv", box_accuracy)
    statistics = {method: summary.compute() for method, summary in summaries.items()}
    write_csv(
        out / "summary.csv",
        ("method", "metric", "better", "mean", "std", "ci95_low", "ci95_high", "images"),
        _summary_rows(statistics),
    )
    markdown = _markdown(statistics, len(errors or []))
    if box_accuracy:
        markdown += _localisation_markdown(statistics, box_accuracy, excluded, dropped)
    write_bytes(out / "summary.md", markdown.encode())
    if curves:
        _plot_curves(out / "curves.png", curves)


def write_errors(out: Path, errors: Sequence[tuple[str, str]]) -> None:
    """Write ``OUT/errors.csv``: each image that could not be read, and why."""
    write_csv(out / ERRORS_FILE, ("image", "error"), errors)


def _write_csvs(
    folder: Path,
    stem: str,
    results: _MethodResults,
    n_steps: int,
    box_accuracy: _BoxAccuracy | None,
) -> None:
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
    keys = list(_PER_IMAGE)
    columns = [results[key].tolist() for key in keys]
    if box_accuracy is not None:
        keys += LOCALISATION
        columns += [
            results[POINTING_GAME].tolist(),
            results[ENERGY_POINTING_GAME].tolist(),
            box_accuracy.per_image(results[BOX_ACCURACY]).tolist(),
        ]
    # A budgeted Poly-CAM run's estimate of each map's Spearman correlation with the exact one.
    if FIDELITY in results and not np.isnan(results[FIDELITY]).all():
        keys.append(FIDELITY)
        columns.append(results[FIDELITY].tolist())
    write_csv(
        folder / f"scores_{stem}.csv",
        ("image", "target", *keys),
        (
            [n, t, *map(_number, values)]
            for n, t, *values in zip(names, targets, *columns, strict=True)
        ),
    )


def _summary(results: _MethodResults, box_accuracy: _BoxAccuracy | None) -> MetricSummary:
    summary = (
        MetricSummary()
        if box_accuracy is None
        else _localisation_summary(results, box_accuracy, prefix="")
    )
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


def _localisation_summary(
    results: _MethodResults, box_accuracy: _BoxAccuracy, prefix: str
) -> MetricSummary:
    """The localisation statistics over the images that have a value: an image without
    ground truth for its class, or a constant map, is left out (and counted apart)."""
    summary = MetricSummary()
    per_image = {
        POINTING_GAME: results[f"{prefix}{POINTING_GAME}"],
        ENERGY_POINTING_GAME: results[f"{prefix}{ENERGY_POINTING_GAME}"],
        BOX_ACCURACY: box_accuracy.per_image(results[f"{prefix}{BOX_ACCURACY}"]),
    }
    for key, values in per_image.items():
        summary.update({key: torch.from_numpy(values[~np.isnan(values)].astype(np.float64))})
    return summary


def _write_ground_truth(folder: Path, model: str, results: _MethodResults) -> int:
    """Write the boxes each image was measured against, in the input's frame; return how many
    images were left out of the localisation for want of ground truth."""
    boxes = iter(results["truth_boxes"].tolist())
    notes = results["truth_notes"].tolist()
    rows = []
    for name, target, count, dropped, note in zip(
        results["names"].tolist(),
        results["targets"].tolist(),
        results["truth_box_counts"].tolist(),
        results["truth_dropped"].tolist(),
        notes,
        strict=True,
    ):
        shown = ";".join(" ".join(_number(v) for v in next(boxes)) for _ in range(count))
        rows.append([name, target, count, shown, dropped, note])
    write_csv(
        folder / f"ground_truth_{model}.csv",
        ("image", "target", "boxes", "x1 y1 x2 y2", "dropped", "excluded"),
        rows,
    )
    return sum(1 for note in notes if note)


def _write_box_accuracy(path: Path, box_accuracy: Mapping[str, _BoxAccuracy]) -> None:
    """Each method's box accuracy at every threshold of the map's maximum."""
    thresholds = next(iter(box_accuracy.values())).thresholds
    write_csv(
        path,
        ("threshold", *box_accuracy),
        (
            [_number(t), *(_number(a.accuracy[k]) for a in box_accuracy.values())]
            for k, t in enumerate(thresholds.tolist())
        ),
    )


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
    shown = [
        m
        for m in METRICS
        if m not in LOCALISATION and any(m in values for values in statistics.values())
    ]
    arrows = {"higher": "↑", "lower": "↓"}
    heads = [f"{METRICS[m]} {arrows[SCORE_DIRECTIONS[m].value]}" for m in shown]
    lines = ["| method | " + " | ".join(heads) + " | images |", "|---" * (len(shown) + 2) + "|"]
    for method, values in statistics.items():
        if method == PRIOR_ROW:
            continue
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


def _localisation_markdown(
    statistics: dict[str, dict[str, Any]],
    box_accuracy: Mapping[str, _BoxAccuracy],
    excluded: int,
    dropped: int,
) -> str:
    heads = [f"{METRICS[m]} ↑" for m in LOCALISATION]
    lines = [
        "\n| localisation | " + " | ".join(heads) + " | best threshold | images |",
        "|---" * (len(heads) + 3) + "|",
    ]
    for method, accuracy in box_accuracy.items():
        values = statistics[method]
        cells = [f"{values[m].mean:.4f} ± {_half_width(values[m])}" for m in LOCALISATION]
        threshold = f"{accuracy.thresholds[accuracy.best]:.2f}"
        count = values[BOX_ACCURACY].count
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {threshold} | {count} |")
    note = (
        "\nThe map's maximum within the tolerance of the ground truth (pointing game), the "
        "fraction of its mass inside it, and the box around the largest region above the best "
        "threshold of the maximum matching a box with IoU >= 0.5 (box accuracy, per method over "
        "all images). The centre prior is a centred Gaussian that ignores the image."
    )
    if excluded:
        note += (
            f" {excluded} image(s) have no ground truth for their class and are left out "
            "(csv/ground_truth_*.csv says why)."
        )
    if dropped:
        note += f" {dropped} box(es) outside the input's frame were dropped."
    note += (
        " A method's images are fewer where its map is flat (no maximum, no region): such a "
        "map is undefined, not a miss."
    )
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
