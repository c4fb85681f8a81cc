"""Scans as a radiologist opens them: NIfTI files (through nibabel, the ``medical`` extra) and
NumPy ``.npy`` arrays, read as one ``D x H x W`` volume, a map written back in the scan's space,
and the intensity scalings (CT windows, percentiles) that bring a scan to ``[0, 1]`` for drawing.

A volume keeps the file's voxel order: its axes are nibabel's array axes ``i, j, k`` as stored,
never reoriented, so that a map computed on it and written with :func:`write_volume` lies voxel
for voxel on the scan, and the scan's affine places both in the scanner's space.
"""

from __future__ import annotations

import importlib
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from captum_polycam._repr import settings_repr
from captum_polycam.normalisation import percentile
from captum_polycam.resources.errors import EvaluationError
from captum_polycam.resources.images import ImageFolder, Sample, file_digest

__all__ = [
    "SUFFIXES",
    "Volume",
    "VolumeFolder",
    "VolumeIntensity",
    "percentile_range",
    "percentile_scale",
    "read_volume",
    "window",
    "write_volume",
]

# The file types read and written, by the end of the file's name (case aside).
SUFFIXES = (".nii", ".nii.gz", ".npy")
_NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass(frozen=True, eq=False)
class Volume:
    """One scan: its voxels, and where they lie in the scanner's space.

    Compared by identity (``eq=False``): element-wise equality of tensors has no single truth
    value.

    Attributes:
        data: The voxels, a ``D x H x W`` float32 tensor in the file's voxel order (nibabel's
            array axes ``i, j, k``, not reoriented).
        affine: The ``4 x 4`` float64 matrix from voxel indices ``(i, j, k, 1)`` to scanner
            coordinates in millimetres; the identity for a ``.npy`` file, which has none.
        header: The file's nibabel header (zooms, units, description), or ``None`` for a
            ``.npy`` file.
        path: The file the volume was read from.

    Raises:
        TypeError: If ``data`` is not a tensor.
        ValueError: If ``data`` is not 3-D or ``affine`` is not ``4 x 4``.
    """

    data: Tensor
    affine: np.ndarray
    header: Any
    path: Path

    def __post_init__(self) -> None:
        if not isinstance(self.data, Tensor):
            raise TypeError(f"data must be a D x H x W tensor; got {type(self.data)}")
        if self.data.dim() != 3:
            raise ValueError(f"data must be a 3-D D x H x W tensor; got {tuple(self.data.shape)}")
        if np.shape(self.affine) != (4, 4):
            raise ValueError(f"affine must be a 4 x 4 matrix; got shape {np.shape(self.affine)}")
        # Frozen: the checked fields are set once, here, to their documented types.
        object.__setattr__(self, "affine", np.asarray(self.affine, dtype=np.float64))
        object.__setattr__(self, "path", Path(self.path))

    def __repr__(self) -> str:
        # The header's own repr runs to forty lines; its zooms say what matters for a map.
        zooms = None if self.header is None else tuple(float(z) for z in self.header.get_zooms())
        return settings_repr("Volume", data=self.data, zooms=zooms, path=str(self.path))


def read_volume(path: str | Path) -> Volume:
    """Read one 3-D scan from a NIfTI (``.nii``, ``.nii.gz``) or NumPy (``.npy``) file.

    Args:
        path: The file. Its suffix picks the reader: NIfTI files are read with nibabel (the
            ``medical`` extra), with their scaling (``scl_slope``, ``scl_inter``) applied;
            ``.npy`` files with NumPy, without pickled objects.

    Returns:
        The :class:`Volume`: ``D x H x W`` float32 voxels in the file's order, the file's affine
        (the identity for ``.npy``) and header (``None`` for ``.npy``). A 4-D file with one
        volume (a last axis of size 1) gives that volume.

    Raises:
        EvaluationError: (a ``ValueError``) The suffix is not ``.nii``, ``.nii.gz`` or ``.npy``;
            the file does not exist or cannot be read (damaged, truncated, or not of its
            suffix's type); it holds several volumes (a 4-D series: pick one) or is not 3-D;
            it holds NaN or Inf voxels, or values beyond float32; or nibabel, needed for
            NIfTI files, is not installed.

    Example:
        >>> scan = read_volume("chest_ct.nii.gz")
        >>> scan.data.shape, scan.header.get_zooms()
        (torch.Size([512, 512, 120]), (0.8, 0.8, 2.5))
        >>> inputs = window(scan.data, -1000.0, 400.0)[None, None]  # N x C x D x H x W
    """
    path = Path(path)
    suffix = _suffix(path, "path")
    if not path.is_file():
        raise EvaluationError(f"{str(path)!r}: no such file")
    if suffix in _NIFTI_SUFFIXES:
        array, affine, header = _read_nifti(path, suffix)
    else:
        array, affine, header = _read_npy(path), np.eye(4), None
    voxels = _three_dimensional(array, path, nifti=suffix in _NIFTI_SUFFIXES)
    # Cast first: a float64 value beyond float32's range becomes Inf here, and is refused below.
    with np.errstate(over="ignore"):
        voxels = np.ascontiguousarray(voxels, dtype=np.float32)
    finite = np.isfinite(voxels)
    if not finite.all():
        raise EvaluationError(
            f"{str(path)!r}: {int((~finite).sum())} voxels are NaN or Inf (or beyond float32); "
            "a scan needs finite values"
        )
    return Volume(torch.from_numpy(voxels), np.array(affine, dtype=np.float64), header, path)


