"""``report.html``: an evaluation's results on one page that opens offline, from the folder.

The page shows the run's configuration, the summary (mean and 95% interval of every metric,
per method), the mean curves and, per image, every method's map over its photo with its
insertion and deletion areas; the per-image table sorts by any of these columns. It needs no
network: the styles and the sorting script are inline, and the images are files of ``OUT``
referenced by relative paths, so the folder can be copied or archived as a whole.

The page's skeleton, styles and script are files of this package, ``page/report.html``,
``page/report.css`` and ``page/report.js``; this module fills the skeleton's ``${...}``
placeholders (:class:`string.Template`) with the run's tables, already escaped, and with the
styles and the script as they are.

.. code-block:: text

   OUT/
     report.html
     overlays/{method}/{image}.png   a map over its photo (or the map alone, coloured); for a
                                     scan, the three planes through the map's maximum
"""

from __future__ import annotations

import contextlib
import csv
import functools
import html
import io
import json
import math
from collections.abc import Callable, Iterable, Mapping
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import quote

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from captum_polycam.evaluation.artefacts import write_bytes
from captum_polycam.evaluation.methods import method_file_stem
from captum_polycam.evaluation.report import METRICS, Report
from captum_polycam.metrics.keys import (
    BOX_ACCURACY,
    DELETION,
    ENERGY_POINTING_GAME,
    INSERTION,
    POINTING_GAME,
    SCORE_DIRECTIONS,
    ScoreDirection,
)
from captum_polycam.metrics.summary import Statistic
from captum_polycam.resources.errors import EvaluationError
from captum_polycam.resources.models import model_file_stem
from captum_polycam.resources.names import unique_file_stems
from captum_polycam.visualization import overlay

__all__ = ["write_html_report"]

_ARROWS = {ScoreDirection.HIGHER: "↑", ScoreDirection.LOWER: "↓"}
# The per-image columns, from the scores CSVs, sortable in the images' table; the localisation
# ones where the run had ground truth.
_COLUMNS = (
    (INSERTION, "insertion"),
    (DELETION, "deletion"),
    (POINTING_GAME, "pointing game"),
    (ENERGY_POINTING_GAME, "energy in boxes"),
    (BOX_ACCURACY, "box accuracy"),
)
# The ground truth's outline and the map's maximum, drawn over each overlay (RGB in [0, 1]).
_TRUTH_COLOUR = (1.0, 1.0, 1.0)
_MAXIMUM_COLOUR = (0.0, 1.0, 1.0)
_MAXIMUM_ARM = 4
# The white gap between a scan's three planes in its overlay, in pixels.
_PLANE_GAP = 2
# A signal's overlay: a band this high, and as wide as the signal within these bounds.
_STRIP_HEIGHT = 64
_STRIP_WIDTHS = (256, 1024)


