"""Reading photographs into the 224 x 224 ImageNet-normalised tensors the models expect."""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torchvision.transforms.v2 import functional as F

from captum_polycam.cli import CliError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["SIZE", "bundled_image", "load_image", "normalise", "read_image"]

SIZE = (224, 224)
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def bundled_image() -> Traversable:
    """The photo explained when no image is given: scikit-image's CC0 ``chelsea`` cat."""
    return files("captum_polycam") / "assets" / "chelsea.png"


def read_image(path: str | Path | Traversable) -> Tensor:
    """Read a JPEG, PNG, WebP or GIF as a ``1 x 3 x 224 x 224`` RGB tensor in ``[0, 1]``.

    Grayscale and RGBA files become RGB, and an animated GIF its first frame. The image is
    squashed to 224 x 224 rather than cropped, so that the whole photo is explained and can
    be drawn under its map.

    Raises:
        CliError: The file cannot be read or is not a supported image.
    """
    source = Path(path) if isinstance(path, (str, os.PathLike)) else path
    try:
        with source.open("rb") as file, Image.open(file) as opened:
            # Phones store photos sideways with an EXIF rotation; show them as they were taken.
            # An animated GIF opens on its first frame.
            image = np.array(ImageOps.exif_transpose(opened).convert("RGB"))
    except OSError as error:
        if isinstance(error, UnidentifiedImageError):
            raise CliError(
                f"cannot decode image {str(path)!r}: not a JPEG, PNG, WebP or GIF file"
            ) from None
        raise CliError(f"cannot read image {str(path)!r}: {error.strerror or error}") from None
    image = torch.from_numpy(image).permute(2, 0, 1)
    image = F.to_dtype(image, torch.float32, scale=True)
    resized = F.resize(image[None], list(SIZE), antialias=True)
    return resized.clamp(0, 1)  # antialiased resampling overshoots slightly at sharp edges


def normalise(pixels: Tensor) -> Tensor:
    """Apply the ImageNet mean and standard deviation to ``N x 3 x H x W`` pixels in [0, 1]."""
    return F.normalize(pixels, list(_MEAN), list(_STD))


def load_image(path: str | Path | Traversable) -> Tensor:
    """Read an image as a normalised ``1 x 3 x 224 x 224`` model input (see :func:`read_image`)."""
    return normalise(read_image(path))