def write_volume(path: str | Path, values: Tensor | np.ndarray, like: Volume) -> None:
    """Write a map computed on a scan, in the scan's space, as NIfTI or ``.npy``.

    A NIfTI file gets ``like``'s affine and a copy of its header (zooms, units, orientation
    codes), with float32 data, so that a viewer draws it over the scan. A ``.npy`` file has no
    affine, so it is written only for a scan whose affine is the identity (one read from
    ``.npy``): anything else would lose where the map lies.

    Args:
        path: The file to write, ``.nii``, ``.nii.gz`` or ``.npy``; an existing file is
            replaced.
        values: The map, ``D x H x W`` (or ``1 x D x H x W``, ``1 x 1 x D x H x W`` as
            :class:`~captum_polycam.PolyCam` returns it for one scan), of ``like``'s shape.
        like: The scan the map was computed on, as :func:`read_volume` returns it. A scan read
            from ``.npy`` gives NIfTI files the identity affine.

    Raises:
        TypeError: If ``values`` is neither a tensor nor an array, or ``like`` not a
            :class:`Volume`.
        ValueError: If ``values`` has another shape than ``like.data`` (after dropping the
            leading axes of size 1), or holds NaN or Inf.
        EvaluationError: (a ``ValueError``) The suffix is not ``.nii``, ``.nii.gz`` or
            ``.npy``; ``.npy`` is asked for a scan whose affine is not the identity; the file
            cannot be written; or nibabel is not installed.

    Example:
        >>> scan = read_volume("chest_ct.nii.gz")
        >>> maps = polycam.attribute(window(scan.data, -1000.0, 400.0)[None, None], target=1)
        >>> write_volume("chest_ct_polycam.nii.gz", maps, like=scan)
    """
    path = Path(path)
    suffix = _suffix(path, "path")
    if not isinstance(like, Volume):
        raise TypeError(f"like must be a Volume, as read_volume returns; got {type(like)}")
    if not isinstance(values, (Tensor, np.ndarray)):
        raise TypeError(f"values must be a tensor or an array; got {type(values)}")
    array = values.detach().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values)
    while array.ndim > 3 and array.shape[0] == 1:
        array = array[0]
    if array.shape != tuple(like.data.shape):
        raise ValueError(
            f"values: shape {tuple(np.shape(values))} does not fit the volume's "
            f"{tuple(like.data.shape)}; give D x H x W (or 1 x 1 x D x H x W) of the scan's shape"
        )
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise ValueError("values: holds NaN or Inf; only finite maps are written")
    if suffix == ".npy":
        if not np.array_equal(like.affine, np.eye(4)):
            raise EvaluationError(
                f"{str(path)!r}: a .npy file has no affine, and the scan's is not the identity, "
                "so the map would lose where it lies; write .nii.gz instead"
            )
        _write(path, lambda: np.save(path, array, allow_pickle=False))
        return
    nibabel = _nibabel(suffix)
    header = None if like.header is None else like.header.copy()
    try:
        image = nibabel.Nifti1Image(array, like.affine, header=header)
        # A CT header says int16 with a slope and intercept; the map is float32, unscaled.
        image.set_data_dtype(np.float32)
    except (nibabel.spatialimages.HeaderDataError, TypeError, ValueError) as error:
        raise EvaluationError(
            f"{str(path)!r}: cannot write the map with the scan's header ({error})"
        ) from error
    _write(path, lambda: nibabel.save(image, path))


