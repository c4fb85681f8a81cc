"""Photographs as model inputs: reading, the paper's preprocessing, and image folders.

The paper squashes every image to 224 x 224 (no crop) and applies the ImageNet mean and
standard deviation; :class:`Preprocessing` does that by default and records its settings.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from captum_polycam.resources.errors import EvaluationError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = [
    "IMAGE_SUFFIXES",
    "SIZE",
    "ImageFolder",
    "Preprocessing",
    "Sample",
    "bundled_boxes",
    "bundled_folder",
    "bundled_image",
    "bundled_images",
    "check_channel_values",
    "file_digest",
    "image_list_digest",
    "load_image",
    "normalise",
    "read_classes",
    "read_image",
]

SIZE = (224, 224)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
_BUNDLED = ("astronaut.jpg", "chelsea.png", "coffee.jpg", "rocket.jpg")
# Pillow's one-channel modes of more than 8 bits: 16-bit integers, 32-bit integers and floats.
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_UINT16_MAX = 65535
_INT32_MAX = 2**31 - 1
_DIGEST_BLOCK = 1 << 20


def bundled_image() -> Traversable:
    """The photo explained when no image is given: scikit-image's CC0 ``chelsea`` cat."""
    return files("captum_polycam") / "assets" / "chelsea.png"


def bundled_folder() -> Path:
    """The folder of the bundled photos (it also holds their licences, ``PHOTOS.md``)."""
    return Path(str(files("captum_polycam") / "assets"))


def bundled_boxes() -> Path:
    """The ground truth of the bundled photos: their objects' boxes, drawn by hand, as a plain
    ``image,x1,y1,x2,y2`` CSV (how they were drawn: ``assets/BOXES.md``)."""
    return bundled_folder() / "boxes.csv"


def bundled_images() -> list[Traversable]:
    """The four CC0 or public-domain photos shipped with the package (``assets/PHOTOS.md``)."""
    return [files("captum_polycam") / "assets" / name for name in _BUNDLED]


def _decode(path: str | Path | Traversable) -> tuple[Tensor, str]:
    """The file's pixels as a ``3 x H x W`` float tensor in ``[0, 1]``, and the hex SHA-256 of
    its bytes, from one read of the file.

    Raises:
        EvaluationError: The file cannot be read or decoded.
    """
    data = _read_bytes(path)
    return _decode_bytes(data, path), hashlib.sha256(data).hexdigest()


def _read_bytes(path: str | Path | Traversable) -> bytes:
    source = Path(path) if isinstance(path, (str, os.PathLike)) else path
    try:
        return source.read_bytes()
    except OSError as error:
        reason = error.strerror or error
        if isinstance(source, Path) and source.is_symlink() and not source.exists():
            # "No such file" about a name that is listed in the folder would puzzle.
            reason = f"a symbolic link to {os.readlink(source)!r}, which does not exist"
        raise EvaluationError(f"cannot read image {str(path)!r}: {reason}") from None


