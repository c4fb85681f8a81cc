"""Where the objects are: ground-truth boxes and masks from the files people have, matched to
a run's images, selected for the class explained, and carried into the model input's frame.

Every box is held in one convention, whatever the file's: ``x1, y1, x2, y2`` in continuous
pixel coordinates, where pixel (row ``y``, column ``x``) covers ``[x, x + 1) x [y, y + 1)``;
``(0, 0, W, H)`` is the whole of a ``W``-wide, ``H``-high image. Each format's own convention is
converted on reading (see :func:`read_ground_truth`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from captum_polycam.resources.errors import EvaluationError
from captum_polycam.resources.images import IMAGE_SUFFIXES, Preprocessing

__all__ = [
    "FORMATS",
    "IMAGENET_WNIDS",
    "Annotation",
    "GroundTruth",
    "boxes_for_class",
    "imagenet_class_index",
    "in_input_frame",
    "read_ground_truth",
]

FORMATS: tuple[str, ...] = ("xml", "imagenet-csv", "coco", "csv", "masks")
_FORMATS_EXPLAINED = (
    "xml (a folder of ImageNet or Pascal VOC XML files), imagenet-csv (ImageNet's "
    "LOC_val_solution.csv), coco (a COCO instances JSON), csv (columns image,x1,y1,x2,y2 and "
    "an optional class) and masks (a folder of binary mask images)"
)
_LOC_HEADER = ["ImageId", "PredictionString"]
_CSV_COLUMNS = ("image", "x1", "y1", "x2", "y2")
_WNID = re.compile(r"n\d{8}")
_CLASS_INDEX = re.compile(r"\d+")

# The 1000 classes of ImageNet-1k (ILSVRC 2012) as WordNet ids, sorted: the class index of a
# wnid, in torchvision's, timm's and the paper's models, is its position.
IMAGENET_WNIDS: tuple[str, ...] = tuple(
    (files("captum_polycam") / "resources" / "imagenet_wnids.txt").read_text().split()
)
_WNID_INDEX = {wnid: index for index, wnid in enumerate(IMAGENET_WNIDS)}

Classes = Mapping[str, int] | Callable[[str], int | None]


def imagenet_class_index(wnid: str) -> int:
    """The ImageNet-1k class index of a WordNet id: its position in :data:`IMAGENET_WNIDS`.

    Raises:
        EvaluationError: ``wnid`` is not one of the 1000 classes.

    Example:
        >>> imagenet_class_index("n01440764"), imagenet_class_index("n15075141")
        (0, 999)
    """
    index = _WNID_INDEX.get(wnid)
    if index is None:
        raise EvaluationError(
            f"{wnid!r} is not one of ImageNet-1k's 1000 class wnids; pass classes to map "
            "the file's labels to the model's classes"
        )
    return index


@dataclass(frozen=True, eq=False)
class Annotation:
    """The ground truth of one image.

    Attributes:
        boxes: ``K x 4`` float64 boxes ``x1, y1, x2, y2`` in the module's pixel convention,
            each with ``x1 < x2`` and ``y1 < y2``; ``0 x 4`` where the file has none.
        labels: One label per box, as the file names its class (an ImageNet wnid, a VOC or
            COCO class name, a CSV ``class`` value); ``""`` where the file names none.
        mask: The object's ``H x W`` bool mask (a ``masks`` folder), else ``None``.
        size: The image's ``(height, width)`` as the file states it (XML, COCO), else ``None``.
        image: The file's key for the image (errors name it).
        source: The file it was read from (errors name it).
    """

    boxes: Tensor
    labels: tuple[str, ...]
    mask: Tensor | None = None
    size: tuple[int, int] | None = None
    image: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        if self.boxes.dim() != 2 or self.boxes.shape[1] != 4:
            raise ValueError(f"boxes must be K x 4; got {tuple(self.boxes.shape)}")
        if len(self.labels) != len(self.boxes):
            raise ValueError(f"{len(self.boxes)} boxes but {len(self.labels)} labels")
        if self.mask is not None and (self.mask.dim() != 2 or self.mask.dtype != torch.bool):
            raise ValueError(f"mask must be an H x W bool tensor; got {tuple(self.mask.shape)}")


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """The annotations of a ground-truth file or folder, by image (see :func:`read_ground_truth`).

    Attributes:
        path: The file or folder read.
        format: One of :data:`FORMATS`.
        sha256: The hex SHA-256 of the file; for a folder, over the sorted relative names of
            the files read, each followed by its bytes' SHA-256: a run records it, so that its
            results name the ground truth they were measured against.
        annotations: The :class:`Annotation` of each image, by the file's key: the XML or mask
            file's stem, the COCO ``file_name``, the CSV ``image`` or ``ImageId``.
    """

    path: str
    format: str
    sha256: str
    annotations: Mapping[str, Annotation]
    _by_base: dict[str, list[str]] = field(init=False, repr=False)
    _by_stem: dict[str, list[str]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "annotations", MappingProxyType(dict(self.annotations)))
        by_base: dict[str, list[str]] = {}
        by_stem: dict[str, list[str]] = {}
        for key in self.annotations:
            by_base.setdefault(_without_image_suffix(key), []).append(key)
            by_stem.setdefault(_stem(key), []).append(key)
        object.__setattr__(self, "_by_base", by_base)
        object.__setattr__(self, "_by_stem", by_stem)

    def __len__(self) -> int:
        return len(self.annotations)

    def find(self, image_name: str) -> Annotation | None:
        """The annotation of a run's image, or ``None`` where the file has none.

        A run names an image by its path relative to the image folder (``sub/cat.jpg``); the
        file keys it by its own name. They match, in this order, by:

        1. the exact name: the key ``sub/cat.jpg``;
        2. the name without its image suffix (``.jpg``, ``.JPEG``, ``.png``, ...), the key's
           also dropped: ``sub/cat``, ``sub/cat.png``;
        3. the file stem, the last part of the name without its image suffix: ``cat``, as an
           ImageNet XML file ``ILSVRC2012_val_00000001.xml`` names the image
           ``ILSVRC2012_val_00000001.JPEG`` of any folder.

        Raises:
            EvaluationError: At the first rule that matches, two keys match.
        """
        if image_name in self.annotations:
            return self.annotations[image_name]
        for index, rule in ((self._by_base, _without_image_suffix), (self._by_stem, _stem)):
            keys = index.get(rule(image_name), [])
            if len(keys) > 1:
                shown = ", ".join(repr(key) for key in keys[:3])
                raise EvaluationError(
                    f"ground truth: {self.path!r} has several entries that image "
                    f"{image_name!r} may be ({shown}); name the images as the file does"
                )
            if keys:
                return self.annotations[keys[0]]
        return None

    def match(self, image_names: Iterable[str]) -> tuple[dict[str, Annotation], list[str]]:
        """The annotations of a run's images (see :meth:`find`), and the images with none.

        Returns:
            ``(found, missing)``: the annotation of each image that has one, by the run's name,
            and the names of those without, in the run's order.

        Raises:
            EvaluationError: No image of the run has annotations: the file and the run name
                their images differently, or the file is of other images.
        """
        found: dict[str, Annotation] = {}
        missing: list[str] = []
        for name in image_names:
            annotation = self.find(name)
            if annotation is None:
                missing.append(name)
            else:
                found[name] = annotation
        if not found:
            keys = next(iter(self.annotations), None)
            example = "it names no image" if keys is None else f"it names images as {keys!r}"
            shown = f", the run as {missing[0]!r}" if missing else ""
            raise EvaluationError(
                f"ground truth: no image of the run has annotations in {self.path!r} "
                f"({len(missing)} of {len(missing)} images have none): {example}{shown}; "
                "images are matched by name, then without suffix, then by file stem"
            )
        return found, missing


def read_ground_truth(path: str | os.PathLike[str], format: str | None = None) -> GroundTruth:
    """Read ground-truth boxes or masks, converting each format's box convention to ours.

    Args:
        path: A file or folder of one of these formats:

            - ``"xml"``: a folder (searched recursively) of ImageNet or Pascal VOC XML files,
              one per image, keyed by the file's stem (``ILSVRC2012_val_00000001.xml`` is the
              image ``ILSVRC2012_val_00000001.JPEG``). Each ``object`` gives a box
              (``bndbox/xmin, ymin, xmax, ymax``) and its class (``name``); ``size/width,
              height`` the image's size. The corners are the first and last pixels the box
              covers (inclusive indices), as both challenges' evaluation code measures them
              (width ``xmax - xmin + 1``). Pascal VOC counts pixels from 1 (its annotations
              state "top left pixel co-ordinates: (1, 1)"): ``x1 = xmin - 1, x2 = xmax``.
              ImageNet counts them from 0 (its boxes start at 0 and end at ``width - 1``):
              ``x1 = xmin, x2 = xmax + 1``. A folder whose objects are all named by wnids
              (``n01440764``) is ImageNet's, any other Pascal VOC's.
            - ``"imagenet-csv"``: ImageNet's ``LOC_val_solution.csv``: header
              ``ImageId,PredictionString``, each string repeating ``wnid xmin ymin xmax ymax``;
              keyed by ``ImageId`` (no suffix). Its numbers are those of ImageNet's XML files,
              converted as they are.
            - ``"coco"``: a COCO instances JSON; ``bbox`` is ``x, y, width, height`` from the
              image's top-left corner (0-indexed, continuous): ``x1 = x, x2 = x + width``.
              Keyed by ``file_name``; labels are category names. Crowd regions
              (``iscrowd: 1``) are kept as boxes: they are where objects of the class are.
              Images without annotations have no boxes; segmentations are not read.
            - ``"csv"``: header ``image,x1,y1,x2,y2`` and an optional ``class`` column (other
              columns are ignored), one row per box, in our convention as they are.
            - ``"masks"``: a folder (searched recursively) of binary mask images, keyed by
              file stem: pixel values 0 and 255, or 0 and 1 (and ``True``/``False`` of a 1-bit
              image); a mask with no boxes and no stated size.

            Several rows or objects of one image add up to its boxes.
        format: One of :data:`FORMATS`; ``None`` recognises it from ``path``: a folder of
            ``.xml`` files is ``xml``, one of images ``masks``, a ``.json`` file ``coco``, a
            ``.csv`` file ``imagenet-csv`` with ``LOC_val_solution.csv``'s header, else ``csv``.

    Returns:
        The annotations, by image, with the path, format and SHA-256 read.

    Raises:
        EvaluationError: In one line naming the file, the image (and row or object) and the
            fault: the path cannot be read or its format recognised; a box is not finite, has
            no width (``x2 <= x1``) or no height, or a value is not a number; an XML object has
            no ``bndbox``; a CSV lacks columns; a COCO annotation names an image or category
            that the file does not list; a mask is not binary; two files key the same image.

    Example:
        >>> truth = read_ground_truth("boxes.csv")  # image,x1,y1,x2,y2 then cat.jpg,10,20,110,220
        >>> truth.find("photos/cat.jpg").boxes
        tensor([[ 10.,  20., 110., 220.]], dtype=torch.float64)
    """
    source = Path(path)
    if not source.exists():
        raise EvaluationError(f"ground truth: cannot read {str(path)!r}: no such file or folder")
    if format is None:
        format = _recognise(source)
    elif format not in FORMATS:
        raise EvaluationError(
            f"ground truth: format must be one of {', '.join(FORMATS)}; got {format!r}"
        )
    if format in ("xml", "masks"):
        if not source.is_dir():
            raise EvaluationError(
                f"ground truth: {str(path)!r} is not a folder; the {format} format is a folder "
                "of files, one per image"
            )
        suffixes = (".xml",) if format == "xml" else IMAGE_SUFFIXES
        contents = {entry: _read_bytes(entry) for entry in _folder_files(source, suffixes)}
        if not contents:
            raise EvaluationError(f"ground truth: {str(path)!r} holds no {format} file")
        digest = _folder_digest(source, contents)
        read = _read_xml if format == "xml" else _read_masks
        annotations = read(contents)
    else:
        if source.is_dir():
            raise EvaluationError(
                f"ground truth: {str(path)!r} is a folder; the {format} format is one file"
            )
        data = _read_bytes(source)
        digest = hashlib.sha256(data).hexdigest()
        text = _text(source, data)
        readers = {"imagenet-csv": _read_loc_csv, "coco": _read_coco, "csv": _read_csv}
        annotations = readers[format](str(source), text)
    return GroundTruth(str(path), format, digest, annotations)


def boxes_for_class(annotation: Annotation, target: int, classes: Classes | None = None) -> Tensor:
    """The boxes that count for an image explained as class ``target``.

    A box counts where its label maps to ``target``. ``classes`` is how a label maps to the
    model's class index:

    - a mapping ``label -> index``: a label it does not hold maps to none;
    - a callable ``label -> index or None``;
    - ``None`` (the default): a wnid label (``n01440764``) maps to its ImageNet-1k index
      (:func:`imagenet_class_index`), a label of digits (a CSV ``class`` column) is the index
      itself, any other (a VOC or COCO name, ``""``) maps to none. Where no label of the image
      maps to a class, the file names no model class, and every box counts.

    With ``classes`` given, only the boxes whose label maps to ``target`` count, even where
    none does. Either way a file that names classes may leave an image with no box for the
    class explained (the model's guess, say): an empty ``0 x 4`` tensor.

    Raises:
        EvaluationError: By default, a wnid label that is not an ImageNet-1k class.

    Example:
        >>> boxes_for_class(annotation, imagenet_class_index("n01440764"))
        tensor([[ 10.,  20., 110., 220.]], dtype=torch.float64)
    """
    indices = [_class_of(label, classes, annotation) for label in annotation.labels]
    if classes is None and all(index is None for index in indices):
        return annotation.boxes
    keep = torch.tensor([index == target for index in indices], dtype=torch.bool)
    return annotation.boxes[keep]


def in_input_frame(
    annotation: Annotation,
    image_size: tuple[int, int],
    preprocessing: Preprocessing,
    target: int,
    classes: Classes | None = None,
) -> tuple[Tensor, Tensor | None, int]:
    """An image's ground truth for class ``target`` in the model input's frame.

    The boxes that count (:func:`boxes_for_class`) are carried as the image's pixels are
    (:meth:`Preprocessing.boxes`), cut to the frame; those left with no area (outside the
    frame) are dropped and counted. The mask is carried by nearest neighbour and stays bool.

    Args:
        annotation: The image's ground truth (:meth:`GroundTruth.find`).
        image_size: The original image's ``(height, width)``, as :class:`Sample` records it.
        preprocessing: How the image became the model input.
        target: The class explained.
        classes: How labels map to the model's classes (see :func:`boxes_for_class`).

    Returns:
        ``(boxes, mask, dropped)``: ``K x 4`` float64 boxes in the input's pixel coordinates,
        the ``size`` bool mask or ``None``, and the number of boxes dropped.

    Raises:
        EvaluationError: The file states another size for the image (it is of another image:
            ImageNet's and COCO's sizes are the images'), or the mask is of another size than
            the image.
    """
    height, width = image_size
    if annotation.size is not None and tuple(annotation.size) != (height, width):
        stated_height, stated_width = annotation.size
        raise EvaluationError(
            f"ground truth: {annotation.source!r}, image {annotation.image!r}: the file gives "
            f"its size as {stated_height} x {stated_width} (height x width) but the image is "
            f"{height} x {width}: the annotations are of another image"
        )
    mask = annotation.mask
    if mask is not None:
        if tuple(mask.shape) != (height, width):
            raise EvaluationError(
                f"ground truth: mask {annotation.source!r} of image {annotation.image!r} is "
                f"{mask.shape[0]} x {mask.shape[1]} (height x width) but the image is "
                f"{height} x {width}"
            )
        mask = preprocessing.mask(mask)
    boxes = preprocessing.boxes(boxes_for_class(annotation, target, classes), (height, width))
    kept = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes[kept], mask, int((~kept).sum())


# Reading.


def _recognise(path: Path) -> str:
    """The format of ``path`` by what it is (see :func:`read_ground_truth`)."""
    if path.is_dir():
        xml = bool(_folder_files(path, (".xml",)))
        images = bool(_folder_files(path, IMAGE_SUFFIXES))
        if xml != images:
            return "xml" if xml else "masks"
        reason = "it holds both XML and image files" if xml else "it holds no XML or image file"
    elif path.suffix.lower() == ".json":
        return "coco"
    elif path.suffix.lower() == ".csv":
        text = _text(path, _read_bytes(path))
        header = next(csv.reader(io.StringIO(text)), [])
        return "imagenet-csv" if [cell.strip() for cell in header] == _LOC_HEADER else "csv"
    else:
        reason = f"a {path.suffix or 'suffixless'} file is none of them"
    raise EvaluationError(
        f"ground truth: cannot tell the format of {str(path)!r} ({reason}); the formats are "
        f"{_FORMATS_EXPLAINED}: pass format"
    )


def _folder_files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(
        entry for entry in folder.rglob("*") if entry.suffix.lower() in suffixes and entry.is_file()
    )


def _folder_digest(folder: Path, contents: Mapping[Path, bytes]) -> str:
    """SHA-256 over the files' relative names, sorted, each followed by its bytes' SHA-256."""
    hasher = hashlib.sha256()
    for name, data in sorted(
        (path.relative_to(folder).as_posix(), data) for path, data in contents.items()
    ):
        hasher.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return hasher.hexdigest()


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise EvaluationError(
            f"ground truth: cannot read {str(path)!r}: {error.strerror or error}"
        ) from None


def _text(path: Path, data: bytes) -> str:
    try:
        # utf-8-sig: a byte order mark that Windows editors write would join the first header.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise EvaluationError(
            f"ground truth: {str(path)!r} is not UTF-8 text (byte {error.start} is "
            f"{data[error.start : error.start + 1]!r}); save it as UTF-8"
        ) from None


class _Place:
    """Where in a file a value is: the file, the image and the row or object; its errors name
    all three, in one line."""

    def __init__(self, file: str, image: str, item: str = "") -> None:
        self.file, self.image, self.item = file, image, item

    def error(self, fault: str) -> EvaluationError:
        item = f", {self.item}" if self.item else ""
        return EvaluationError(f"ground truth: {self.file!r}, image {self.image!r}{item}: {fault}")

    def number(self, text: str | None, name: str) -> float:
        """``text`` as a number (``nan`` and ``inf`` too: :meth:`box` refuses them)."""
        if text is None or not text.strip():
            raise self.error(f"{name} is not a number: missing")
        try:
            return float(text)
        except ValueError:
            raise self.error(f"{name} is not a number: {text!r}") from None

    def box(self, corners: Sequence[float], written: str) -> list[float]:
        """``corners`` (ours) if the box they make is finite and not empty; ``written`` shows
        its values as the file gives them."""
        x1, y1, x2, y2 = corners
        if not all(math.isfinite(value) for value in corners):
            raise self.error(f"box is not finite: {written}")
        if x2 <= x1:
            raise self.error(f"box has no width, its right edge not right of its left: {written}")
        if y2 <= y1:
            raise self.error(f"box has no height, its bottom not below its top: {written}")
        return [x1, y1, x2, y2]


class _Builder:
    """Boxes and labels gathered by image, in the order the file first names them."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.boxes: dict[str, list[list[float]]] = {}
        self.labels: dict[str, list[str]] = {}
        self.sizes: dict[str, tuple[int, int] | None] = {}

    def image(self, key: str, size: tuple[int, int] | None = None) -> None:
        self.boxes.setdefault(key, [])
        self.labels.setdefault(key, [])
        self.sizes.setdefault(key, size)

    def add(self, key: str, box: list[float], label: str) -> None:
        self.image(key)
        self.boxes[key].append(box)
        self.labels[key].append(label)

    def annotations(self, sources: Mapping[str, str] | None = None) -> dict[str, Annotation]:
        return {
            key: Annotation(
                torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4),
                tuple(self.labels[key]),
                size=self.sizes[key],
                image=key,
                source=self.source if sources is None else sources[key],
            )
            for key, boxes in self.boxes.items()
        }


def _size(place: _Place, width: str | None, height: str | None) -> tuple[int, int] | None:
    """``(height, width)`` as a file states them, or ``None`` where it does not: some tools
    write ``0`` for a size they did not know."""
    if width is None and height is None:
        return None
    values = []
    for name, text in (("height", height), ("width", width)):
        value = place.number(text, f"size {name}")
        if not value.is_integer() or value < 0:
            raise place.error(f"size {name} is not a whole number of pixels: {text!r}")
        values.append(int(value))
    return None if 0 in values else (values[0], values[1])


def _read_xml(contents: Mapping[Path, bytes]) -> dict[str, Annotation]:
    objects: dict[str, list[tuple[_Place, str, list[float], str]]] = {}
    builder = _Builder("")
    sources: dict[str, str] = {}
    for path, data in contents.items():
        key = path.stem
        if key in sources:
            raise EvaluationError(
                f"ground truth: {sources[key]!r} and {str(path)!r} both annotate image {key!r}; "
                "keep one"
            )
        sources[key] = str(path)
        try:
            # Python's expat refuses entity expansion attacks; these are the user's own files.
            root = ElementTree.fromstring(data)
        except ElementTree.ParseError as error:
            raise EvaluationError(
                f"ground truth: {str(path)!r}, image {key!r}: not well-formed XML: {error}"
            ) from None
        place = _Place(str(path), key)
        if root.tag != "annotation":
            raise place.error(
                f"not an ImageNet or Pascal VOC annotation: its root element is <{root.tag}>, "
                "not <annotation>"
            )
        size = root.find("size")
        stated = (
            None if size is None else _size(place, size.findtext("width"), size.findtext("height"))
        )
        builder.image(key, stated)
        found = objects.setdefault(key, [])
        for number, element in enumerate(root.findall("object"), start=1):
            label = (element.findtext("name") or "").strip()
            at = _Place(str(path), key, f"object {number} ({label or 'no name'})")
            bndbox = element.find("bndbox")
            if bndbox is None:
                raise at.error("no bndbox: each object needs its xmin, ymin, xmax, ymax")
            names = ("xmin", "ymin", "xmax", "ymax")
            texts = [bndbox.findtext(name) for name in names]
            values = [at.number(text, name) for name, text in zip(names, texts, strict=True)]
            written = " ".join(f"{name}={text}" for name, text in zip(names, texts, strict=True))
            found.append((at, label, values, written))
    # One convention for the whole folder, so that its files cannot be read two ways.
    labels = [label for entries in objects.values() for _, label, _, _ in entries]
    imagenet = bool(labels) and all(_WNID.fullmatch(label) for label in labels)
    for key, entries in objects.items():
        for at, label, (xmin, ymin, xmax, ymax), written in entries:
            corners = (
                [xmin, ymin, xmax + 1, ymax + 1]  # ImageNet: inclusive, from 0
                if imagenet
                else [xmin - 1, ymin - 1, xmax, ymax]  # Pascal VOC: inclusive, from 1
            )
            builder.add(key, at.box(corners, written), label)
    return builder.annotations(sources)


def _read_loc_csv(source: str, text: str) -> dict[str, Annotation]:
    rows = csv.reader(io.StringIO(text))
    header = [cell.strip() for cell in next(rows, [])]
    if header != _LOC_HEADER:
        raise EvaluationError(
            f"ground truth: {source!r} is not ImageNet's LOC_val_solution.csv: its header is "
            f"{','.join(header)!r}, not 'ImageId,PredictionString'"
        )
    builder = _Builder(source)
    for row in rows:
        if not any(cell.strip() for cell in row):
            continue
        line = rows.line_num
        key = row[0].strip()
        place = _Place(source, key, f"line {line}")
        if len(row) != 2:
            raise place.error(f"expected 2 columns, ImageId and PredictionString; got {len(row)}")
        fields = row[1].split()
        if len(fields) % 5:
            raise place.error(
                f"PredictionString holds {len(fields)} values, not groups of 5 "
                "(wnid xmin ymin xmax ymax)"
            )
        builder.image(key)
        for start in range(0, len(fields), 5):
            wnid, *texts = fields[start : start + 5]
            at = _Place(source, key, f"line {line}, box {start // 5 + 1} ({wnid})")
            xmin, ymin, xmax, ymax = (
                at.number(text, name)
                for name, text in zip(("xmin", "ymin", "xmax", "ymax"), texts, strict=True)
            )
            written = " ".join(fields[start : start + 5])
            # ImageNet's XML numbers: inclusive pixel indices from 0.
            builder.add(key, at.box([xmin, ymin, xmax + 1, ymax + 1], written), wnid)
    return builder.annotations()


def _read_csv(source: str, text: str) -> dict[str, Annotation]:
    rows = csv.reader(io.StringIO(text))
    header = [cell.strip().lower() for cell in next(rows, [])]
    missing = [column for column in _CSV_COLUMNS if column not in header]
    if missing:
        raise EvaluationError(
            f"ground truth: {source!r} lacks the column(s) {', '.join(missing)}: a box file's "
            f"header is image,x1,y1,x2,y2 (and an optional class); got {','.join(header)!r}"
        )
    columns = {name: header.index(name) for name in (*_CSV_COLUMNS, "class") if name in header}
    builder = _Builder(source)
    for row in rows:
        if not any(cell.strip() for cell in row):
            continue
        cells = {name: row[index] if index < len(row) else None for name, index in columns.items()}
        key = (cells["image"] or "").strip()
        place = _Place(source, key, f"line {rows.line_num}")
        if not key:
            raise place.error("the image column is empty")
        corners = [place.number(cells[name], name) for name in _CSV_COLUMNS[1:]]
        written = " ".join(f"{name}={cells[name]}" for name in _CSV_COLUMNS[1:])
        builder.add(key, place.box(corners, written), (cells.get("class") or "").strip())
    return builder.annotations()


def _read_coco(source: str, text: str) -> dict[str, Annotation]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise EvaluationError(f"ground truth: {source!r} is not valid JSON: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise EvaluationError(
            f"ground truth: {source!r} is not a COCO instances file: it has no 'images' list"
        )
    categories = {
        category.get("id"): str(category.get("name", ""))
        for category in data.get("categories") or []
        if isinstance(category, dict)
    }
    builder = _Builder(source)
    keys: dict[Any, str] = {}
    for number, image in enumerate(data["images"], start=1):
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            raise EvaluationError(
                f"ground truth: {source!r}, images entry {number}: needs an id and a file_name"
            )
        key = str(image["file_name"])
        place = _Place(source, key, f"images entry {number}")
        if key in builder.boxes:
            raise place.error("the file_name is listed twice")
        if image["id"] in keys:
            raise place.error(f"id {image['id']!r} is also {keys[image['id']]!r}'s")
        keys[image["id"]] = key
        width, height = image.get("width"), image.get("height")
        builder.image(key, _size(place, _str(width), _str(height)))
    for number, annotation in enumerate(data.get("annotations") or [], start=1):
        image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
        if image_id not in keys:
            raise EvaluationError(
                f"ground truth: {source!r}, annotation {number} (id "
                f"{annotation.get('id') if isinstance(annotation, dict) else None!r}): its "
                f"image_id {image_id!r} is not in images"
            )
        key = keys[image_id]
        place = _Place(source, key, f"annotation {number}")
        bbox = annotation.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise place.error(f"bbox must be [x, y, width, height]; got {bbox!r}")
        x, y, box_width, box_height = (
            place.number(_str(value), f"bbox {name}")
            for name, value in zip(("x", "y", "width", "height"), bbox, strict=True)
        )
        category = annotation.get("category_id")
        if category is None:
            label = ""
        elif category in categories:
            label = categories[category]
        else:
            raise place.error(f"category_id {category!r} is not in categories")
        corners = [x, y, x + box_width, y + box_height]
        builder.add(key, place.box(corners, f"bbox={bbox!r}"), label)
    return builder.annotations()


def _str(value: Any) -> str | None:
    """A JSON value as the text a number is parsed from (``None`` stays missing; a bool, a
    list or an object is not a number)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return repr(value)
    return str(value)


def _read_masks(contents: Mapping[Path, bytes]) -> dict[str, Annotation]:
    annotations: dict[str, Annotation] = {}
    for path, data in contents.items():
        key = path.stem
        if key in annotations:
            raise EvaluationError(
                f"ground truth: {annotations[key].source!r} and {str(path)!r} are both masks of "
                f"image {key!r}; keep one"
            )
        mask = _read_mask(data, _Place(str(path), key))
        annotations[key] = Annotation(
            torch.zeros(0, 4, dtype=torch.float64), (), mask=mask, image=key, source=str(path)
        )
    return annotations


def _read_mask(data: bytes, place: _Place) -> Tensor:
    """A binary mask image's ``data`` as an ``H x W`` bool tensor."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            values = np.array(opened)
    # Pillow's decoders raise the first three, its size limit the bomb error.
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        reason = (
            "not a supported image file" if isinstance(error, UnidentifiedImageError) else error
        )
        raise place.error(f"cannot read the mask: {reason}") from None
    if values.ndim == 3:
        # A mask saved in colour: its colour channels (alpha aside) must agree.
        colours = values[..., :3] if values.shape[-1] >= 3 else values[..., :1]
        if (colours != colours[..., :1]).any():
            raise place.error("the mask has colours; save it as a one-channel image")
        values = colours[..., 0]
    found = np.unique(values)
    if values.dtype == np.bool_:
        return torch.from_numpy(values.copy())
    if not (set(found.tolist()) <= {0, 255} or set(found.tolist()) <= {0, 1}):
        shown = ", ".join(str(value) for value in found[:6].tolist())
        more = f" and {len(found) - 6} more" if len(found) > 6 else ""
        raise place.error(
            f"the mask is not binary (0 and 255, or 0 and 1): it holds the values {shown}{more}"
        )
    return torch.from_numpy(values > 0)


# Matching and classes.


def _without_image_suffix(name: str) -> str:
    """``name`` without its suffix where that is an image's (``.jpg``, ``.JPEG``, ...): other
    dots belong to the name (``photo.2020``)."""
    suffix = PurePosixPath(name).suffix
    return name[: -len(suffix)] if suffix and suffix.lower() in IMAGE_SUFFIXES else name


def _stem(name: str) -> str:
    return _without_image_suffix(name.replace("\\", "/").rsplit("/", 1)[-1])


def _class_of(label: str, classes: Classes | None, annotation: Annotation) -> int | None:
    if isinstance(classes, Mapping):
        return classes.get(label)
    if classes is not None:
        return classes(label)
    if _WNID.fullmatch(label):
        if label not in _WNID_INDEX:
            raise _Place(annotation.source, annotation.image).error(
                f"label {label!r} is not one of ImageNet-1k's 1000 class wnids; pass classes "
                "to map the file's labels to the model's classes"
            )
        return _WNID_INDEX[label]
    return int(label) if _CLASS_INDEX.fullmatch(label) else None
