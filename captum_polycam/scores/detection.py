"""How strongly a detector still finds a given box: a ``score_fn`` for object detectors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any, Literal

import torch
from torch import Tensor
from torchvision.ops import box_iou

__all__ = ["DetectionBoxScore"]

Combine = Literal["confidence", "iou_confidence"]
_COMBINES = ("confidence", "iou_confidence")
_KEYS = ("boxes", "labels", "scores")


class DetectionBoxScore:
    r"""The score of target detections in the output of a torchvision-style detector.

    For an input whose detector output holds predicted boxes :math:`b_p` with labels
    :math:`l_p` and confidences :math:`c_p`, the score against target :math:`t` (box
    :math:`B_t`, label :math:`L_t`) is

    .. math::

        s_t = \max_{p \in M_t} c_p \quad(\texttt{combine="confidence"}),
        \qquad
        s_t = \max_{p \in M_t} \mathrm{IoU}(b_p, B_t)\, c_p
        \quad(\texttt{combine="iou_confidence"}),

    over the matching boxes
    :math:`M_t = \{p : l_p = L_t,\ \mathrm{IoU}(b_p, B_t) \ge \tau,\ \mathrm{IoU}(b_p, B_t) > 0\}`,
    and 0 when no predicted box matches. ``"confidence"`` is pytorch-grad-cam's
    ``FasterRCNNBoxScoreTarget`` rule; ``"iou_confidence"`` also rewards how well the box is
    localised, in the spirit of D-RISE's similarity (pass ``iou_threshold=0`` to count every
    overlap). A box must overlap the target to match: with ``iou_threshold=0`` the rule is
    ``IoU > 0``, so a disjoint box, or one that only touches the target's edge, never matches.

    Called on a detector's output for ``B`` inputs (a list of ``B`` dicts with ``boxes``
    ``(P, 4)``, ``labels`` ``(P,)`` and ``scores`` ``(P,)``, as torchvision's Faster R-CNN,
    RetinaNet, FCOS and SSD return in eval mode), it returns a ``(B, T)`` tensor: every input
    scored against every target. Give Poly-CAM or a metric ``target`` with each input's own
    target index (:attr:`targets` when input ``i`` is explained for box ``i``), so that inputs
    of different boxes can share a forward pass.

    Args:
        boxes: ``(T, 4)`` tensor of target boxes, ``x1, y1, x2, y2`` in the input's pixel
            coordinates, finite, with ``x1 < x2`` and ``y1 < y2``; ``(0, 4)`` for none, which
            says that nothing is to be explained (``len(score) == 0``) but cannot score: a
            call raises ``ValueError``.
        labels: ``(T,)`` integer class label of each target box (a tensor or a sequence of
            ints; an empty list for zero boxes).
        iou_threshold: Smallest IoU for a predicted box to match a target, a number in
            ``[0, 1]``; 0 matches every box that overlaps the target.
        combine: ``"confidence"`` or ``"iou_confidence"``, as above.

    Raises:
        ValueError: ``boxes`` is not a ``(T, 4)`` tensor of finite ``x1, y1, x2, y2`` boxes
            with ``x1 < x2`` and ``y1 < y2`` (boxes in ``x, y, width, height`` are refused
            when a width or height is smaller than the corner's coordinate), ``labels`` are
            not ``T`` integers, or another argument is out of its range.

    Example::

        >>> detector = fasterrcnn_mobilenet_v3_large_320_fpn(weights="DEFAULT").eval()
        >>> found = detector(image[None])[0]
        >>> score = DetectionBoxScore(found["boxes"][:3], found["labels"][:3])
        >>> polycam = PolyCam(detector, score_fn=score)
        >>> maps = polycam.attribute(image.expand(3, -1, -1, -1), target=score.targets)
    """

    def __init__(
        self,
        boxes: Tensor,
        labels: Tensor | Sequence[int],
        iou_threshold: float = 0.5,
        combine: Combine = "confidence",
    ) -> None:
        _check_boxes(boxes)
        labels = _integer_labels(labels, len(boxes), boxes.device)
        if combine not in _COMBINES:
            raise ValueError(f"combine must be one of {_COMBINES}; got {combine!r}")
        self.boxes = boxes.detach().float()
        self.labels = labels
        self.iou_threshold = _unit_number(iou_threshold, "iou_threshold")
        self.combine: Combine = combine

    @classmethod
    def from_detections(
        cls, detections: Mapping[str, Tensor], score_threshold: float = 0.5, **options: Any
    ) -> DetectionBoxScore:
        """The detections of one image whose confidence reaches ``score_threshold``, as targets.

        ``detections`` is one of the detector's output dicts for the clean image; ``options``
        are the constructor's ``iou_threshold`` and ``combine``. When no detection reaches the
        threshold, the score holds no box (``len(score) == 0``) and cannot be called.

        Raises:
            ValueError: ``detections`` lacks ``"boxes"``, ``"labels"`` or ``"scores"``, or
                ``score_threshold`` is not a number in ``[0, 1]``.
        """
        _check_keys(detections, "detections")
        kept = detections["scores"] >= _unit_number(score_threshold, "score_threshold")
        return cls(detections["boxes"][kept], detections["labels"][kept], **options)

    @property
    def targets(self) -> Tensor:
        """``0, 1, ..., T - 1``: the ``target`` for a batch whose input ``i`` explains box ``i``."""
        return torch.arange(len(self.boxes), device=self.boxes.device)

    def __len__(self) -> int:
        return len(self.boxes)

    def __call__(self, output: Sequence[Mapping[str, Tensor]]) -> Tensor:
        """The ``(B, T)`` scores of the detector's output for ``B`` inputs.

        Raises:
            TypeError: ``output`` is not a list of dicts.
            ValueError: A dict lacks ``"boxes"``, ``"labels"`` or ``"scores"``, or the score
                holds no target box.
        """
        if not isinstance(output, Sequence) or not all(isinstance(d, Mapping) for d in output):
            raise TypeError(
                "DetectionBoxScore scores a detector's output, a list of dicts with 'boxes', "
                f"'labels' and 'scores' (one per input); got {type(output).__name__}"
            )
        if len(self.boxes) == 0:
            # A (B, 0) score leaves no target to pick: Poly-CAM would fail deep in its top-1
            # choice (argmax over nothing), and a metric would have nothing to measure.
            raise ValueError(
                "boxes: this DetectionBoxScore holds no target box ((0, 4)), so there is "
                "nothing to score; check len(score) before explaining (from_detections keeps "
                "no box when none reaches score_threshold)"
            )
        for index, found in enumerate(output):
            _check_keys(found, f"output[{index}]")
        return torch.stack([self._score(found) for found in output])

    def _score(self, found: Mapping[str, Tensor]) -> Tensor:
        scores = found["scores"]
        boxes, labels = self.boxes.to(scores.device), self.labels.to(scores.device)
        if len(scores) == 0:
            return scores.new_zeros(len(boxes))
        overlap = box_iou(found["boxes"].float(), boxes)  # (P, T)
        # IoU > 0 as well: at threshold 0, ">= 0" alone would match boxes that do not overlap.
        overlaps = (overlap >= self.iou_threshold) & (overlap > 0)
        matches = (found["labels"][:, None] == labels[None]) & overlaps
        value = scores.float()[:, None]
        if self.combine == "iou_confidence":
            value = value * overlap
        return torch.where(matches, value, 0.0).amax(dim=0)

    def __repr__(self) -> str:
        return (
            f"DetectionBoxScore({len(self)} boxes, iou_threshold={self.iou_threshold}, "
            f"combine={self.combine!r})"
        )


def _check_keys(detections: Mapping[str, Any], name: str) -> None:
    """A ValueError naming ``name`` and the missing keys unless ``detections`` holds all of
    ``boxes``, ``labels`` and ``scores``."""
    missing = [key for key in _KEYS if key not in detections]
    if missing:
        raise ValueError(
            f"{name} must hold 'boxes' (P, 4), 'labels' (P,) and 'scores' (P,), as a "
            f"torchvision detector's output dict in eval mode; missing "
            f"{', '.join(map(repr, missing))} (has {sorted(map(str, detections))})"
        )


def _unit_number(value: Any, name: str) -> float:
    """``value`` as a float, or a ValueError naming ``name`` unless it is a number in [0, 1]."""
    # bool is an int to Python, but True is no threshold; NaN fails the comparison.
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1]; got {value!r}")
    return float(value)


def _check_boxes(boxes: Any) -> None:
    """A ValueError unless ``boxes`` is a ``(T, 4)`` tensor of finite, non-empty boxes."""
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
        got = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(f"boxes must be a (T, 4) tensor of x1, y1, x2, y2; got {got}")
    corners = boxes.detach().double()
    # A box in x, y, width, height, or an empty one, has IoU 0 with everything: it would
    # score 0 and give an all-zero map without a word.
    valid = corners.isfinite().all(dim=1) & (corners[:, 0] < corners[:, 2])
    valid &= corners[:, 1] < corners[:, 3]
    if not bool(valid.all()):
        index = int((~valid).nonzero()[0])
        box = ", ".join(str(float(side)) for side in corners[index])
        raise ValueError(
            "boxes must be x1, y1, x2, y2 with x1 < x2 and y1 < y2 (not x, y, width, height), "
            f"all finite; box {index} is ({box})"
        )


def _integer_labels(labels: Any, count: int, device: torch.device) -> Tensor:
    """``labels`` as a ``(count,)`` int64 tensor, or a ValueError that says what they are."""
    expected = f"labels must be {count} integer class labels, one per box"
    if isinstance(labels, Tensor):
        got = f"a {labels.dtype} tensor of shape {tuple(labels.shape)}"
    else:
        got = repr(labels)
    try:
        converted = torch.as_tensor(labels, device=device)
    except (TypeError, ValueError, RuntimeError):  # strings, ragged lists, None
        raise ValueError(f"{expected}; got {got}") from None
    if not isinstance(labels, Tensor) and converted.numel() == 0:
        converted = converted.long()  # torch.as_tensor([]) is float32, but holds no label
    integer = converted.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
    if converted.dim() != 1 or len(converted) != count or not integer:
        raise ValueError(f"{expected}; got {got}")
    return converted.long()
