"""Seeing the maps: a saliency map over its photo, as pytorch-grad-cam's ``show_cam_on_image``
and torchcam's ``overlay_mask`` do, for any ``N x 1 x H x W`` map in ``[0, 1]``; the paper's
summary figure (photo, overlay, the map after each fusion stage); the photo itself, read and
preprocessed the paper's way; and a volume's map over its scan, through its maximum
(:func:`slices`) or slice by slice (:func:`montage`)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from PIL import Image, ImageOps
from torch import Tensor

from captum_polycam._conventions import as_int, check_int
from captum_polycam.normalisation import upsample
from captum_polycam.resources.errors import EvaluationError
from captum_polycam.resources.images import SIZE, Preprocessing, normalise, pil_pixels, read_image

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["figure", "load_image", "montage", "overlay", "preprocess", "save", "slices"]

# Integer photos hold 8- or 16-bit pixels, divided by their type's largest value as load_image
# scales 8- and 16-bit files; wider integer types have no single usual range.
_PIXEL_MAX = {torch.uint8: 255, torch.uint16: 65535}
_PANEL_INCHES = 3.0
_COLORBAR_INCHES = 0.8
_DPI = 100
# The formats matplotlib writes by itself (pgf needs LaTeX; raw and rgba have no header), as
# far as this matplotlib does (webp came with 3.6).
FIGURE_FORMATS = tuple(
    name
    for name in ("png", "jpg", "jpeg", "webp", "tif", "tiff", "pdf", "svg", "svgz", "eps", "ps")
    if name in FigureCanvasAgg.get_supported_filetypes()
)


def overlay(
    image: Any,
    maps: Tensor | np.ndarray,
    *,
    colormap: str = "jet",
    alpha: float = 0.5,
) -> np.ndarray:
    """Blend each map, coloured by ``colormap``, over the photo: ``(1 - alpha) * photo +
    alpha * colormap(map)``.

    Args:
        image: The photo: a ``3 x H x W`` or ``1 x 3 x H x W`` tensor, or an ``H x W x 3``
            array, of floats in ``[0, 1]`` or of ``uint8`` (0 to 255) or ``uint16``
            (0 to 65535) pixels, scaled from their range; or a PIL image, each mode scaled
            from its own range (16-bit ones from 0 to 65535) and turned by its EXIF
            orientation, as :func:`load_image` reads files and :func:`preprocess` takes it.
            One photo serves every map; ``N x 3 x H x W`` gives one photo per map.
        maps: ``N x 1 x h x w``, ``N x h x w`` or ``h x w`` finite maps in ``[0, 1]`` (values
            outside are clipped), resized bilinearly to the photo's size when they differ.
        colormap: A matplotlib colormap name.
        alpha: The map's opacity, in ``[0, 1]``.

    Returns:
        ``N x H x W x 3`` float32 RGB images in ``[0, 1]``, one per map, ready for
        ``matplotlib``'s ``imshow`` or, times 255, for PIL.

    Raises:
        ValueError: If ``alpha`` is outside ``[0, 1]``, ``colormap`` is unknown, the photo
            or maps have an unexpected shape, a float photo has values outside ``[0, 1]``
            (0 to 255 pixels, or the model's input after :func:`preprocess`), an integer
            photo is neither ``uint8`` nor ``uint16``, or a map holds NaN or Inf values.

    Example:
        >>> blended = overlay(photo, polycam.attribute(inputs))  # photo: 3 x H x W in [0, 1]
        >>> Image.fromarray((blended[0] * 255).astype("uint8")).save("overlay.png")
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha!r}")
    if colormap not in colormaps:
        raise ValueError(f"colormap must be a matplotlib colormap name; got {colormap!r}")
    photos = _photos(image)
    heat = _maps(maps, photos.shape[-2:])
    if len(photos) not in (1, len(heat)):
        raise ValueError(
            f"image: give one photo or one per map; got {len(photos)} for {len(heat)} maps"
        )
    coloured = colormaps[colormap](heat.numpy())[..., :3]
    background = photos.permute(0, 2, 3, 1).numpy()
    return ((1.0 - alpha) * background + alpha * coloured).astype(np.float32)