def _decode_bytes(data: bytes, path: str | Path | Traversable) -> Tensor:
    """The pixels of an image file's ``data`` (read from ``path``, named in errors)."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            # Phones store photos sideways with an EXIF rotation; use them as they were taken.
            # An animated GIF opens on its first frame.
            return pil_pixels(ImageOps.exif_transpose(opened))
    # Pillow's decoders raise the first three; its size limit the bomb error, and the bomb
    # warning when warnings are errors (python -W error).
    except (
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as error:
        if isinstance(error, UnidentifiedImageError):
            raise EvaluationError(
                f"cannot decode image {str(path)!r}: not a supported image file"
            ) from None
        raise EvaluationError(f"cannot read image {str(path)!r}: {error}") from None


def pil_pixels(image: Image.Image) -> Tensor:
    """A Pillow image as ``3 x H x W`` float pixels in ``[0, 1]``, each mode in its own range."""
    if image.mode not in _WIDE_MODES:
        rgb = np.array(image.convert("RGB"))
        return F.to_dtype(torch.from_numpy(rgb).permute(2, 0, 1), torch.float32, scale=True)
    # Pillow's conversion of these to RGB clips at 255: a 16-bit photo would come out white.
    values = np.array(image, dtype=np.float64)  # float64 holds every 32-bit integer exactly
    if image.mode == "F":
        scaled = values
    # Some Pillow versions and formats (16-bit PGM here) open 16-bit files as 32-bit "I".
    elif image.mode != "I" or (values.min() >= 0 and values.max() <= _UINT16_MAX):
        scaled = values / _UINT16_MAX
    else:
        scaled = values / _INT32_MAX
    grey = torch.from_numpy(scaled.clip(0.0, 1.0).astype(np.float32))
    return grey.expand(3, -1, -1).clone()


@dataclass(frozen=True)
class Preprocessing:
    """Squash an image to ``size`` (no crop) and normalise it with ``mean`` and ``std``.

    The defaults are the paper's: 224 x 224 and the ImageNet statistics. Resampling is
    bilinear with antialiasing, as PIL's resize that torchvision's transforms use on images.
    """

    size: tuple[int, int] = SIZE
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if len(self.size) != 2 or any(int(side) < 1 for side in self.size):
            raise EvaluationError(f"size must be (height, width), positive; got {self.size!r}")
        check_channel_values("mean", self.mean)
        check_channel_values("std", self.std, positive=True)

    def _geometry(
        self, value: Tensor, interpolation: F.InterpolationMode = F.InterpolationMode.BILINEAR
    ) -> Tensor:
        """Carry ``value`` (pixels, or a torchvision ``tv_tensors`` box or mask) into the input
        frame. Pixels, boxes and masks all pass here, through torchvision's dispatch on their
        type, so that they stay aligned whatever steps are added."""
        return F.resize(value, list(self.size), interpolation=interpolation, antialias=True)

    def pixels(self, image: Tensor) -> Tensor:
        """``3 x H x W`` pixels in ``[0, 1]`` squashed to ``size``, still in ``[0, 1]``."""
        resized = self._geometry(image[None])[0]
        return resized.clamp(0, 1)  # antialiased resampling overshoots at sharp edges

    def boxes(self, boxes: Tensor, image_size: tuple[int, int]) -> Tensor:
        """Boxes of the original image carried into the input frame as its pixels are, and cut
        to the frame.

        Args:
            boxes: ``K x 4`` float boxes ``x1, y1, x2, y2`` in the original image's continuous
                pixel coordinates: pixel (row ``y``, column ``x``) covers ``[x, x + 1) x
                [y, y + 1)``, so that ``(0, 0, W, H)`` is the whole image.
            image_size: The original image's ``(height, width)``.

        Returns:
            ``K x 4`` boxes, of ``boxes``' dtype, in the same coordinates of the model input
            (``size``): each side scaled with the image, then clipped to the frame. A box
            outside the frame comes out with no width or no height; the caller drops it.

        Example:
            >>> Preprocessing().boxes(torch.tensor([[0.0, 0.0, 200.0, 150.0]]), (300, 400))
            tensor([[  0.,   0., 112., 112.]])
        """
        if boxes.dim() != 2 or boxes.shape[1] != 4 or not boxes.is_floating_point():
            raise ValueError(f"boxes must be a K x 4 float tensor; got {tuple(boxes.shape)}")
        carried = self._geometry(
            tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=tuple(image_size))
        )
        return F.clamp_bounding_boxes(carried).as_subclass(Tensor)

    def mask(self, mask: Tensor) -> Tensor:
        """An ``H x W`` bool mask of the original image carried into the input frame, ``size``,
        by nearest neighbour (pixel centres to pixel centres, as the boxes are carried): it
        stays a bool mask."""
        if mask.dim() != 2:
            raise ValueError(f"mask must be an H x W tensor; got {tuple(mask.shape)}")
        # Torchvision resamples masks by nearest neighbour only; NEAREST_EXACT aligns centres
        # where NEAREST would shift the mask by up to half a pixel.
        carried = self._geometry(
            tv_tensors.Mask(mask.to(torch.uint8)), F.InterpolationMode.NEAREST_EXACT
        )
        return carried.as_subclass(Tensor).bool()

    def normalise(self, pixels: Tensor) -> Tensor:
        """Apply ``mean`` and ``std`` to pixels in ``[0, 1]`` (``... x 3 x H x W``)."""
        return F.normalize(pixels, list(self.mean), list(self.std))

    def __call__(self, image: Tensor) -> Tensor:
        """A ``3 x H x W`` image in ``[0, 1]`` as the model input ``3 x size``."""
        return self.normalise(self.pixels(image))

    def as_dict(self) -> dict[str, Any]:
        return {key: list(value) for key, value in asdict(self).items()}


def check_channel_values(name: str, values: Sequence[float], *, positive: bool = False) -> None:
    """Check a normalisation ``mean`` or ``std``: three finite numbers, one per channel, and
    with ``positive``, each above 0.

    A NaN or infinite statistic makes every input NaN, which the model and layer discovery
    would then report as their own failure.

    Raises:
        EvaluationError: Naming ``name``, what is expected and the values given.
    """
    try:
        valid = len(values) == 3 and all(
            math.isfinite(value) and (value > 0 or not positive) for value in values
        )
    except TypeError:  # not a sequence, or not of numbers
        valid = False
    if not valid:
        expected = "finite positive numbers" if positive else "finite numbers"
        raise EvaluationError(f"{name} must be three {expected}, one per channel; got {values!r}")


def read_image(path: str | Path | Traversable, size: tuple[int, int] | None = SIZE) -> Tensor:
    """Read a JPEG, PNG, WebP or GIF as a ``1 x 3 x H x W`` RGB tensor in ``[0, 1]``.

    Grayscale and RGBA files become RGB, and an animated GIF its first frame. The pixels of
    16-bit files are scaled from ``[0, 65535]``, of 32-bit integer ones from ``[0, 2**31 - 1]``
    (from the 16-bit range when their values fit it, as Pillow opens some 16-bit files as
    32-bit), and those of floating-point files clipped to ``[0, 1]``. The image is squashed to
    ``size`` rather than cropped, so that the whole photo is explained and can be drawn under
    its map; ``size=None`` keeps the file's own.

    Raises:
        EvaluationError: The file cannot be read or is not a supported image.
    """
    pixels, _ = _decode(path)
    if size is None:
        return pixels[None].clamp(0, 1)
    return Preprocessing(size=size).pixels(pixels)[None]


def normalise(pixels: Tensor) -> Tensor:
    """Apply the ImageNet mean and standard deviation to ``N x 3 x H x W`` pixels in [0, 1]."""
    return Preprocessing().normalise(pixels)


def load_image(path: str | Path | Traversable) -> Tensor:
    """Read an image as a normalised ``1 x 3 x 224 x 224`` model input (see :func:`read_image`)."""
    return normalise(read_image(path))


class Sample(NamedTuple):
    """One image or scan of an evaluation: its model input, or why it could not be read."""

    name: str
    # C x H x W for a photo, 1 x D x H x W for a scan, preprocessed; None when unreadable.
    inputs: Tensor | None
    label: int | None
    error: str | None = None
    digest: str | None = None  # hex SHA-256 of the file's bytes; None when it cannot be read
    # The original photo's (height, width) before preprocessing; None for a scan or when it
    # cannot be read. Ground truth is carried from this frame into the input's.
    size: tuple[int, int] | None = None


class ImageFolder(Dataset[Sample]):
    """The images of a folder, optionally listed and labelled as in the paper's files.

    Args:
        root: The folder. Its JPEG, PNG, WebP, GIF, BMP and TIFF files (any size and mode)
            are used, sorted by name, unless ``image_list`` names them.
        image_list: A text file with one file name (relative to ``root``) a line, as the
            paper's ``images.txt``, or a sequence of names. Blank lines and lines starting
            with ``#`` are skipped. A name that leads outside ``root`` (``../x.png``, an
            absolute path) is refused; symbolic links in ``root`` are followed.
        labels: A text file of ``file_name class_index [anything]`` lines, as the paper's
            ``imagenet_validation_imagename_labels.txt``, or a mapping of names to classes.
            A name may repeat with the same class, not with another. Images it does not name
            have no label (``unlabelled`` lists them).
        preprocessing: How a photo becomes a model input.

    An image that cannot be read or decoded (an image over Pillow's ``Image.MAX_IMAGE_PIXELS``
    limit included) yields a :class:`Sample` whose ``error`` says why, so that a run records
    it and goes on. Without ``image_list``, that includes every entry of ``root`` with an
    image's name that is not a readable file (a link to nothing, a folder named ``x.png``).
    Each sample's ``digest`` is the SHA-256 of the bytes its file had when it was read, as
    :meth:`digest` computes it without decoding.

    Example:
        >>> folder = ImageFolder("val", image_list="images.txt")
        >>> folder[0].name, folder[0].inputs.shape
        ('ILSVRC2012_val_00000001.JPEG', torch.Size([3, 224, 224]))
    """

    def __init__(
        self,
        root: str | Path | Traversable,
        image_list: str | Path | Sequence[str] | None = None,
        labels: str | Path | Mapping[str, int] | None = None,
        preprocessing: Preprocessing | None = None,
    ) -> None:
        self.root = Path(root) if isinstance(root, (str, os.PathLike)) else root
        if not self.root.is_dir():
            raise EvaluationError(f"images: {str(root)!r} is not a folder")
        self.preprocessing = preprocessing or Preprocessing()
        if image_list is None:
            # Whatever the entry is: one that cannot be read is the run's to record, not to
            # leave out without a word.
            self.names = sorted(
                entry.name
                for entry in self.root.iterdir()
                if entry.name.lower().endswith(IMAGE_SUFFIXES)
            )
        else:
            if isinstance(image_list, (str, os.PathLike)):
                lines = _read_lines(Path(image_list), "image_list")
                entries = [(f"line {n} of {str(image_list)!r}", name) for n, name in lines]
            else:
                entries = [(f"entry {n}", str(name)) for n, name in enumerate(image_list, 1)]
            for where, name in entries:
                if _outside(name):
                    raise EvaluationError(
                        f"image_list: {where}, {name!r}, leads outside the images folder "
                        f"{str(root)!r}; list files inside it, by their paths relative to it"
                    )
            self.names = [name for _, name in entries]
        if not self.names:
            raise EvaluationError(f"images: no image files in {str(root)!r}")
        duplicates = sorted({name for name in self.names if self.names.count(name) > 1})
        if duplicates:
            raise EvaluationError(f"image_list: names appear twice: {', '.join(duplicates[:5])}")
        self.labels = read_classes(labels) if isinstance(labels, (str, os.PathLike)) else labels
        # Only a run that explains the labels needs every one (it refuses these).
        self.unlabelled = [
            name for name in self.names if self.labels is not None and name not in self.labels
        ]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Sample:
        name = self.names[index]
        given = None if self.labels is None else self.labels.get(name)
        label = None if given is None else int(given)
        digest = None
        try:
            # One read gives both the pixels and the digest that identifies them in a run.
            data = _read_bytes(self.root / name)
            digest = hashlib.sha256(data).hexdigest()
            pixels = _decode_bytes(data, self.root / name)
            inputs = self.preprocessing(pixels)
        except EvaluationError as error:
            return Sample(name, None, label, str(error), digest)
        height, width = pixels.shape[-2:]
        return Sample(name, inputs, label, digest=digest, size=(height, width))

    def digest(self, index: int) -> str | None:
        """The hex SHA-256 of the ``index``-th file's bytes, as in its :class:`Sample`, without
        decoding it; ``None`` when the file cannot be read."""
        return file_digest(self.root / self.names[index])


def file_digest(path: Path) -> str | None:
    """The hex SHA-256 of a file's bytes, read a block at a time; ``None`` when it cannot be
    read. What identifies an image or a scan in a run, so that a resumed run notices a changed
    file."""
    hasher = hashlib.sha256()
    try:
        with path.open("rb") as file:
            for block in iter(lambda: file.read(_DIGEST_BLOCK), b""):
                hasher.update(block)
    except OSError:
        return None
    return hasher.hexdigest()


def _outside(name: str) -> bool:
    """Whether the file ``name`` of a folder leads out of it by its spelling: an absolute path,
    or more ``..`` than folders. A symbolic link inside the folder is followed, as a folder
    without a list follows it: a subset of a dataset made of links is a common setup."""
    return PurePath(name).is_absolute() or os.path.normpath(name).split(os.sep)[0] == ".."


def _read_lines(path: Path, argument: str) -> list[tuple[int, str]]:
    """The lines of ``path`` that hold something, stripped, with their numbers as an editor
    shows them: blank lines and lines starting with ``#`` are skipped."""
    try:
        # utf-8-sig: Windows editors start the file with a byte order mark, which would
        # otherwise become part of the first name.
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise EvaluationError(f"{argument}: cannot read {str(path)!r}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise EvaluationError(
            f"{argument}: {str(path)!r} is not UTF-8 text (byte {error.start} is "
            f"{error.object[error.start : error.start + 1]!r}); save it as UTF-8"
        ) from None
    lines = ((number, line.strip()) for number, line in enumerate(text.splitlines(), start=1))
    return [(number, line) for number, line in lines if line and not line.startswith("#")]


