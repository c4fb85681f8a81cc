"""The summary figure: each photo, its Poly-CAM overlay and the map after each fusion stage."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from captum.attr import visualization
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from captum_polycam.resources.errors import EvaluationError

__all__ = [
    "FIGURE_FORMATS",
    "check_figure_path",
    "figure_format",
    "save_detection_figure",
    "save_figure",
]

_PANEL_INCHES = 3.0
_DPI = 100
_CMAP = "jet"
# The formats matplotlib writes by itself (pgf needs LaTeX; raw and rgba have no header), as
# far as this matplotlib does (webp came with 3.6).
FIGURE_FORMATS = tuple(
    name
    for name in ("png", "jpg", "jpeg", "webp", "tif", "tiff", "pdf", "svg", "svgz", "eps", "ps")
    if name in FigureCanvasAgg.get_supported_filetypes()
)


def figure_format(path: str | Path) -> str:
    """The format of the figure at ``path``, from its suffix: PNG when it has none.

    Raises:
        EvaluationError: The suffix is not one of :data:`FIGURE_FORMATS`.
    """
    suffix = Path(path).suffix
    if not suffix:
        return "png"
    if suffix.lower()[1:] not in FIGURE_FORMATS:
        raise EvaluationError(
            f"--out: cannot write a {suffix!r} figure; use {', '.join(FIGURE_FORMATS)} "
            "(by the file name's suffix)"
        )
    return suffix.lower()[1:]


def check_figure_path(out: Path) -> None:
    """Fail before any work when the figure could not be written at ``out``: its folder is
    missing, ``out`` is a folder, or its format is not supported.

    Raises:
        EvaluationError: Saying which.
    """
    if out.is_dir():
        raise EvaluationError(
            f"--out: {str(out)!r} is a folder; give the figure's file name, such as "
            f"{str(out / 'figure.png')!r}"
        )
    if not out.parent.is_dir():
        raise EvaluationError(f"--out: the folder {str(out.parent)!r} does not exist")
    figure_format(out)


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
    """
    format_ = figure_format(path)
    count = len(pixels)
    if not len(maps) == len(image_names) == len(class_names) == count:
        raise ValueError("pixels, maps, image_names and class_names need one entry per image")
    if len(stage_titles) != len(stages):
        raise ValueError("stage_titles needs one title per stage")
    columns = 2 + len(stages)
    figure = Figure(
        figsize=(_PANEL_INCHES * columns, _PANEL_INCHES * count), dpi=_DPI, layout="constrained"
    )
    # An explicit Agg canvas: no pyplot state, no GUI backend, works on headless machines.
    FigureCanvasAgg(figure)
    axes = figure.subplots(count, columns, squeeze=False)
    for row in range(count):
        photo = _hwc(pixels[row])
        _draw_photo(axes[row, 0], photo, image_names[row])
        # The maps are already in [0, 1]: outlier_perc=0 keeps that scale instead of
        # stretching the top 2% to saturation, so the overlay matches the stage panels.
        visualization.visualize_image_attr(
            _hwc(maps[row]),
            photo,
            method="blended_heat_map",
            sign="positive",
            plt_fig_axis=(figure, axes[row, 1]),
            outlier_perc=0,
            cmap=_CMAP,
            title=f"{method}: {class_names[row]}",
            use_pyplot=False,
        )
        axes[row, 1].set_axis_off()  # Captum hides the ticks but leaves a frame
        for column, (stage, title) in enumerate(zip(stages, stage_titles, strict=True), 2):
            axis = axes[row, column]
            axis.imshow(_hwc(stage[row])[..., 0], cmap=_CMAP, vmin=0.0, vmax=1.0)
            axis.set_title(title)
            axis.set_axis_off()
    figure.savefig(path, format=format_, dpi=_DPI)


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
    photo = _hwc(pixels.reshape(-1, *pixels.shape[-3:])[0])
    columns = 1 + len(maps)
    figure = Figure(
        figsize=(_PANEL_INCHES * columns, _PANEL_INCHES), dpi=_DPI, layout="constrained"
    )
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, columns, squeeze=False)[0]
    _draw_photo(axes[0], photo, f"{len(boxes)} detection{'s' * (len(boxes) != 1)}")
    for box in boxes:
        _draw_box(axes[0], box)
    for axis, map_, box, title in zip(axes[1:], maps, boxes, titles, strict=True):
        visualization.visualize_image_attr(
            _hwc(map_),
            photo,
            method="blended_heat_map",
            sign="positive",
            plt_fig_axis=(figure, axis),
            outlier_perc=0,
            cmap=_CMAP,
            title=title,
            use_pyplot=False,
        )
        axis.set_axis_off()
        _draw_box(axis, box)
    figure.savefig(path, format=format_, dpi=_DPI)


def _draw_box(axis: Axes, box: Tensor) -> None:
    x1, y1, x2, y2 = box.tolist()
    axis.add_patch(
        Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="white", linewidth=1.5)
    )


def _hwc(image: Tensor) -> np.ndarray:
    """A ``C x H x W`` tensor as the ``H x W x C`` float array matplotlib and Captum expect."""
    return image.detach().float().cpu().permute(1, 2, 0).numpy()


def _draw_photo(axis: Axes, photo: np.ndarray, title: str) -> None:
    axis.imshow(photo.clip(0.0, 1.0))
    axis.set_title(title)
    axis.set_axis_off()