def load_image(path: str | Path | Traversable, size: tuple[int, int] | None = SIZE) -> Tensor:
    """Read a photo the paper's way: squashed to ``size`` (no crop), so that the whole photo
    is explained and can be drawn under its map.

    Args:
        path: A JPEG, PNG, WebP, GIF, BMP or TIFF file. Grayscale and RGBA files become RGB,
            an animated GIF its first frame, and a phone's sideways photo is turned upright by
            its EXIF orientation.
        size: ``(height, width)`` to resize to (bilinear, antialiased); ``None`` keeps the
            file's own size.

    Returns:
        A ``1 x 3 x H x W`` float32 tensor in ``[0, 1]``: the photo for :func:`overlay` and
        :func:`figure`, and, through :func:`preprocess`, the model's input.

    Raises:
        EvaluationError: The file cannot be read or is not a supported image, or ``size`` is
            not two positive sides (a ``ValueError``).

    Example:
        >>> photo = load_image("cat.jpg")
        >>> maps = polycam.attribute(preprocess(photo), target=281)
        >>> save("cat.png", photo, maps)
    """
    return read_image(path, size)


def preprocess(image: Tensor | Image.Image) -> Tensor:
    """The paper's model input: pixels normalised with the ImageNet mean and standard deviation.

    Args:
        image: A ``3 x H x W`` or ``N x 3 x H x W`` float tensor in ``[0, 1]``, used at its own
            size (as :func:`load_image` returns it), or a PIL image, first turned upright by its
            EXIF orientation and squashed to 224 x 224 as :func:`load_image` does.

    Returns:
        The ``N x 3 x H x W`` model input, on the tensor's device.

    Raises:
        TypeError: If ``image`` is neither a tensor nor a PIL image.
        ValueError: If the tensor has an unexpected shape, is not floating point, or has
            values outside ``[0, 1]`` (such as 0 to 255 pixels, or an input normalised
            already).

    Example:
        >>> photo = load_image("cat.jpg")  # 1 x 3 x 224 x 224 in [0, 1]
        >>> inputs = preprocess(photo)
        >>> maps = polycam.attribute(inputs, target=model(inputs).argmax(dim=1))
    """
    if isinstance(image, Image.Image):
        return Preprocessing()(pil_pixels(ImageOps.exif_transpose(image)))[None]
    if not isinstance(image, Tensor):
        raise TypeError(f"image must be a tensor or a PIL image; got {type(image)}")
    pixels = image[None] if image.dim() == 3 else image
    if pixels.dim() != 4 or pixels.shape[1] != 3:
        raise ValueError(
            f"image: a tensor must be 3 x H x W or N x 3 x H x W; got {tuple(image.shape)}"
        )
    if not pixels.is_floating_point():
        raise ValueError(f"image: a tensor must hold float pixels in [0, 1]; got {image.dtype}")
    # Normalising twice, or 0 to 255 pixels, gives a plausible-looking input and wrong maps.
    if pixels.numel() and (pixels.min() < 0 or pixels.max() > 1):
        raise ValueError(
            "image: pixels must be in [0, 1], not normalised yet; got values from "
            f"{float(pixels.min()):.3g} to {float(pixels.max()):.3g}"
        )
    return normalise(pixels)


class _NotebookFigure(Figure):
    """A figure with its own Agg canvas (no pyplot state, no GUI backend: it works on headless
    machines) that a notebook shows as a cell's value, as a PNG, without pyplot's inline
    backend."""

    def __init__(self, width: float, height: float) -> None:
        super().__init__(figsize=(width, height), dpi=_DPI, layout="constrained")
        FigureCanvasAgg(self)

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png")
        return buffer.getvalue()


