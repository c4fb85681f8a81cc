"""Photographs as model inputs: reading, the paper's preprocessing, and image folders.

The paper squashes every image to 224 x 224 (no crop) and applies the ImageNet mean and
standard deviation; :class:`Preprocessing` does that by default and records its settings.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as F

from captum_polycam.evaluation.errors import EvaluationError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = [
    "IMAGE_SUFFIXES",
    "SIZE",
    "ImageFolder",
    "Preprocessing",
    "Sample",
    "bundled_folder",
    "bundled_image",
    "bundled_images",
    "image_list_digest",
    "load_image",
    "normalise",
    "read_image",
]

SIZE = (224, 224)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
_BUNDLED = ("astronaut.jpg", "chelsea.png", "coffee.jpg", "rocket.jpg")


def bundled_image() -> Traversable:
    """The photo explained when no image is given: scikit-image's CC0 ``chelsea`` cat."""
    return files("captum_polycam") / "assets" / "chelsea.png"


def bundled_folder() -> Path:
    """The folder of the bundled photos (it also holds their licences, ``PHOTOS.md``)."""
    return Path(str(files("captum_polycam") / "assets"))


def bundled_images() -> list[Traversable]:
    """The four CC0 or public-domain photos shipped with the package (``assets/PHOTOS.md``)."""
    return [files("captum_polycam") / "assets" / name for name in _BUNDLED]


def _decode(path: str | Path | Traversable) -> Tensor:
    """The file's pixels as a ``3 x H x W`` float tensor in ``[0, 1]``."""
    source = Path(path) if isinstance(path, (str, os.PathLike)) else path
    try:
        with source.open("rb") as file, Image.open(file) as opened:
            # Phones store photos sideways with an EXIF rotation; use them as they were taken.
            # An animated GIF opens on its first frame.
            image = np.array(ImageOps.exif_transpose(opened).convert("RGB"))
    except (OSError, SyntaxError, ValueError) as error:  # Pillow's decoders raise all three
        if isinstance(error, UnidentifiedImageError):
            raise EvaluationError(
                f"cannot decode image {str(path)!r}: not a supported image file"
            ) from None
        reason = getattr(error, "strerror", None) or error
        raise EvaluationError(f"cannot read image {str(path)!r}: {reason}") from None
    return F.to_dtype(torch.from_numpy(image).permute(2, 0, 1), torch.float32, scale=True)


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
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise EvaluationError(
                f"mean and std need three values each, std positive; got {self.mean!r}, "
                f"{self.std!r}"
            )

    def pixels(self, image: Tensor) -> Tensor:
        """``3 x H x W`` pixels in ``[0, 1]`` squashed to ``size``, still in ``[0, 1]``."""
        resized = F.resize(image[None], list(self.size), antialias=True)[0]
        return resized.clamp(0, 1)  # antialiased resampling overshoots at sharp edges

    def normalise(self, pixels: Tensor) -> Tensor:
        """Apply ``mean`` and ``std`` to pixels in ``[0, 1]`` (``... x 3 x H x W``)."""
        return F.normalize(pixels, list(self.mean), list(self.std))

    def __call__(self, image: Tensor) -> Tensor:
        """A ``3 x H x W`` image in ``[0, 1]`` as the model input ``3 x size``."""
        return self.normalise(self.pixels(image))

    def as_dict(self) -> dict[str, Any]:
        return {key: list(value) for key, value in asdict(self).items()}


def read_image(path: str | Path | Traversable, size: tuple[int, int] | None = SIZE) -> Tensor:
    """Read a JPEG, PNG, WebP or GIF as a ``1 x 3 x H x W`` RGB tensor in ``[0, 1]``.

    Grayscale and RGBA files become RGB, and an animated GIF its first frame. The image is
    squashed to ``size`` rather than cropped, so that the whole photo is explained and can
    be drawn under its map; ``size=None`` keeps the file's own.

    Raises:
        EvaluationError: The file cannot be read or is not a supported image.
    """
    pixels = _decode(path)
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
    """One image of an evaluation: its model input, or why it could not be read."""

    name: str
    inputs: Tensor | None  # 3 x H x W, preprocessed; None when unreadable
    label: int | None
    error: str | None = None


class ImageFolder(Dataset[Sample]):
    """The images of a folder, optionally listed and labelled as in the paper's files.

    Args:
        root: The folder. Its JPEG, PNG, WebP, GIF, BMP and TIFF files (any size and mode)
            are used, sorted by name, unless ``image_list`` names them.
        image_list: A text file with one file name (relative to ``root``) a line, as the
            paper's ``images.txt``, or a sequence of names. Blank lines and lines starting
            with ``#`` are skipped.
        labels: A text file of ``file_name class_index [anything]`` lines, as the paper's
            ``imagenet_validation_imagename_labels.txt``, or a mapping of names to classes.
        preprocessing: How a photo becomes a model input.

    An image that cannot be read yields a :class:`Sample` whose ``error`` says why, so that
    a run records it and goes on.

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
            self.names = sorted(
                entry.name for entry in self.root.iterdir()
                if entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES)
            )  # fmt: skip
        elif isinstance(image_list, (str, os.PathLike)):
            self.names = _read_lines(Path(image_list), "image_list")
        else:
            self.names = [str(name) for name in image_list]
        if not self.names:
            raise EvaluationError(f"images: no image files in {str(root)!r}")
        duplicates = sorted({name for name in self.names if self.names.count(name) > 1})
        if duplicates:
            raise EvaluationError(f"image_list: names appear twice: {', '.join(duplicates[:5])}")
        self.labels = _read_labels(labels) if isinstance(labels, (str, os.PathLike)) else labels
        if self.labels is not None:
            missing = [name for name in self.names if name not in self.labels]
            if missing:
                raise EvaluationError(
                    f"labels: no class for {len(missing)} image(s), such as {missing[0]!r}"
                )

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Sample:
        name = self.names[index]
        label = None if self.labels is None else int(self.labels[name])
        try:
            inputs = self.preprocessing(_decode(self.root / name))
        except EvaluationError as error:
            return Sample(name, None, label, str(error))
        return Sample(name, inputs, label)


def _read_lines(path: Path, argument: str) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise EvaluationError(f"{argument}: cannot read {str(path)!r}: {error.strerror}") from None
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _read_labels(path: str | Path) -> dict[str, int]:
    labels = {}
    for number, line in enumerate(_read_lines(Path(path), "labels"), start=1):
        fields = line.split()
        if len(fields) < 2 or not fields[1].lstrip("-").isdigit():
            raise EvaluationError(
                f"labels: line {number} of {str(path)!r} is not 'file_name class_index': {line!r}"
            )
        labels[fields[0]] = int(fields[1])
    return labels


def image_list_digest(names: Sequence[str], labels: Sequence[int | None]) -> str:
    """SHA-256 of the ordered names and labels: two runs on the same list share it."""
    text = "\n".join(f"{name}\t{'' if label is None else label}" for name, label in
                     zip(names, labels, strict=True))  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()