def write_html_report(
    out: str | Path,
    photo: Callable[[str], Tensor | None] | None = None,
    record: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``OUT/report.html`` and its overlays from a finished evaluation's artefacts.

    For each image and method, the method's map from ``npz/`` is blended over the image's
    photo (or, without one, coloured alone) and saved as
    ``OUT/overlays/{method}/{image}.png`` (for a scan's ``D x H x W`` map, the planes of axes
    0, 1 and 2 through its maximum, side by side, as
    :func:`~captum_polycam.visualization.slices` draws them; for a signal's ``L``-long map, a
    band 64 pixels high and 256 to 1024 wide); ``{image}`` is the image's name
    made safe for
    every file system, with a short hash of the name where two names would share a file. The
    page then shows the run's configuration (``run.json``), the summary (``summary.csv``),
    the mean curves (``curves.png``) and a table with a row per image: its target and, per
    method, the overlay with the insertion and deletion areas of ``csv/scores_*.csv``. A run
    with ground truth draws its boxes (``csv/ground_truth_*.csv``, white) and the map's
    maximum (a cyan cross) on every overlay and shows the pointing game, the energy in the
    boxes and the box accuracy. The table sorts by image name or by any of these columns.
    Everything is local: no file of the page is fetched from the network. Every file is
    written atomically, and the same artefacts give the same bytes, so the page can be
    rebuilt at any time.

    Args:
        out: The evaluation's output folder.
        photo: ``photo(name)`` gives the image's photo as a ``3 x H x W`` tensor in
            ``[0, 1]`` (a scan as a ``C x D x H x W`` one, of its map's size, drawn in grey as
            the mean of its channels; a signal as a ``C x L`` one, the mean of its channels
            drawn as a white line over its map's colour band), or ``None`` where it is not
            available; the map is
            resized to the photo. Without it (``None``), every overlay is the map alone,
            coloured.
        record: The run's record to show, as ``run.json`` will hold it; ``None`` reads
            ``run.json``. A run writes its page before its final record, so that a record
            that says ``finished`` means that the page is there; the page is the same as the
            one rebuilt from that record later.

    Returns:
        The path of ``report.html``.

    Raises:
        EvaluationError: If ``run.json``, ``summary.csv``, ``summary.md`` or a method's maps
            or scores are missing from ``out``, or a scores file lacks the insertion or
            deletion column.

    Example:
        >>> from captum_polycam.resources.images import read_image
        >>> def photo(name: str) -> Tensor:
        ...     return read_image(Path("photos") / name, size=None)[0]
        >>> write_html_report("results", photo)
        PosixPath('results/report.html')
    """
    out = Path(out)
    for required in ("run.json", "summary.csv", "summary.md"):
        if not (out / required).is_file():
            raise EvaluationError(
                f"out: {str(out / required)!r} is missing; is {str(out)!r} a finished "
                "evaluation's folder?"
            )
    if record is None:
        record = json.loads((out / "run.json").read_text())
    configuration: dict[str, Any] = record.get("configuration", {})
    methods = [str(method) for method in configuration.get("methods", [])]
    model = str(configuration.get("model", ""))
    model_stem = model_file_stem(model)
    # Everything is read before the first overlay is written: a broken folder fails at once.
    summary = Report.read(out)
    scores = {method: _read_scores(out, model_stem, method) for method in methods}
    names = _image_names(scores.values())
    stems = unique_file_stems(names)
    truth = _read_ground_truth(out / "csv" / f"ground_truth_{model_stem}.csv")
    overlays = _write_overlays(out, model_stem, methods, names, stems, photo, truth)
    page = _page(out, record, summary, scores, names, overlays)
    path = out / "report.html"
    write_bytes(path, page.encode())
    return path


def _read_scores(out: Path, model_stem: str, method: str) -> dict[str, dict[str, str]]:
    """The method's per-image values as the CSV spells them (``{image: {column: text}}``)."""
    path = out / "csv" / f"scores_{model_stem}_{method_file_stem(method)}.csv"
    if not path.is_file():
        raise EvaluationError(f"out: {str(path)!r}, the scores of {method!r}, is missing")
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        missing = [
            c
            for c in ("image", "target", INSERTION, DELETION)
            if c not in (reader.fieldnames or [])
        ]
        if missing:
            raise EvaluationError(f"out: {str(path)!r} has no column {', '.join(missing)}")
        return {row["image"]: row for row in reader}


def _read_ground_truth(path: Path) -> dict[str, list[list[float]]] | None:
    """Each image's boxes in the input's frame, from a run with ground truth; else ``None``."""
    if not path.is_file():
        return None
    with path.open(newline="") as file:
        return {
            row["image"]: [
                [float(value) for value in box.split()]
                for box in row["x1 y1 x2 y2"].split(";")
                if box
            ]
            for row in csv.DictReader(file)
        }


def _image_names(scores: Iterable[Mapping[str, Any]]) -> list[str]:
    # The image list's order, as every method's CSV has it; a name only some methods have
    # (none, from the pipeline) still gets its row.
    names: dict[str, None] = {}
    for rows in scores:
        names.update(dict.fromkeys(rows))
    return list(names)


def _write_overlays(
    out: Path,
    model_stem: str,
    methods: list[str],
    names: list[str],
    stems: Mapping[str, str],
    photo: Callable[[str], Tensor | None] | None,
    truth: Mapping[str, list[list[float]]] | None,
) -> dict[tuple[str, str], str]:
    """Write every overlay; their paths relative to ``out``, by ``(method, image)``."""
    written: dict[tuple[str, str], str] = {}
    with contextlib.ExitStack() as stack:
        # The archives are read lazily, one map at a time: a dataset's maps need not fit in
        # memory, and each photo is read once for all the methods.
        archives = {}
        keys = {}
        for method in methods:
            path = out / "npz" / f"{model_stem}_{method_file_stem(method)}.npz"
            if not path.is_file():
                raise EvaluationError(f"out: {str(path)!r}, the maps of {method!r}, is missing")
            archives[method] = stack.enter_context(np.load(path, allow_pickle=False))
            keys[method] = set(archives[method].files)
        for name in names:
            image = photo(name) if photo is not None else None
            for method, archive in archives.items():
                if name not in keys[method]:
                    continue
                relative = f"overlays/{method_file_stem(method)}/{stems[name]}.png"
                heat = archive[name]
                rgb = _blend(image, heat)
                if truth is not None:
                    _mark(rgb, heat, truth.get(name, []))
                write_bytes(out / relative, _png(rgb))
                written[method, name] = relative
    return written


def _blend(image: Tensor | None, heat: np.ndarray) -> np.ndarray:
    """The map over the photo; without a photo, the map alone in the same colours. A scan's
    map gives its three planes through the maximum (:func:`_planes`)."""
    if heat.ndim == 3:
        return _planes(image, heat)
    if heat.ndim == 1:
        return _strip(image, heat)
    if image is None:
        return overlay(torch.zeros(3, *heat.shape[-2:]), heat, alpha=1.0)[0]
    return overlay(image, heat)[0]


def _planes(scan: Tensor | None, heat: np.ndarray) -> np.ndarray:
    """A scan's ``D x H x W`` map over the scan on the planes of axes 0, 1 and 2 through the
    map's maximum (the first, in index order, as :func:`~captum_polycam.visualization.slices`
    takes it), side by side with a white gap, the shorter ones padded with black below; the
    map alone, coloured, without the scan."""
    peak = np.unravel_index(int(np.argmax(heat)), heat.shape)
    grey = None if scan is None else scan.float().mean(dim=0)  # C x D x H x W, channels mean
    panels = []
    for axis, index in enumerate(peak):
        plane = np.take(heat, int(index), axis=axis)
        below = torch.zeros(plane.shape) if grey is None else grey.select(axis, int(index))
        panels.append(
            overlay(below.expand(3, *plane.shape), plane, alpha=1.0 if grey is None else 0.5)[0]
        )
    height = max(panel.shape[0] for panel in panels)
    gap = np.ones((height, _PLANE_GAP, 3), dtype=np.float32)
    padded = [np.pad(panel, ((0, height - len(panel)), (0, 0), (0, 0))) for panel in panels]
    return np.concatenate([padded[0], gap, padded[1], gap, padded[2]], axis=1)


def _strip(signal: Tensor | None, heat: np.ndarray) -> np.ndarray:
    """A signal's ``L``-long map as a coloured band ``_STRIP_HEIGHT`` pixels high, resampled
    linearly to a width from ``_STRIP_WIDTHS``, with the signal (the mean of its channels,
    min-max scaled, high values up) drawn over it in white; the band alone without it."""
    width = min(max(len(heat), _STRIP_WIDTHS[0]), _STRIP_WIDTHS[1])
    columns = np.linspace(0.0, len(heat) - 1, width)
    band = np.interp(columns, np.arange(len(heat)), heat).astype(np.float32)
    black = torch.zeros(3, _STRIP_HEIGHT, width)
    rgb = overlay(black, np.tile(band, (_STRIP_HEIGHT, 1)), alpha=1.0)[0]
    if signal is None:
        return rgb
    trace = signal.float().reshape(-1, len(heat)).mean(dim=0).numpy()
    trace = np.interp(columns, np.arange(len(heat)), trace)
    spread = trace.max() - trace.min()
    scaled = (trace - trace.min()) / spread if spread > 0 else np.full_like(trace, 0.5)
    rows = np.rint((1.0 - scaled) * (_STRIP_HEIGHT - 1)).astype(int)
    # Each column spans the rows to its neighbour's, so that steep stretches stay a line.
    previous = np.concatenate([rows[:1], rows[:-1]])
    for column, (row, before) in enumerate(zip(rows, previous, strict=True)):
        rgb[min(row, before) : max(row, before) + 1, column] = 1.0
    return rgb


def _mark(rgb: np.ndarray, heat: np.ndarray, boxes: list[list[float]]) -> None:
    """Draw the ground-truth boxes and the map's maximum on ``rgb`` (``H x W x 3``, the map's
    frame when it is the photo's, else scaled to it)."""
    height, width = rgb.shape[:2]
    scale_y, scale_x = height / heat.shape[-2], width / heat.shape[-1]
    for x1, y1, x2, y2 in boxes:
        # The pixels on the box's edges: columns floor(x1) to ceil(x2) - 1, the same rows.
        left, right = int(x1 * scale_x), max(math.ceil(x2 * scale_x) - 1, 0)
        top, bottom = int(y1 * scale_y), max(math.ceil(y2 * scale_y) - 1, 0)
        left, right = min(left, width - 1), min(right, width - 1)
        top, bottom = min(top, height - 1), min(bottom, height - 1)
        rgb[top, left : right + 1] = rgb[bottom, left : right + 1] = _TRUTH_COLOUR
        rgb[top : bottom + 1, left] = rgb[top : bottom + 1, right] = _TRUTH_COLOUR
    # The first maximal pixel in row-major order, as the pointing game takes it.
    row, column = np.unravel_index(int(np.argmax(heat)), heat.shape[-2:])
    y, x = int((row + 0.5) * scale_y), int((column + 0.5) * scale_x)
    arm = _MAXIMUM_ARM
    rgb[max(y - arm, 0) : y + arm + 1, x] = _MAXIMUM_COLOUR
    rgb[y, max(x - arm, 0) : x + arm + 1] = _MAXIMUM_COLOUR


def _png(rgb: np.ndarray) -> bytes:
    pixels = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    # PIL writes no timestamp: the same map and photo give the same bytes.
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _text(value: Any) -> str:
    """A ``run.json`` value in a few words."""
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        return ", ".join(_text(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(", ", ": "))
    return str(value)


def _preprocessing(value: Any) -> str:
    if value is None:
        return "none: the dataset's tensors as they are"
    if not isinstance(value, dict):
        return _text(value)
    size = value.get("size")
    parts = []
    if isinstance(size, list | tuple) and len(size) in (2, 3):
        parts.append(" x ".join(str(side) for side in size))
    elif "window" in value:  # a scan's own size
        parts.append("each scan's own size")
    parts += [f"{key} {_text(value[key])}" for key in ("mean", "std") if key in value]
    # A scan's intensity scaling: a CT window or percentiles.
    parts += [
        f"{key} {_text(value[key])}"
        for key in ("window", "percentiles")
        if value.get(key) is not None
    ]
    return "; ".join(parts) if parts else _text(value)


def _ground_truth(value: Any) -> str:
    if not isinstance(value, dict):
        return "none: no localisation"
    return (
        f"{_text(value.get('format'))}, {_text(value.get('images_annotated'))} image(s) "
        f"annotated, SHA-256 {str(value.get('sha256', ''))[:12]}"
    )


def _configuration_rows(record: Mapping[str, Any], evaluated: int) -> list[tuple[str, str]]:
    configuration = record.get("configuration", {})
    images = configuration.get("images")
    count = images.get("count") if isinstance(images, dict) else None
    device = " ".join(
        str(part) for part in (configuration.get("device"), record.get("device_name")) if part
    )
    rows = [
        ("model", _text(configuration.get("model"))),
        ("methods", _text(configuration.get("methods"))),
        ("target", _text(configuration.get("target"))),
        ("steps", _text(configuration.get("n_steps"))),
        ("baseline", _text(configuration.get("baseline"))),
        ("preprocessing", _preprocessing(configuration.get("preprocessing"))),
        ("seed", _text(configuration.get("seed"))),
        ("precision", _text(configuration.get("precision"))),
        ("ground truth", _ground_truth(configuration.get("ground_truth"))),
        ("images", f"{evaluated} evaluated" + (f" of {count}" if count is not None else "")),
    ]
    if device:
        rows.append(("device", device))
    if "processes" in record:
        rows.append(("processes", _text(record["processes"])))
    for key in ("started", "finished"):
        if key in record:
            rows.append((key, _text(record[key])))
    versions = record.get("versions")
    if isinstance(versions, dict) and versions:
        rows.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    return rows


def _number(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4f}"


def _summary_table(statistics: Mapping[str, Mapping[str, Statistic]]) -> str:
    shown = [m for m in METRICS if any(m in values for values in statistics.values())]
    heads = []
    for metric in shown:
        direction = next(v[metric].direction for v in statistics.values() if metric in v)
        arrow = _ARROWS.get(direction, "") if direction is not None else ""
        better = f' title="{direction.value} is better"' if direction is not None else ""
        heads.append(f"<th{better}>{_e(METRICS[metric])} {arrow}</th>")
    lines = [
        '<table class="summary">',
        "<thead><tr><th>method</th>" + "".join(heads) + "<th>images</th></tr></thead>",
        "<tbody>",
    ]
    for method, values in statistics.items():
        cells = []
        for metric in shown:
            s = values.get(metric)
            if s is None:
                cells.append("<td>-</td>")
                continue
            # One image (or none) has no spread to speak of: the interval would read as exact.
            defined = s.count > 1 and not (math.isnan(s.ci_low) or math.isnan(s.ci_high))
            interval = f"[{s.ci_low:.4f}, {s.ci_high:.4f}]" if defined else "n/a"
            cells.append(
                f'<td data-metric="{_e(metric)}">'
                f'<span class="mean" data-value="{s.mean!r}">{_number(s.mean)}</span> '
                f'<span class="interval">{interval}</span></td>'
            )
        count = max((s.count for s in values.values()), default=0)
        lines.append(
            f'<tr data-method="{_e(method)}"><th scope="row">{_e(method)}</th>'
            + "".join(cells)
            + f"<td>{count}</td></tr>"
        )
    lines += ["</tbody>", "</table>"]
    return "\n".join(lines)


def _value_text(text: str) -> str:
    try:
        return _number(float(text))
    except ValueError:
        return "n/a"


def _images_table(
    methods: list[str],
    scores: Mapping[str, Mapping[str, Mapping[str, str]]],
    names: list[str],
    overlays: Mapping[tuple[str, str], str],
) -> str:
    heads = [
        '<th><button type="button" data-key="order" data-type="number">#</button></th>',
        '<th><button type="button" data-key="image" data-type="text">image</button></th>',
        "<th>target</th>",
    ]
    # The columns the scores hold: the localisation ones only where the run had ground truth.
    columns = [
        (key, label)
        for key, label in _COLUMNS
        if any(key in row for rows in scores.values() for row in rows.values())
    ]
    for index, method in enumerate(methods):
        buttons = " ".join(
            f'<button type="button" data-key="m{index}-{key}" data-type="number">'
            f"{label} {_ARROWS[SCORE_DIRECTIONS[key]]}</button>"
            for key, label in columns
        )
        heads.append(f'<th><span class="method">{_e(method)}</span><br>{buttons}</th>')
    lines = [
        '<table class="images sortable">',
        "<thead><tr>" + "".join(heads) + "</tr></thead>",
        "<tbody>",
    ]
    for order, name in enumerate(names, 1):
        target = next((scores[m][name]["target"] for m in methods if name in scores[m]), "")
        cells = [
            f'<td data-key="order" data-value="{order}">{order}</td>',
            f'<td data-key="image" data-value="{_e(name)}">{_e(name)}</td>',
            f"<td>{_e(target)}</td>",
        ]
        for index, method in enumerate(methods):
            row = scores[method].get(name)
            parts = []
            relative = overlays.get((method, name))
            if relative is not None:
                source = _e(quote(relative, safe="/+="))
                parts.append(
                    f'<a href="{source}"><img src="{source}" loading="lazy" '
                    f'alt="{_e(method)} on {_e(name)}"></a>'
                )
            for key, label in columns:
                # The CSV's own text: the full value sorts, four decimals are shown.
                value = row.get(key, "") if row is not None else ""
                parts.append(
                    f'<span class="area" data-key="m{index}-{key}" data-value="{_e(value)}">'
                    f"{label} {_value_text(value)}</span>"
                )
            cells.append(f'<td data-method="{_e(method)}">' + "".join(parts) + "</td>")
        lines.append(f'<tr data-image="{_e(name)}">' + "".join(cells) + "</tr>")
    lines += ["</tbody>", "</table>"]
    return "\n".join(lines)


def _errors(out: Path) -> str:
    path = out / "errors.csv"
    if not path.is_file():
        return ""
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    if not rows:
        return ""
    items = "".join(
        f"<li><code>{_e(row.get('image', ''))}</code>: {_e(row.get('error', ''))}</li>"
        for row in rows
    )
    return f"<h2>Images that could not be read ({len(rows)})</h2>\n<ul>{items}</ul>"


# page/report.js sorts the rows of a table by the data-value of the elements whose data-key is
# the clicked button's; a second click reverses. Missing numbers go last either way. It holds no
# comment, so the page holds no "//" that a check for network references would flag.
@functools.cache
def _page_files() -> tuple[Template, str, str]:
    """The page's skeleton, styles and script, read once from the package."""
    folder = files("captum_polycam.evaluation") / "page"
    skeleton, style, script = (
        (folder / name).read_text(encoding="utf-8")
        for name in ("report.html", "report.css", "report.js")
    )
    # The styles and script go in as they are, between lines of their own.
    return Template(skeleton), style.strip("\n"), script.strip("\n")


def _page(
    out: Path,
    record: Mapping[str, Any],
    report: Report,
    scores: Mapping[str, Mapping[str, Mapping[str, str]]],
    names: list[str],
    overlays: Mapping[tuple[str, str], str],
) -> str:
    methods = list(scores)
    model = _text(record.get("configuration", {}).get("model"))
    configuration = "\n".join(
        f'<tr><th scope="row">{_e(key)}</th><td>{_e(value)}</td></tr>'
        for key, value in _configuration_rows(record, len(names))
    )
    curves = (
        '<h2>Mean curves</h2>\n<img src="curves.png" alt="mean insertion and deletion curves">'
        if (out / "curves.png").is_file()
        else ""
    )
    skeleton, style, script = _page_files()
    return skeleton.substitute(
        model=_e(model),
        style=style,
        configuration=configuration,
        summary=_summary_table(report.statistics),
        curves=curves,
        images=_images_table(methods, scores, names, overlays),
        errors=_errors(out),
        script=script,
    )