def figure(
    image: Any,
    maps: Tensor | np.ndarray,
    stages: Sequence[Tensor] | None = None,
    *,
    titles: Sequence[str] | None = None,
    stage_titles: Sequence[str] | None = None,
    colormap: str = "jet",
    alpha: float = 0.5,
    colorbar: bool = True,
) -> Figure:
    """The paper's summary figure: one row per map, with the photo, the map over it (see
    :func:`overlay`), then the map after each fusion stage.

    The figure has its own Agg canvas and leaves pyplot alone, so it works on a machine
    without a display and shows up in no ``plt.show()``; a notebook displays it as the cell's
    value.

    Args:
        image: The photo(s), as :func:`overlay` takes them: one for every map, or one per map.
        maps: The maps, as :func:`overlay` takes them.
        stages: The maps after each fusion stage, deepest first (Poly-CAM's
            ``decompose(...).stages``), each ``N x 1 x h x w`` in ``[0, 1]``; resized to the
            photo's size and drawn with ``colormap`` on ``[0, 1]``.
        titles: One title per map, over its overlay (such as the class it explains).
        stage_titles: One title per stage.
        colormap: A matplotlib colormap name, for the overlays and the stage maps.
        alpha: The overlay's opacity, in ``[0, 1]``.
        colorbar: Whether to add a colour bar of ``colormap`` on ``[0, 1]`` right of the
            panels.

    Returns:
        The figure: 3-inch panels at 100 dpi, ``2 + len(stages)`` a row, then the colour
        bar's axes when ``colorbar``.

    Raises:
        ValueError: As :func:`overlay` does, or if there is no map, the stages do not have one
            map per row, or ``titles`` or ``stage_titles`` do not have one title each.

    Example:
        >>> decomposed = polycam.decompose(preprocess(photo), target=281)
        >>> drawn = figure(photo, decomposed.maps, decomposed.stages, titles=["tabby"])
        >>> drawn.savefig("cat.png")
    """
    blended = overlay(image, maps, colormap=colormap, alpha=alpha)
    photos = _photos(image)
    count = len(blended)
    if count == 0:
        raise ValueError("maps: no map to draw")
    heat = [
        _maps(stage, photos.shape[-2:], f"stages[{index}]")
        for index, stage in enumerate([] if stages is None else stages)
    ]
    if any(len(stage) != count for stage in heat):
        raise ValueError(
            f"stages: each needs one map per row ({count}); got {[len(stage) for stage in heat]}"
        )
    if titles is not None and len(titles) != count:
        raise ValueError(f"titles: give one per map ({count}); got {len(titles)}")
    if stage_titles is not None and len(stage_titles) != len(heat):
        raise ValueError(f"stage_titles: give one per stage ({len(heat)}); got {len(stage_titles)}")
    background = photos.permute(0, 2, 3, 1).numpy()
    columns = 2 + len(heat)
    # The colour bar gets its own width so that the panels keep their size with or without it.
    width = _PANEL_INCHES * columns + (_COLORBAR_INCHES if colorbar else 0.0)
    drawn = _NotebookFigure(width, _PANEL_INCHES * count)
    axes = drawn.subplots(count, columns, squeeze=False)
    for row in range(count):
        axes[row, 0].imshow(background[0 if len(background) == 1 else row])
        axes[row, 1].imshow(blended[row])
        if titles is not None:
            axes[row, 1].set_title(titles[row])
        for column, stage in enumerate(heat, 2):
            axes[row, column].imshow(stage[row].numpy(), cmap=colormap, vmin=0.0, vmax=1.0)
            if stage_titles is not None:
                axes[row, column].set_title(stage_titles[column - 2])
        for axis in axes[row]:
            axis.set_axis_off()
    if colorbar:
        scale = ScalarMappable(norm=Normalize(vmin=0.0, vmax=1.0), cmap=colormap)
        drawn.colorbar(scale, ax=axes, label="saliency")
    return drawn


def save(
    path: str | Path,
    image: Any,
    maps: Tensor | np.ndarray,
    stages: Sequence[Tensor] | None = None,
    *,
    titles: Sequence[str] | None = None,
    stage_titles: Sequence[str] | None = None,
    colormap: str = "jet",
    alpha: float = 0.5,
    colorbar: bool = True,
) -> None:
    """Draw :func:`figure` and write it at ``path``, in the format of its suffix.

    Args:
        path: The file to write: PNG when it has no suffix; otherwise one of ``png``, ``jpg``,
            ``jpeg``, ``webp``, ``tif``, ``tiff``, ``pdf``, ``svg``, ``svgz``, ``eps`` or
            ``ps``, as far as this matplotlib writes them.
        image: The photo(s), as :func:`figure` takes them.
        maps: The maps, as :func:`figure` takes them.
        stages: The maps after each fusion stage, as :func:`figure` takes them.
        titles: One title per map, over its overlay.
        stage_titles: One title per stage.
        colormap: A matplotlib colormap name.
        alpha: The overlay's opacity, in ``[0, 1]``.
        colorbar: Whether to add a colour bar.

    Raises:
        EvaluationError: The suffix names no format matplotlib writes (a ``ValueError``),
            checked before anything is drawn.
        ValueError: As :func:`figure` does.

    Example:
        >>> photo = load_image("cat.jpg")
        >>> save("cat.svg", photo, polycam.attribute(preprocess(photo), target=281))
    """
    format_ = figure_format(path, argument="path")
    drawn = figure(
        image,
        maps,
        stages,
        titles=titles,
        stage_titles=stage_titles,
        colormap=colormap,
        alpha=alpha,
        colorbar=colorbar,
    )
    drawn.savefig(path, format=format_, dpi="figure")