def window(data: Tensor, low: float, high: float) -> Tensor:
    """CT windowing: clip to ``[low, high]`` and scale that range to ``[0, 1]``.

    Args:
        data: The voxels (any shape), in the scan's units (Hounsfield units for CT).
        low: The window's bottom, drawn black: for CT, ``level - width / 2``.
        high: The window's top, drawn white: for CT, ``level + width / 2``.

    Returns:
        ``(clip(data, low, high) - low) / (high - low)``, of ``data``'s shape, float (float32
        for integer voxels).

    Raises:
        TypeError: If ``data`` is not a tensor.
        ValueError: If ``low`` is not below ``high``, either is not finite, or ``data`` holds
            NaN or Inf.

    Example:
        >>> window(torch.tensor([-1000.0, 0.0, 40.0, 80.0, 3000.0]), 0.0, 80.0)  # a brain window
        tensor([0.0000, 0.0000, 0.5000, 1.0000, 1.0000])
        >>> lung = window(scan.data, -1350.0, 150.0)  # level -600, width 1500
    """
    voxels = _float_voxels(data, "window")
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"window: LOW and HIGH must be finite; got LOW={low!r}, HIGH={high!r}")
    if not low < high:
        raise ValueError(f"window: LOW must be below HIGH; got LOW={low!r}, HIGH={high!r}")
    return (voxels.clamp(low, high) - low) / (high - low)


def percentile_scale(data: Tensor, low: float = 0.5, high: float = 99.5) -> Tensor:
    """Scale so that the ``low``-th percentile of the voxels maps to 0 and the ``high``-th to 1,
    clipped: MRI's usual display scaling, whose units vary from scan to scan.

    Percentiles interpolate linearly between voxels, as ``numpy.percentile`` does. When the two
    percentiles coincide (a scan that is mostly one value), the minimum and maximum are used
    instead, so that the few other voxels still show; a constant volume gives zeros.

    Args:
        data: The voxels (any shape).
        low: The percentile drawn black, in ``[0, 100)``.
        high: The percentile drawn white, in ``(low, 100]``.

    Returns:
        The scaled voxels in ``[0, 1]``, of ``data``'s shape, float (float32 for integer
        voxels).

    Raises:
        TypeError: If ``data`` is not a tensor.
        ValueError: If not ``0 <= low < high <= 100``, or ``data`` is empty or holds NaN or
            Inf.

    Example:
        >>> scan = read_volume("brain_t1.nii.gz")
        >>> inputs = percentile_scale(scan.data)[None, None]  # N x C x D x H x W in [0, 1]
    """
    voxels = _float_voxels(data, "percentile_scale")
    bottom, top = _percentile_bounds(voxels, low, high, "percentile_scale")
    if not bool(top > bottom):
        return torch.zeros_like(voxels)
    return ((voxels - bottom) / (top - bottom)).clamp(0.0, 1.0)