def read_classes(
    path: str | Path, argument: str = "labels", key: str = "file_name"
) -> dict[str, int]:
    """The classes of a file of ``key class_index [anything]`` lines, by key: a labels file
    (image names), or the classes of ground-truth labels (``--box-classes``). A key given twice
    must have one class.

    Raises:
        EvaluationError: Naming ``argument``, the file and the line.
    """
    labels: dict[str, tuple[int, int]] = {}  # key: (class, line)
    for number, line in _read_lines(Path(path), argument):
        fields = line.split()
        if len(fields) < 2 or not fields[1].lstrip("-").isdigit():
            raise EvaluationError(
                f"{argument}: line {number} of {str(path)!r} is not '{key} class_index': {line!r}"
            )
        name, label = fields[0], int(fields[1])
        first, first_line = labels.setdefault(name, (label, number))
        if first != label:
            raise EvaluationError(
                f"{argument}: {str(path)!r} gives {name!r} two classes, {first} on line "
                f"{first_line} and {label} on line {number}; keep one"
            )
    return {name: label for name, (label, _) in labels.items()}


def image_list_digest(names: Sequence[str], labels: Sequence[int | None]) -> str:
    """SHA-256 of the ordered names and labels: two runs on the same list share it."""
    text = "\n".join(
        f"{name}\t{'' if label is None else label}"
        for name, label in zip(names, labels, strict=True)
    )
    return hashlib.sha256(text.encode()).hexdigest()
