"""A detector whose right answer is known, to check a detection explanation end to end.

Trained detectors cannot say where their evidence lies, so a map of theirs cannot be checked
against a ground truth. :class:`KnownAnswerDetector` always reports the same box, with a
confidence computed from the pixels inside it and nothing else: a faithful map of that box must
put its mass inside the box.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CellEnergy", "KnownAnswerDetector"]


class CellEnergy(nn.Module):
    """A ``grid x grid`` feature map with one channel per cell: the image's mean absolute value
    over that cell, at that cell only. Its channels say where, and nothing else."""

    def __init__(self, grid: int) -> None:
        super().__init__()
        self.grid = grid

    def forward(self, x: Tensor) -> Tensor:
        energy = F.adaptive_avg_pool2d(x.abs().mean(dim=1, keepdim=True), self.grid)
        cells = torch.eye(self.grid * self.grid, device=x.device, dtype=x.dtype)
        return energy * cells.view(-1, self.grid, self.grid)[None]


class KnownAnswerDetector(nn.Module):
    r"""Finds objects always in the same boxes, each with a confidence only its pixels decide.

    With :math:`e` the image's absolute value averaged over channels, the confidence of box
    :math:`b` is :math:`c_b = \min(1, (\max_{u \in b} e_u + \mathrm{mean}_{u \in b} e_u) / 2)`:
    some evidence anywhere in the box is enough to find the object (the maximum) and more of
    it raises the confidence (the mean). Like torchvision's detectors, it reports a box only
    when its confidence reaches ``score_threshold``, so hiding the box or unveiling only the
    rest of the image finds nothing there. Two feature maps, ``fine`` and ``coarse``
    (:class:`CellEnergy` grids), give Poly-CAM its layers; they do not feed the confidences.

    Its output is a torchvision detector's: a list of dicts with ``boxes`` ``(P, 4)``,
    ``labels`` ``(P,)`` and ``scores`` ``(P,)``, one dict per input.

    Args:
        boxes: The objects' boxes, ``x1, y1, x2, y2`` in the input's pixel coordinates.
        labels: Their class labels (default: 1 for every box).
        grids: Cells per side of the ``fine`` and ``coarse`` feature maps.
        score_threshold: Smallest confidence reported.

    Example::

        >>> detector = KnownAnswerDetector([(48, 16, 80, 64)])
        >>> score = DetectionBoxScore(torch.tensor([[48.0, 16, 80, 64]]), [1])
        >>> saliency = PolyCam(detector, ["fine", "coarse"], score_fn=score).attribute(
        ...     image, target=0)
    """

    def __init__(
        self,
        boxes: Sequence[tuple[int, int, int, int]],
        labels: Sequence[int] | None = None,
        grids: tuple[int, int] = (12, 6),
        score_threshold: float = 0.05,
    ) -> None:
        super().__init__()
        self.boxes = [tuple(int(side) for side in box) for box in boxes]
        self.labels = list(labels) if labels is not None else [1] * len(self.boxes)
        if len(self.labels) != len(self.boxes):
            raise ValueError(
                f"labels: need one per box ({len(self.boxes)}); got {len(self.labels)}"
            )
        self.score_threshold = score_threshold
        self.fine, self.coarse = CellEnergy(grids[0]), CellEnergy(grids[1])

    def forward(self, images: Tensor) -> list[dict[str, Tensor]]:
        # Run for the layers' sake (Poly-CAM reads them with hooks); the confidence ignores them.
        self.fine(images)
        self.coarse(images)
        evidence = images.abs().mean(dim=1)
        confidences = []
        for x1, y1, x2, y2 in self.boxes:
            inside = evidence[:, y1:y2, x1:x2].flatten(1)
            confidences.append(0.5 * (inside.amax(dim=1) + inside.mean(dim=1)))
        confidence = torch.stack(confidences, dim=1).clamp(max=1.0)  # (N, boxes)
        boxes = torch.tensor(self.boxes, dtype=images.dtype, device=images.device)
        labels = torch.tensor(self.labels, device=images.device)
        found = []
        for scores in confidence:
            kept = scores >= self.score_threshold
            found.append({"boxes": boxes[kept], "labels": labels[kept], "scores": scores[kept]})
        return found
