"""How strongly a detector still finds a given box: a ``score_fn`` for object detectors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor
from torchvision.ops import box_iou

__all__ = ["DetectionBoxScore"]

Combine = Literal["confidence", "iou_confidence"]
_COMBINES = ("confidence", "iou_confidence")


class DetectionBoxScore:
    r"""The score of target detections in the output of a torchvision-style detector.

    For an input whose detector output holds predicted boxes :math:`b_p` with labels
    :math:`l_p` and confidences :math:`c_p`, the score against target :math:`t` (box
    :math:`B_t`, label :math:`L_t`) is

    .. math::

        s_t = \max_{p \,:\, l_p = L_t,\ \mathrm{IoU}(b_p, B_t) \ge \tau} c_p
        \quad(\texttt{combine="confidence"}),
        \qquad
        s_t = \max_{p \,:\, l_p = L_t,\ \mathrm{IoU}(b_p, B_t) \ge \tau}
        \mathrm{IoU}(b_p, B_t)\, c_p \quad(\texttt{combine="iou_confidence"}),

    and 0 when no predicted box matches. ``"confidence"`` is pytorch-grad-cam's
    ``FasterRCNNBoxScoreTarget`` rule; ``"iou_confidence"`` also rewards how well the box is
    localised, in the spirit of D-RISE's similarity (pass ``iou_threshold=0`` to count every
    overlap).

    Called on a detector's output for ``B`` inputs (a list of ``B`` dicts with ``boxes``
    ``(P, 4)``, ``labels`` ``(P,)`` and ``scores`` ``(P,)``, as torchvision's Faster R-CNN,
    RetinaNet, FCOS and SSD return in eval mode), it returns a ``(B, T)`` tensor: every input
    scored against every target. Give Poly-CAM or a metric ``target`` with each input's own
    target index (:attr:`targets` when input ``i`` is explained for box ``i``), so that inputs
    of different boxes can share a forward pass.

    Args:
        boxes: ``(T, 4)`` target boxes, ``x1, y1, x2, y2`` in the input's pixel coordinates.
        labels: ``(T,)`` integer class label of each target box.
        iou_threshold: Smallest IoU for a predicted box to match a target, in ``[0, 1]``.
        combine: ``"confidence"`` or ``"iou_confidence"``, as above.

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
        if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
            got = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
            raise ValueError(f"boxes must be a (T, 4) tensor of x1, y1, x2, y2; got {got}")
        labels = torch.as_tensor(labels, device=boxes.device)
        if labels.dim() != 1 or len(labels) != len(boxes) or labels.is_floating_point():
            raise ValueError(
                f"labels must be {len(boxes)} integer class labels, one per box; got "
                f"{labels.dtype} of shape {tuple(labels.shape)}"
            )
        if not 0.0 <= iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1]; got {iou_threshold}")
        if combine not in _COMBINES:
            raise ValueError(f"combine must be one of {_COMBINES}; got {combine!r}")
        self.boxes = boxes.detach().float()
        self.labels = labels.long()
        self.iou_threshold = iou_threshold
        self.combine: Combine = combine

    @classmethod
    def from_detections(
        cls, detections: Mapping[str, Tensor], score_threshold: float = 0.5, **options: Any
    ) -> DetectionBoxScore:
        """The detections of one image whose confidence reaches ``score_threshold``, as targets.

        ``detections`` is one of the detector's output dicts for the clean image; ``options``
        are the constructor's ``iou_threshold`` and ``combine``.
        """
        kept = detections["scores"] >= score_threshold
        return cls(detections["boxes"][kept], detections["labels"][kept], **options)

    @property
    def targets(self) -> Tensor:
        """``0, 1, ..., T - 1``: the ``target`` for a batch whose input ``i`` explains box ``i``."""
        return torch.arange(len(self.boxes), device=self.boxes.device)

    def __len__(self) -> int:
        return len(self.boxes)

    def __call__(self, output: Sequence[Mapping[str, Tensor]]) -> Tensor:
        if not isinstance(output, Sequence) or not all(isinstance(d, Mapping) for d in output):
            raise TypeError(
                "DetectionBoxScore scores a detector's output, a list of dicts with 'boxes', "
                f"'labels' and 'scores' (one per input); got {type(output).__name__}"
            )
        return torch.stack([self._score(found) for found in output])

    def _score(self, found: Mapping[str, Tensor]) -> Tensor:
        scores = found["scores"]
        boxes, labels = self.boxes.to(scores.device), self.labels.to(scores.device)
        if len(scores) == 0:
            return scores.new_zeros(len(boxes))
        overlap = box_iou(found["boxes"].float(), boxes)  # (P, T)
        matches = (found["labels"][:, None] == labels[None]) & (overlap >= self.iou_threshold)
        value = scores.float()[:, None]
        if self.combine == "iou_confidence":
            value = value * overlap
        return torch.where(matches, value, 0.0).amax(dim=0)

    def __repr__(self) -> str:
        return (
            f"DetectionBoxScore({len(self)} boxes, iou_threshold={self.iou_threshold}, "
            f"combine={self.combine!r})"
        )
