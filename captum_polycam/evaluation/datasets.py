"""The images of an evaluation as :class:`~captum_polycam.resources.images.Sample` items: a
folder of photos or of scans, or a user's dataset of ``(image, name)`` or
``(image, label, name)``."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor
from torch.utils.data import Dataset

from captum_polycam.evaluation.config import EvaluationConfig
from captum_polycam.resources.errors import EvaluationError
from captum_polycam.resources.images import (
    IMAGE_SUFFIXES,
    ImageFolder,
    Preprocessing,
    Sample,
    pil_pixels,
)
from captum_polycam.resources.volumes import SUFFIXES, VolumeFolder, VolumeIntensity

__all__ = ["NoReadableImage", "as_samples", "first_input", "holds_scans"]

# The unreadable images a message shows before "and N more".
_SHOWN_ERRORS = 3


def as_samples(
    images: str | Path | Dataset[Any],
    image_list: str | Path | Sequence[str] | None,
    labels: str | Path | dict[str, int] | None,
    config: EvaluationConfig,
) -> Dataset[Sample]:
    """``images`` as a dataset of samples: an :class:`ImageFolder` of a folder of photos or a
    :class:`VolumeFolder` of a folder of scans (with its list and labels), as the
    preprocessing says, or a user's dataset wrapped so that its items become samples.

    Raises:
        EvaluationError: A folder without preprocessing or with the other kind's, a folder
            mixing photos and scans, a list or labels with a dataset, or an object that is
            neither.
    """
    if isinstance(images, (str, Path)):
        scans = holds_scans(images, image_list)
        preprocessing = config.preprocessing
        if isinstance(preprocessing, VolumeIntensity):
            if not scans:
                raise EvaluationError(
                    f"preprocessing: VolumeIntensity scales scans ({', '.join(SUFFIXES)}), and "
                    f"{str(images)!r} holds photos: give a Preprocessing"
                )
            return VolumeFolder(images, image_list, labels, preprocessing)
        if scans:
            raise EvaluationError(
                f"preprocessing: {str(images)!r} holds scans ({', '.join(SUFFIXES)}), which "
                "need a VolumeIntensity (a CT window or percentiles); got "
                f"{type(preprocessing).__name__ if preprocessing else None}"
            )
        if preprocessing is None:
            raise EvaluationError("preprocessing: a folder of photos needs one; got None")
        return ImageFolder(images, image_list, labels, preprocessing)
    if image_list is not None or labels is not None:
        raise EvaluationError("image_list and labels apply to a folder of images, not a dataset")
    if not isinstance(images, Dataset) or not hasattr(images, "__len__"):
        raise EvaluationError(
            f"images must be a folder or a torch Dataset with a length; got {type(images)}"
        )
    return _NamedDataset(images, config.preprocessing)


def holds_scans(images: str | Path, image_list: str | Path | Sequence[str] | None = None) -> bool:
    """Whether a folder's files (or those ``image_list`` names) are scans (``.nii``,
    ``.nii.gz``, ``.npy``) rather than photos; ``False`` for a path that is not a folder, which
    the folder's dataset then refuses.

    Raises:
        EvaluationError: They mix photos and scans, or ``image_list`` is invalid.
    """
    folder = Path(images)
    if not folder.is_dir():
        return False
    # A list is read, and checked, as a photo folder's is.
    names = (
        sorted(entry.name for entry in folder.iterdir())
        if image_list is None
        else ImageFolder(folder, image_list).names
    )
    photos = [name for name in names if name.lower().endswith(IMAGE_SUFFIXES)]
    scans = [name for name in names if name.lower().endswith(SUFFIXES)]
    if photos and scans:
        where = f"{str(images)!r}" if image_list is None else f"the image list of {str(images)!r}"
        raise EvaluationError(
            f"images: {where} mixes photos ({photos[0]!r}) and scans ({scans[0]!r}); evaluate "
            "them in separate runs (separate folders, or an image list of one kind)"
        )
    return bool(scans)


class _NamedDataset(Dataset[Sample]):
    """A user's dataset of ``(image, name)`` or ``(image, label, name)`` as samples."""

    def __init__(
        self, dataset: Dataset[Any], preprocessing: Preprocessing | VolumeIntensity | None
    ) -> None:
        self.dataset = dataset
        self.preprocessing = preprocessing

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Sample:
        item = self.dataset[index]
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            raise EvaluationError(
                f"images: dataset items must be (image, name) or (image, label, name); item "
                f"{index} is {type(item).__name__}"
            )
        image, *label, name = item
        label = int(label[0]) if label and label[0] is not None else None
        if not isinstance(image, Tensor):
            image = pil_pixels(image)  # as a file's: 16-bit images in their own range
        inputs = image if self.preprocessing is None else self.preprocessing(image)
        return Sample(str(name), inputs, label, digest=_tensor_digest(image))

    def digest(self, index: int) -> str:
        """The digest of item ``index``'s image, as :meth:`__getitem__` records it."""
        digest = self[index].digest
        assert digest is not None
        return digest


def _tensor_digest(image: Tensor) -> str:
    """SHA-256 of an image tensor's shape and values: a dataset's images have no file."""
    values = image.detach().cpu().contiguous()
    return hashlib.sha256(str(tuple(values.shape)).encode() + values.numpy().tobytes()).hexdigest()


class NoReadableImage(EvaluationError):
    """None of the images can be read: the message shows the first errors, ``errors`` holds
    every image's ``(name, error)``."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        shown = "; ".join(f"{name}: {error}" for name, error in errors[:_SHOWN_ERRORS])
        more = len(errors) - _SHOWN_ERRORS
        super().__init__(
            f"images: none of the {len(errors)} image(s) can be read: {shown}"
            + (f"; and {more} more" if more > 0 else "")
        )


def first_input(dataset: Dataset[Sample]) -> Tensor:
    """An input of the dataset's size, for discovering the layers.

    Raises:
        NoReadableImage: No image of the dataset can be read.
    """
    errors = []
    for index in range(len(dataset)):  # type: ignore[arg-type]
        sample = dataset[index]
        if sample.inputs is not None:
            return sample.inputs[None]
        errors.append((sample.name, sample.error or "unreadable"))
    if not errors:
        raise EvaluationError("images: the dataset holds no image")
    raise NoReadableImage(errors)