def figure_format(path: str | Path, *, argument: str = "--out") -> str:
    """The format of the figure at ``path``, from its suffix: PNG when it has none.

    Args:
        path: The figure's file.
        argument: What the error names: the command line's option, or the function's
            argument.

    Returns:
        The format's name, lower case, as matplotlib's ``savefig`` takes it.

    Raises:
        EvaluationError: The suffix is not one of ``FIGURE_FORMATS``.
    """
    suffix = Path(path).suffix
    if not suffix:
        return "png"
    if suffix.lower()[1:] not in FIGURE_FORMATS:
        raise EvaluationError(
            f"{argument}: cannot write a {suffix!r} figure; use {', '.join(FIGURE_FORMATS)} "
            "(by the file name's suffix)"
        )
    return suffix.lower()[1:]


def slices(
    volume: Tensor | np.ndarray,
    maps: Tensor | np.ndarray,
    *,
    alpha: float = 0.5,
    colormap: str = "jet",
) -> Figure:
    """A volume's map over its scan, on the three planes through the map's maximum.

    The panels are the planes of axes 0, 1 and 2 through the voxel ``(d, h, w)`` where the map
    is largest (the first such voxel, in index order): ``volume[d]``, ``volume[:, h]`` and
    ``volume[:, :, w]`` (axial, coronal and sagittal for a scan stored that way; the volume is
    not reoriented). Each shows the scan in grey with the map over it, blended as
    :func:`overlay` does, crosshair lines through the maximum, and the title
    ``"axis A, slice I"``. Voxels are drawn square, whatever the scan's zooms.

    The figure has its own Agg canvas and leaves pyplot alone, as :func:`figure`'s does.

    Args:
        volume: The scan, ``D x H x W`` (or ``1 x D x H x W``, ``1 x 1 x D x H x W``), with
            values in ``[0, 1]``: scale a CT with
            :func:`~captum_polycam.resources.volumes.window` and an MRI with
            :func:`~captum_polycam.resources.volumes.percentile_scale` first.
        maps: The map, of the volume's shape (the same leading axes of size 1 allowed), in
            ``[0, 1]``, as :class:`~captum_polycam.PolyCam` returns it for one scan.
        alpha: The map's opacity, in ``[0, 1]``.
        colormap: A matplotlib colormap name, for the map.

    Returns:
        The figure: three 3-inch panels in a row, at 100 dpi.

    Raises:
        TypeError: If ``volume`` or ``maps`` is neither a tensor nor an array.
        ValueError: If either is not 3-D after dropping leading axes of size 1, their shapes
            differ, either holds values outside ``[0, 1]`` (NaN included), ``alpha`` is outside
            ``[0, 1]`` or ``colormap`` is unknown.

    Example:
        >>> scan = read_volume("chest_ct.nii.gz")
        >>> inputs = window(scan.data, -1000.0, 400.0)
        >>> maps = polycam.attribute(inputs[None, None], target=1)
        >>> slices(inputs, maps).savefig("chest_ct_polycam.png")
    """
    grey, heat = _volume_and_map(volume, maps, alpha, colormap)
    peak = tuple(int(index) for index in np.unravel_index(int(heat.argmax()), heat.shape))
    drawn = _NotebookFigure(_PANEL_INCHES * 3, _PANEL_INCHES)
    for axis, panel in zip(range(3), drawn.subplots(1, 3), strict=True):
        _draw_slice(panel, grey, heat, axis, peak[axis], alpha, colormap)
        # The maximum's row and column within this plane: the other two axes, in order.
        row, column = (peak[other] for other in range(3) if other != axis)
        panel.axhline(row, color="white", linewidth=0.8, alpha=0.8)
        panel.axvline(column, color="white", linewidth=0.8, alpha=0.8)
    return drawn