def percentile_range(data: Tensor, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """The voxel values that :func:`percentile_scale` maps to 0 and 1: the ``low``-th and
    ``high``-th percentiles, or the minimum and maximum where these coincide (both equal for a
    constant volume). What a record of the scaling states, since the percentiles' values vary
    from scan to scan.

    Args:
        data: The voxels (any shape).
        low: The percentile drawn black, in ``[0, 100)``.
        high: The percentile drawn white, in ``(low, 100]``.

    Returns:
        ``(bottom, top)``, in the voxels' units.

    Raises:
        TypeError: If ``data`` is not a tensor.
        ValueError: As :func:`percentile_scale` does.

    Example:
        >>> percentile_range(torch.arange(101.0))
        (0.5, 99.5)
    """
    voxels = _float_voxels(data, "percentile_range")
    bottom, top = _percentile_bounds(voxels, low, high, "percentile_range")
    return float(bottom), float(top)


def _percentile_bounds(
    voxels: Tensor, low: float, high: float, function: str
) -> tuple[Tensor, Tensor]:
    """The values :func:`percentile_scale` maps to 0 and 1, as 0-d tensors of the voxels' type;
    errors name ``function``."""
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(
            f"{function}: percentiles must satisfy 0 <= low < high <= 100; got "
            f"low={low!r}, high={high!r}"
        )
    if voxels.numel() == 0:
        raise ValueError(f"{function}: data is empty; there are no voxels to scale")
    flat = voxels.flatten()
    bottom, top = percentile(flat, low), percentile(flat, high)
    if not bool(top > bottom):
        bottom, top = flat.min(), flat.max()
    return bottom, top


def _suffix(path: Path, argument: str) -> str:
    """The file type of ``path`` from the end of its name (``.nii.gz`` counts as one)."""
    name = path.name.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    raise EvaluationError(
        f"{argument}: cannot read or write {str(path)!r}: use {', '.join(SUFFIXES)} "
        "(by the file name's suffix)"
    )


def _nibabel(suffix: str) -> ModuleType:
    try:
        return importlib.import_module("nibabel")
    except ImportError:
        raise EvaluationError(
            f'{suffix} files need nibabel: pip install "captum-polycam[medical]"'
        ) from None


def _read_nifti(path: Path, suffix: str) -> tuple[np.ndarray, np.ndarray, Any]:
    """The voxels, affine and header of a NIfTI file."""
    nibabel = _nibabel(suffix)
    # nibabel reads lazily: a damaged or truncated file may pass load and fail in get_fdata, as
    # an ImageFileError, a gzip error (an OSError), an EOFError or a zlib error.
    unreadable = (
        nibabel.filebasedimages.ImageFileError,
        nibabel.spatialimages.HeaderDataError,
        OSError,
        EOFError,
        zlib.error,
        ValueError,
        TypeError,
    )
    try:
        image = nibabel.load(path)
        # A float64 voxel beyond float32's range becomes Inf, which read_volume refuses.
        with np.errstate(over="ignore"):
            array = image.get_fdata(dtype=np.float32)
    except unreadable as error:
        raise EvaluationError(f"{str(path)!r}: not a readable NIfTI file ({error})") from error
    return array, image.affine, image.header


def _read_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError) as error:
        raise EvaluationError(f"{str(path)!r}: not a readable .npy file ({error})") from error
    if not isinstance(array, np.ndarray) or not (
        np.issubdtype(array.dtype, np.integer)
        or np.issubdtype(array.dtype, np.floating)
        or array.dtype == np.bool_
    ):
        kind = getattr(array, "dtype", type(array))
        raise EvaluationError(f"{str(path)!r}: holds {kind} values; a scan needs real numbers")
    return array


def _three_dimensional(array: np.ndarray, path: Path, *, nifti: bool) -> np.ndarray:
    """The one 3-D volume of ``array``: trailing axes of size 1 (a 4-D file with one volume)
    dropped, a series of several volumes refused."""
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    shape = "x".join(str(side) for side in array.shape)
    if array.ndim == 4:
        how = "nibabel's image.slicer[..., 0]" if nifti else "array[..., 0]"
        raise EvaluationError(
            f"{str(path)!r} is 4-D ({shape}): the model takes one 3-D volume; pick one volume "
            f"of axis 3, e.g. with {how}"
        )
    if array.ndim != 3:
        raise EvaluationError(
            f"{str(path)!r} is {array.ndim}-D ({shape}): a 3-D volume (D x H x W) is expected"
        )
    return array


def _float_voxels(data: Tensor, function: str) -> Tensor:
    """``data`` as a float tensor (float32 for integer voxels), checked to be finite."""
    if not isinstance(data, Tensor):
        raise TypeError(f"{function}: data must be a tensor; got {type(data)}")
    voxels = data if data.is_floating_point() else data.float()
    if voxels.numel() and not bool(voxels.isfinite().all()):
        raise ValueError(f"{function}: data holds NaN or Inf; scale finite voxels only")
    return voxels


def _write(path: Path, write: Callable[[], object]) -> None:
    """Run ``write``, turning an unwritable path into an error naming it."""
    try:
        write()
    except OSError as error:
        raise EvaluationError(
            f"{str(path)!r}: cannot write the file ({error.strerror or error})"
        ) from error


# A folder of scans as an evaluation's samples: how each scan becomes a model input, recorded.

