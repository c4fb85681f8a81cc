"""The evaluation's localisation: each image's ground truth in the input's frame, and the
pointing game, the energy in the ground truth and the box accuracy of every map.

The ground truth is read and matched to the run's images before the run claims its folder, so
that every fault of the file is a usage error. For each batch, each image's boxes of the
explained class (or its mask) are carried into the input's frame by the run's preprocessing;
an image left with none is *excluded*: its values are NaN and its reason is recorded, so that
it is counted, never scored as a miss. The centre prior's values are computed beside the
methods' on every batch (no forward pass), so that every localisation table shows it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from captum_polycam.evaluation.methods import centre_prior
from captum_polycam.metrics import BoxAccuracy, EnergyPointingGame, PointingGame
from captum_polycam.metrics.keys import BOX_ACCURACY, ENERGY_POINTING_GAME, POINTING_GAME
from captum_polycam.resources.errors import EvaluationError
from captum_polycam.resources.ground_truth import (
    Annotation,
    GroundTruth,
    in_input_frame,
    read_ground_truth,
)
from captum_polycam.resources.images import Preprocessing, Sample

__all__ = ["LOCALISATION", "PRIOR", "BatchTruth", "Localisation", "carry", "measure"]

# The per-image localisation values of a shard, by key.
LOCALISATION = (POINTING_GAME, ENERGY_POINTING_GAME, BOX_ACCURACY)
# The centre prior's values are stored under this prefix in every method's shard.
PRIOR = "prior_"
# EXIF orientations that swap a photo's width and height when it is turned upright.
_TURNED = (5, 6, 7, 8)
_ORIENTATION = 0x0112


@dataclass(frozen=True)
class BatchTruth:
    """The ground truth of a batch's usable images in the input's frame.

    Attributes:
        boxes: Per image, ``K x 4`` boxes ``x1, y1, x2, y2`` (empty for masks).
        masks: ``N x 1 x H x W`` bool masks, or ``None`` for boxes.
        dropped: ``(N,)`` boxes of the class left with no area in the frame.
        notes: Per image, why it is excluded (``""`` where it is not).
    """

    boxes: list[Tensor]
    masks: Tensor | None
    dropped: np.ndarray
    notes: list[str]

    @property
    def included(self) -> list[int]:
        return [row for row, note in enumerate(self.notes) if not note]

    def arrays(self) -> dict[str, np.ndarray]:
        """What a shard records of the ground truth: the boxes, flattened with their counts."""
        counts = np.array([len(boxes) for boxes in self.boxes], dtype=np.int64)
        flat = [boxes.cpu().numpy() for boxes in self.boxes if len(boxes)]
        return {
            "truth_boxes": np.concatenate(flat).astype(np.float32)
            if flat
            else np.zeros((0, 4), np.float32),
            "truth_box_counts": counts,
            "truth_dropped": self.dropped,
            "truth_notes": np.array(self.notes, dtype=str),
        }


class Localisation:
    """A run's ground truth and its localisation metrics.

    Args:
        path: The ground truth: a file or folder that
            :func:`~captum_polycam.resources.ground_truth.read_ground_truth` reads.
        format: Its format; ``None`` recognises it.
        root: The images' folder, whose files give each image's size for the checks.
        names: The run's image names, relative to ``root``.
        preprocessing: How photos become inputs; boxes follow it.
        classes: How the file's labels map to the model's classes
            (:func:`~captum_polycam.resources.boxes_for_class`).

    Raises:
        EvaluationError: The file cannot be read or holds a fault (naming the file, the image
            and the fault), it names no image of the run, a mask has another size than its
            image, or the size a file states for an image is not the image's.
    """

    def __init__(
        self,
        path: str | Path,
        format: str | None,
        root: Path,
        names: Sequence[str],
        preprocessing: Preprocessing,
        classes: Mapping[str, int] | None = None,
    ) -> None:
        self.ground_truth: GroundTruth = read_ground_truth(path, format)
        self.annotations, self.unannotated = self.ground_truth.match(names)
        self.preprocessing = preprocessing
        self.classes = classes
        self.sizes = {name: _image_size(root / name) for name in self.annotations}
        for name, annotation in self.annotations.items():
            size = self.sizes[name]
            if size is None:  # an unreadable image: the run records it in errors.csv
                continue
            # Carrying checks the mask's and the stated size against the image's (for any
            # class): every fault is found here, before the run claims its folder.
            in_input_frame(annotation, size, preprocessing, target=0, classes=classes)
        self.pointing_game = PointingGame()
        self.energy = EnergyPointingGame()
        self.box_accuracy = BoxAccuracy()

    def configuration(self) -> dict[str, Any]:
        """What ``run.json`` records: a resume with other ground truth is refused."""
        return {
            "format": self.ground_truth.format,
            "sha256": self.ground_truth.sha256,
            "images_annotated": len(self.annotations),
            "pointing_game": self.pointing_game.protocol,
            "box_accuracy": self.box_accuracy.protocol,
        }

    def batch(self, samples: Sequence[Sample], targets: Tensor) -> BatchTruth:
        """Each usable sample's ground truth for its target, in the input's frame."""
        return carry(
            [self.annotations.get(sample.name) for sample in samples],
            [sample.size for sample in samples],
            targets,
            self.preprocessing,
            masks=self.ground_truth.format == "masks",
            classes=self.classes,
        )

    def values(self, truth: BatchTruth, maps: Tensor, prefix: str = "") -> dict[str, np.ndarray]:
        """The three metrics of ``maps`` per image (see :func:`measure`), under ``prefix``."""
        measured = measure(truth, maps, self.pointing_game, self.energy, self.box_accuracy)
        return {f"{prefix}{key}": value for key, value in measured.items()} | {
            "box_thresholds": self.box_accuracy.thresholds.numpy().astype(np.float32)
        }

    def prior_values(self, truth: BatchTruth) -> dict[str, np.ndarray]:
        """The centre prior's values on the batch, stored beside each method's."""
        maps = centre_prior(len(truth.notes), self.preprocessing.size)
        return self.values(truth, maps, prefix=PRIOR)


def carry(
    annotations: Sequence[Annotation | None],
    sizes: Sequence[tuple[int, int] | None],
    targets: Tensor,
    preprocessing: Preprocessing,
    *,
    masks: bool,
    classes: Mapping[str, int] | None = None,
) -> BatchTruth:
    """Images' ground truth for their targets in the input's frame: ``annotations[i]`` of an
    image of original ``sizes[i]`` (``None`` for either leaves it out), ``masks`` when the
    ground truth is masks, ``classes`` mapping its labels to the model's classes."""
    boxes, carried, dropped, notes = [], [], [], []
    for annotation, size, target in zip(annotations, sizes, targets.tolist(), strict=True):
        if annotation is None or size is None:
            boxes.append(torch.zeros(0, 4))
            carried.append(None)
            dropped.append(0)
            notes.append("no ground truth in the file")
            continue
        kept, mask, lost = in_input_frame(
            annotation, size, preprocessing, target=int(target), classes=classes
        )
        boxes.append(kept.float())
        carried.append(mask)
        dropped.append(lost)
        notes.append(_exclusion(kept, mask, lost, int(target)))
    stacked = None
    if masks:
        empty = torch.zeros(preprocessing.size, dtype=torch.bool)
        stacked = torch.stack([empty if m is None else m for m in carried] or [empty])[:, None]
        stacked = stacked[: len(carried)]
    return BatchTruth(boxes, stacked, np.array(dropped, dtype=np.int64), notes)