def montage(
    volume: Tensor | np.ndarray,
    maps: Tensor | np.ndarray,
    *,
    axis: int = 0,
    count: int = 16,
    alpha: float = 0.5,
    colormap: str = "jet",
) -> Figure:
    """A volume's map over its scan, slice by slice along one axis, in a near-square grid.

    The ``count`` slices are evenly spaced: slice ``floor((k + 0.5) * n / count)`` for
    ``k = 0, ..., count - 1`` of the axis's ``n``, the middle of each of ``count`` equal runs
    (so one slice is the middle one, and the scan's empty edges are skipped); every slice when
    the axis has no more than ``count``. Each panel shows the slice as :func:`slices` does,
    without the crosshair, titled ``"axis A, slice I"``, in a grid of ``ceil(sqrt(k))``
    columns.

    Args:
        volume: The scan, as :func:`slices` takes it, with values in ``[0, 1]``.
        maps: The map, as :func:`slices` takes it, of the volume's shape, in ``[0, 1]``.
        axis: The axis to slice along: 0, 1 or 2.
        count: How many slices to draw, at least 1.
        alpha: The map's opacity, in ``[0, 1]``.
        colormap: A matplotlib colormap name, for the map.

    Returns:
        The figure: one 3-inch panel per slice, at 100 dpi, row by row.

    Raises:
        TypeError: As :func:`slices` does.
        ValueError: As :func:`slices` does, or if ``axis`` is not 0, 1 or 2 or ``count`` is not
            a positive int.

    Example:
        >>> inputs = percentile_scale(read_volume("brain_t1.nii.gz").data)
        >>> maps = polycam.attribute(inputs[None, None], target=1)
        >>> montage(inputs, maps, axis=2, count=12).savefig("brain_t1_polycam.png")
    """
    if as_int(axis) not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2 (an axis of D x H x W); got {axis!r}")
    axis = int(axis)
    count = check_int("count", count)
    grey, heat = _volume_and_map(volume, maps, alpha, colormap)
    length = grey.shape[axis]
    shown = min(count, length)
    # Runs of length / shown >= 1 voxels: their middles are distinct slices.
    indices = [int((index + 0.5) * length / shown) for index in range(shown)]
    columns = math.ceil(math.sqrt(shown))
    rows = math.ceil(shown / columns)
    drawn = _NotebookFigure(_PANEL_INCHES * columns, _PANEL_INCHES * rows)
    # Only as many axes as slices: an empty grid cell gets none, so fig.axes are the slices.
    for position, index in enumerate(indices, 1):
        panel = drawn.add_subplot(rows, columns, position)
        _draw_slice(panel, grey, heat, axis, index, alpha, colormap)
    return drawn