# percentile_scale's defaults: MRI's usual display scaling.
DEFAULT_PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class VolumeIntensity:
    """How a scan becomes a model input: its voxels brought to ``[0, 1]`` by a CT window or by
    percentiles, then, optionally, resampled to one size.

    A scan has no ImageNet mean and standard deviation, so the scaling is explicit; an
    evaluation records it in ``run.json`` (:meth:`as_dict`) and resumes only with the same.

    Attributes:
        window: ``(LOW, HIGH)``: :func:`window`, for CT in Hounsfield units.
        percentiles: ``(P_LOW, P_HIGH)``: :func:`percentile_scale`, for MRI, whose units vary
            from scan to scan. Give ``window`` or ``percentiles``, not both; neither gives
            ``percentiles=(0.5, 99.5)``.
        size: ``(D, H, W)``: every scan resampled to it, trilinearly (``align_corners=False``,
            without antialiasing: resample a much larger scan beforehand, as MONAI's
            ``Spacing`` does); ``None`` keeps each scan's own size.

    Raises:
        EvaluationError: (a ``ValueError``) Naming the field: both scalings given, a window
            that is not two finite numbers with ``LOW < HIGH``, percentiles outside
            ``0 <= P_LOW < P_HIGH <= 100``, or a size that is not three positive integers.

    Example:
        >>> intensity = VolumeIntensity(window=(-1000.0, 400.0), size=(64, 64, 64))
        >>> intensity(read_volume("chest_ct.nii.gz").data).shape
        torch.Size([1, 64, 64, 64])
    """

    window: tuple[float, float] | None = None
    percentiles: tuple[float, float] | None = None
    size: tuple[int, int, int] | None = None

    def __post_init__(self) -> None:
        if self.window is not None and self.percentiles is not None:
            raise EvaluationError(
                f"window: give a window or percentiles, not both; got window={self.window!r} "
                f"and percentiles={self.percentiles!r}"
            )
        if self.window is not None:
            low, high = _pair("window", self.window, "LOW", "HIGH")
            if not low < high:
                raise EvaluationError(
                    f"window: LOW must be below HIGH; got LOW={low!r}, HIGH={high!r}"
                )
            object.__setattr__(self, "window", (low, high))
        else:
            low, high = _pair(
                "percentiles", self.percentiles or DEFAULT_PERCENTILES, "P_LOW", "P_HIGH"
            )
            if not 0.0 <= low < high <= 100.0:
                raise EvaluationError(
                    "percentiles: must satisfy 0 <= P_LOW < P_HIGH <= 100; got "
                    f"P_LOW={low!r}, P_HIGH={high!r}"
                )
            object.__setattr__(self, "percentiles", (low, high))
        if self.size is not None:
            try:
                valid = len(self.size) == 3 and all(
                    int(side) == side and side >= 1 for side in self.size
                )
            except TypeError:  # not a sequence, or not of numbers
                valid = False
            if not valid:
                raise EvaluationError(
                    f"size: must be three positive integers, D H W; got {self.size!r}"
                )
            object.__setattr__(self, "size", tuple(int(side) for side in self.size))

    def __call__(self, voxels: Tensor) -> Tensor:
        """A ``D x H x W`` scan as the model input ``1 x D x H x W`` (``1 x size``), float32
        in ``[0, 1]``.

        Raises:
            TypeError: If ``voxels`` is not a tensor.
            ValueError: If it is not 3-D, is empty or holds NaN or Inf.
        """
        if not isinstance(voxels, Tensor):
            raise TypeError(f"voxels must be a D x H x W tensor; got {type(voxels).__name__}")
        if voxels.dim() != 3:
            raise ValueError(f"voxels: a D x H x W scan is expected; got {tuple(voxels.shape)}")
        if self.window is not None:
            scaled = window(voxels, *self.window)
        else:
            assert self.percentiles is not None  # set by __post_init__
            scaled = percentile_scale(voxels, *self.percentiles)
        inputs = scaled.float()[None]
        if self.size is None or tuple(inputs.shape[1:]) == self.size:
            return inputs
        # Scaled first, so that the percentiles are the scan's own; resampling values in
        # [0, 1] linearly keeps them there.
        resized = torch.nn.functional.interpolate(
            inputs[None], size=self.size, mode="trilinear", align_corners=False
        )
        return resized[0]

    def value_range(self, voxels: Tensor) -> tuple[float, float]:
        """The voxel values of ``voxels`` that the scaling maps to 0 and 1: the window itself,
        or the scan's own percentiles (:func:`percentile_range`), which a record of one scan
        states since they vary from scan to scan.

        Raises:
            TypeError: For percentiles, if ``voxels`` is not a tensor.
            ValueError: For percentiles, if it is empty or holds NaN or Inf.
        """
        if self.window is not None:
            return self.window
        assert self.percentiles is not None  # set by __post_init__
        return percentile_range(voxels, *self.percentiles)

    def as_dict(self) -> dict[str, Any]:
        """The settings as ``run.json`` records them."""
        return {
            "window": None if self.window is None else list(self.window),
            "percentiles": None if self.percentiles is None else list(self.percentiles),
            "size": None if self.size is None else list(self.size),
        }


