"""The summary figures: each photo, its Poly-CAM overlay and the map after each fusion stage; each
scan, its map over the planes through the map's maximum and over a montage of slices."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from captum_polycam.cli.arguments import check_outputs
from captum_polycam.resources.errors import EvaluationError
from captum_polycam.visualization import (
    FIGURE_FORMATS,
    figure,
    figure_format,
    montage,
    overlay,
    slices,
)

__all__ = [
    "FIGURE_FORMATS",
    "check_figure_path",
    "check_file_path",
    "figure_format",
    "save_detection_figure",
    "save_figure",
    "save_volume_figure",
]

_PANEL_INCHES = 3.0
_DPI = 100


def check_figure_path(out: Path, inputs: Iterable[tuple[str, Path | None]] = ()) -> None:
    """Fail before any work when the figure could not be written at ``out``: its folder is
    missing, ``out`` is a folder, its format is not supported, or it is one of the ``inputs``
    (see :func:`~captum_polycam.cli.arguments.check_outputs`, which also says on standard
    error that an existing ``out`` will be replaced).

    Raises:
        EvaluationError: Saying which.
    """
    check_file_path(out, "figure", "figure.png")
    figure_format(out)
    check_outputs([out], inputs)


def check_file_path(out: Path, what: str, example: str) -> None:
    """Fail before any work when no file can be written at ``out``, the ``what`` (such as
    ``"figure"``): it is a folder, or its folder is missing.

    Raises:
        EvaluationError: Saying which, and for a folder, a file name in it such as
            ``example``.
    """
    if out.is_dir():
        raise EvaluationError(
            f"--out: {str(out)!r} is a folder; give the {what}'s file name, such as "
            f"{str(out / example)!r}"
        )
    if not out.parent.is_dir():
        raise EvaluationError(f"--out: the folder {str(out.parent)!r} does not exist")


def save_figure(
    path: str | Path,
    pixels: Tensor,
    maps: Tensor,
    stages: Sequence[Tensor],
    *,
    image_names: Sequence[str],
    class_names: Sequence[str],
    stage_titles: Sequence[str],
    method: str = "Poly-CAM",
    boxes: Sequence[Tensor] | None = None,
) -> None:
    """Write a figure with one row per image: photo, overlay, then each stage's map.

    Args:
        path: Where to write the figure, in the format of its suffix (see
            :func:`figure_format`).
        pixels: The photos, ``N x 3 x H x W`` in ``[0, 1]``.
        maps: The final maps, ``N x 1 x H x W`` in ``[0, 1]``.
        stages: The intermediate maps, deepest first, each ``N x 1 x H x W``.
        image_names: One label per photo.
        class_names: The class explained for each photo.
        stage_titles: One title per stage.
        method: The method's name in the overlay titles.
        boxes: Per image, ``K x 4`` ground-truth boxes ``x1, y1, x2, y2`` in the photo's
            pixels, drawn on the photo and the overlay; ``None`` draws none.
    """
    format_ = figure_format(path)
    count = len(pixels)
    if not len(maps) == len(image_names) == len(class_names) == count:
        raise ValueError("pixels, maps, image_names and class_names need one entry per image")
    if len(stage_titles) != len(stages):
        raise ValueError("stage_titles needs one title per stage")
    drawn = figure(
        pixels,
        maps,
        stages,
        titles=[f"{method}: {name}" for name in class_names],
        stage_titles=stage_titles,
        colorbar=False,
    )
    # Without a colour bar the axes are the panels, row by row: each row starts at its photo.
    columns = 2 + len(stages)
    for row, name in enumerate(image_names):
        drawn.axes[row * columns].set_title(name)
        for box in boxes[row] if boxes is not None else ():
            _draw_box(drawn.axes[row * columns], box)
            _draw_box(drawn.axes[row * columns + 1], box)
    drawn.savefig(path, format=format_, dpi="figure")


def save_detection_figure(
    path: str | Path, pixels: Tensor, maps: Tensor, boxes: Tensor, titles: Sequence[str]
) -> None:
    """Write a figure with the photo and its boxes, then one panel per detection: its map over
    the photo, with its box.

    Args:
        path: Where to write the figure, in the format of its suffix (see
            :func:`figure_format`).
        pixels: The photo, ``1 x 3 x H x W`` or ``3 x H x W`` in ``[0, 1]``.
        maps: One map per detection, ``T x 1 x H x W`` in ``[0, 1]``.
        boxes: ``T x 4`` boxes, ``x1, y1, x2, y2`` in pixels.
        titles: One title per detection.
    """
    format_ = figure_format(path)
    if not len(maps) == len(boxes) == len(titles):
        raise ValueError("maps, boxes and titles need one entry per detection")
    photo = pixels.reshape(-1, *pixels.shape[-3:])[0]
    columns = 1 + len(maps)
    drawn = Figure(figsize=(_PANEL_INCHES * columns, _PANEL_INCHES), dpi=_DPI, layout="constrained")
    # An explicit Agg canvas: no pyplot state, no GUI backend, works on headless machines.
    FigureCanvasAgg(drawn)
    axes = drawn.subplots(1, columns, squeeze=False)[0]
    _draw_photo(axes[0], _hwc(photo), f"{len(boxes)} detection{'s' * (len(boxes) != 1)}")
    for box in boxes:
        _draw_box(axes[0], box)
    for axis, panel, box, title in zip(axes[1:], overlay(photo, maps), boxes, titles, strict=True):
        axis.imshow(panel)
        axis.set_title(title)
        axis.set_axis_off()
        _draw_box(axis, box)
    drawn.savefig(path, format=format_, dpi=_DPI)


def save_volume_figure(
    path: str | Path,
    volumes: Sequence[Tensor],
    maps: Sequence[Tensor],
    *,
    titles: Sequence[str],
    montage_axes: Sequence[int],
) -> None:
    """Write a figure with, for each scan, its map over the three planes through the map's
    maximum (:func:`~captum_polycam.visualization.slices`), titled, and below them over 16
    slices along one axis (:func:`~captum_polycam.visualization.montage`).

    The panels are drawn at 100 dpi and stacked, centred, top to bottom: a PDF or SVG holds
    them as pictures.

    Args:
        path: Where to write the figure, in the format of its suffix (see
            :func:`figure_format`).
        volumes: The scans, each ``D x H x W`` in ``[0, 1]``.
        maps: Their maps, each of its scan's shape, in ``[0, 1]``.
        titles: One title per scan, over its planes.
        montage_axes: Per scan, the axis (0, 1 or 2) its montage slices along.
    """
    format_ = figure_format(path)
    if not len(volumes) == len(maps) == len(titles) == len(montage_axes):
        raise ValueError("volumes, maps, titles and montage_axes need one entry per scan")
    pictures = []
    for volume, heat, title, axis in zip(volumes, maps, titles, montage_axes, strict=True):
        planes = slices(volume, heat)
        planes.suptitle(title)
        pictures += [_rendered(planes), _rendered(montage(volume, heat, axis=axis))]
    width = max(picture.shape[1] for picture in pictures)
    height = sum(picture.shape[0] for picture in pictures)
    stacked = np.full((height, width, 4), 255, dtype=np.uint8)  # opaque white
    top = 0
    for picture in pictures:
        left = (width - picture.shape[1]) // 2
        stacked[top : top + picture.shape[0], left : left + picture.shape[1]] = picture
        top += picture.shape[0]
    drawn = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
    FigureCanvasAgg(drawn)
    drawn.figimage(stacked, origin="upper")
    drawn.savefig(path, format=format_, dpi=_DPI)


def _rendered(drawn: Figure) -> np.ndarray:
    """The figure's pixels as Agg draws them: ``H x W x 4`` RGBA bytes."""
    canvas = FigureCanvasAgg(drawn)  # the Agg canvas it has already, typed as such
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def _draw_box(axis: Axes, box: Tensor) -> None:
    x1, y1, x2, y2 = box.tolist()
    axis.add_patch(
        Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="white", linewidth=1.5)
    )


def _hwc(image: Tensor) -> np.ndarray:
    """A ``C x H x W`` tensor as the ``H x W x C`` float array matplotlib expects."""
    return image.detach().float().cpu().permute(1, 2, 0).numpy()


def _draw_photo(axis: Axes, photo: np.ndarray, title: str) -> None:
    axis.imshow(photo.clip(0.0, 1.0))
    axis.set_title(title)
    axis.set_axis_off()