def measure(
    truth: BatchTruth,
    maps: Tensor,
    pointing_game: PointingGame,
    energy: EnergyPointingGame,
    box_accuracy: BoxAccuracy,
) -> dict[str, np.ndarray]:
    """The three metrics of ``maps`` (``N x 1 x H x W``) per image: ``(N,)`` pointing-game
    hits and energies, ``(N, T)`` box-accuracy hits at each threshold; NaN where the image is
    excluded or the metric undefined (a constant map)."""
    count, thresholds = len(truth.notes), box_accuracy.thresholds
    pointing = np.full(count, np.nan, np.float32)
    inside = np.full(count, np.nan, np.float32)
    hits = np.full((count, len(thresholds)), np.nan, np.float32)
    rows = truth.included
    if rows:
        chosen = maps[rows].float().cpu()
        given: dict[str, Any] = (
            {"masks": truth.masks[rows]}
            if truth.masks is not None
            else {"boxes": [truth.boxes[row] for row in rows]}
        )
        pointing[rows] = pointing_game(chosen, **given).values.numpy()
        inside[rows] = energy(chosen, **given).values.numpy()
        hits[rows] = box_accuracy(chosen, **given).hits.float().numpy()
    return {POINTING_GAME: pointing, ENERGY_POINTING_GAME: inside, BOX_ACCURACY: hits}


def _exclusion(boxes: Tensor, mask: Tensor | None, dropped: int, target: int) -> str:
    """Why an image's ground truth leaves it out of the localisation, or ``""``."""
    if mask is not None:
        return "" if bool(mask.any()) else "its mask is empty in the input's frame"
    if len(boxes):
        return ""
    if dropped:
        return f"its {dropped} box(es) of class {target} have no area in the input's frame"
    return f"no box of class {target}"


def _image_size(path: Path) -> tuple[int, int] | None:
    """The (height, width) of the image at ``path`` upright, as the run reads it, from its
    header; ``None`` where it cannot be opened."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(_ORIENTATION) in _TURNED:
                width, height = height, width
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    return height, width


def check_folder(images: object) -> None:
    """Ground truth is matched by file name: refuse a dataset, which names its images only as
    they are read."""
    if not isinstance(images, (str, Path)):
        raise EvaluationError(
            "boxes: ground truth is matched to the images by file name, which needs a folder "
            "of images; got a dataset (write its images to a folder, or compute the metrics "
            "with captum_polycam.metrics)"
        )