def _pair(name: str, values: Any, low_name: str, high_name: str) -> tuple[float, float]:
    """``values`` as two finite floats, or an error naming ``name`` and its parts."""
    try:
        low, high = (float(value) for value in values)
    except (TypeError, ValueError):
        raise EvaluationError(
            f"{name}: must be two numbers, {low_name} and {high_name}; got {values!r}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise EvaluationError(
            f"{name}: {low_name} and {high_name} must be finite; got {low_name}={low!r}, "
            f"{high_name}={high!r}"
        )
    return low, high


class VolumeFolder(Dataset[Sample]):
    """The scans of a folder (``.nii``, ``.nii.gz``, ``.npy``), optionally listed and labelled
    as :class:`~captum_polycam.resources.ImageFolder`'s photos are, as evaluation samples.

    Args:
        root: The folder. Its scans are used, sorted by name, unless ``image_list`` names
            them.
        image_list: A text file with one file name (relative to ``root``) a line, or a
            sequence of names; read as :class:`~captum_polycam.resources.ImageFolder` reads
            it (blank lines and ``#`` lines skipped, names leading outside ``root`` refused).
        labels: A ``file_name class_index [anything]`` file, or a mapping of names to
            classes. Scans it does not name have no label (``unlabelled`` lists them).
        intensity: How a scan becomes a model input; ``VolumeIntensity()`` (percentiles 0.5
            and 99.5, each scan's own size) by default.

    Each :class:`~captum_polycam.resources.Sample` has the file name as ``name``, the
    ``1 x D x H x W`` input of :func:`read_volume`'s voxels after ``intensity`` as
    ``inputs``, and the SHA-256 of the file's bytes as ``digest`` (:meth:`digest`), so that a
    resumed run notices a changed file. A scan that cannot be read (damaged, truncated, 4-D,
    NaN voxels, nibabel missing) yields a sample whose ``error`` says why, so that a run
    records it and goes on.

    Raises:
        EvaluationError: ``root`` is not a folder or holds no scan, or the list or labels are
            invalid.

    Example:
        >>> scans = VolumeFolder("ct", labels="labels.txt",
        ...                      intensity=VolumeIntensity(window=(-1000.0, 400.0)))
        >>> scans[0].name, scans[0].inputs.shape
        ('case_001.nii.gz', torch.Size([1, 120, 512, 512]))
    """

    def __init__(
        self,
        root: str | Path,
        image_list: str | Path | Sequence[str] | None = None,
        labels: str | Path | Mapping[str, int] | None = None,
        intensity: VolumeIntensity | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise EvaluationError(f"images: {str(root)!r} is not a folder")
        self.intensity = intensity or VolumeIntensity()
        if image_list is None:
            names = [e.name for e in self.root.iterdir() if e.name.lower().endswith(SUFFIXES)]
            if not names:
                raise EvaluationError(f"images: no scans ({', '.join(SUFFIXES)}) in {str(root)!r}")
            image_list = sorted(names)
        # The list, its checks and the labels are exactly a photo folder's.
        listed = ImageFolder(self.root, image_list, labels)
        self.names, self.labels, self.unlabelled = listed.names, listed.labels, listed.unlabelled

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Sample:
        name = self.names[index]
        given = None if self.labels is None else self.labels.get(name)
        label = None if given is None else int(given)
        digest = self.digest(index)
        try:
            inputs = self.intensity(read_volume(self.root / name).data)
        # read_volume's errors, and the scaling's of a scan with no voxels (0 x H x W).
        except ValueError as error:
            return Sample(name, None, label, str(error), digest)
        return Sample(name, inputs, label, digest=digest)

    def digest(self, index: int) -> str | None:
        """The hex SHA-256 of the ``index``-th file's bytes, as in its sample, without reading
        the scan; ``None`` when the file cannot be read."""
        return file_digest(self.root / self.names[index])