def _volume_and_map(
    volume: Tensor | np.ndarray, maps: Tensor | np.ndarray, alpha: float, colormap: str
) -> tuple[Tensor, Tensor]:
    """The scan and its map as ``D x H x W`` float tensors in ``[0, 1]``, on the CPU, checked
    to have one shape; with the drawing options checked as :func:`overlay` checks them."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha!r}")
    if colormap not in colormaps:
        raise ValueError(f"colormap must be a matplotlib colormap name; got {colormap!r}")
    advice = {
        "volume": "scale the scan first with window (CT) or percentile_scale (MRI), from "
        "captum_polycam.resources.volumes",
        "maps": "normalise the map first, as PolyCam's maps are",
    }
    checked = []
    for name, values in (("volume", volume), ("maps", maps)):
        if not isinstance(values, (Tensor, np.ndarray)):
            raise TypeError(f"{name} must be a tensor or an array; got {type(values)}")
        voxels = torch.as_tensor(values).detach().cpu().float()
        while voxels.dim() > 3 and voxels.shape[0] == 1:
            voxels = voxels[0]
        if voxels.dim() != 3 or not voxels.numel():
            raise ValueError(
                f"{name} must be a non-empty D x H x W volume (or 1 x 1 x D x H x W); got "
                f"{tuple(values.shape)}"
            )
        # Clipping would hide a scan in Hounsfield units (drawn white) or in MRI units; NaN
        # fails both comparisons.
        if not (voxels.min() >= 0 and voxels.max() <= 1 and bool(voxels.isfinite().all())):
            raise ValueError(
                f"{name}: values must be in [0, 1]; got values from {float(voxels.min()):.4g} "
                f"to {float(voxels.max()):.4g}: {advice[name]}"
            )
        checked.append(voxels)
    grey, heat = checked
    if grey.shape != heat.shape:
        raise ValueError(
            f"maps: shape {tuple(heat.shape)} differs from the volume's {tuple(grey.shape)}; "
            "a map is drawn over the scan it was computed on, voxel for voxel"
        )
    return grey, heat


def _draw_slice(
    panel: Any, grey: Tensor, heat: Tensor, axis: int, index: int, alpha: float, colormap: str
) -> None:
    """Draw slice ``index`` along ``axis`` of the scan with its map over it, titled."""
    plane = grey.select(axis, index)
    blended = overlay(
        plane.expand(3, *plane.shape),
        heat.select(axis, index)[None, None],
        colormap=colormap,
        alpha=alpha,
    )
    panel.imshow(blended[0], interpolation="nearest")
    panel.set_title(f"axis {axis}, slice {index}")
    panel.set_axis_off()


def _photos(image: Any) -> Tensor:
    """The photo(s) as an ``N x 3 x H x W`` float tensor in ``[0, 1]``, on the CPU: integer
    pixels scaled from their range, float ones checked to lie in it."""
    if isinstance(image, Image.Image):
        # Each mode from its own range, and turned upright, as load_image reads files and
        # preprocess takes a PIL image: a map over a phone's sideways pixels would be wrong.
        image = pil_pixels(ImageOps.exif_transpose(image))
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"image: an array must be H x W x 3; got shape {image.shape}")
        image = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    if not isinstance(image, Tensor):
        raise TypeError(f"image must be a tensor, an array or a PIL image; got {type(image)}")
    photos = image[None] if image.dim() == 3 else image
    if photos.dim() != 4 or photos.shape[1] != 3:
        raise ValueError(
            f"image: a tensor must be 3 x H x W or N x 3 x H x W; got {tuple(image.shape)}"
        )
    photos = photos.detach().cpu()
    if not photos.is_floating_point():
        if photos.dtype not in _PIXEL_MAX:
            raise ValueError(
                "image: integer pixels must be uint8 (0 to 255) or uint16 (0 to 65535); got "
                f"{photos.dtype}: convert them to one of these, or to floats in [0, 1]"
            )
        # Clamping 0 to 255 pixels to [0, 1] would draw a white photo.
        return photos.float() / _PIXEL_MAX[photos.dtype]
    photos = photos.float()
    if photos.numel() and not (photos.min() >= 0 and photos.max() <= 1):
        # Clipping would draw a white photo for 0 to 255 floats, and a garbled one for the
        # model's normalised input, without a word. NaN fails both comparisons.
        raise ValueError(
            "image: a float photo must hold pixels in [0, 1]; got values from "
            f"{float(photos.min()):.3g} to {float(photos.max()):.3g}: divide 0 to 255 pixels "
            "by 255, or pass the photo as it was before preprocess"
        )
    return photos


def _maps(maps: Tensor | np.ndarray, size: torch.Size, name: str = "maps") -> Tensor:
    """The maps as an ``N x H x W`` float tensor in ``[0, 1]`` at ``size``, on the CPU; errors
    name them ``name``."""
    heat = torch.as_tensor(maps).detach().float().cpu()
    if heat.dim() == 2:
        heat = heat[None]
    if heat.dim() == 4 and heat.shape[1] == 1:
        heat = heat[:, 0]
    if heat.dim() != 3:
        raise ValueError(
            f"{name} must be N x 1 x h x w, N x h x w or h x w; got {tuple(heat.shape)}"
        )
    # Drawn as zeros (or ones), a NaN or Inf map would look like a real one; the metrics refuse
    # such attributions too.
    finite = heat.isfinite().flatten(1).all(dim=1)
    if not bool(finite.all()):
        raise ValueError(
            f"{name}: map {int((~finite).nonzero()[0])} holds NaN or Inf values; only finite "
            "maps can be drawn"
        )
    heat = upsample(heat[:, None], (int(size[0]), int(size[1])))[:, 0]
    return heat.clamp(0.0, 1.0)
