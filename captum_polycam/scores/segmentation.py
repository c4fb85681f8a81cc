"""How strongly a segmenter still finds a class over a region: a ``score_fn`` for segmentation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor

from captum_polycam._conventions import check_int

__all__ = ["SegmentationScore"]

Reduction = Literal["mean_probability", "logit_sum"]
_REDUCTIONS = ("mean_probability", "logit_sum")


class SegmentationScore:
    r"""The score of one class over a region of a segmentation model's output.

    For an input whose output holds per-pixel logits :math:`z_{c,u}` (classes :math:`c`,
    pixels :math:`u`), the score of class :math:`k` over region :math:`R_e` is

    .. math::

        s_e = \frac{1}{|R_e|} \sum_{u \in R_e} \mathrm{softmax}_c(z_{\cdot,u})_k
        \quad(\texttt{"mean_probability"}),
        \qquad
        s_e = \sum_{u \in R_e} z_{k,u} \quad(\texttt{"logit_sum"}),

    where each region holds at least one pixel: the mean over an empty region is undefined, and
    its sum would be a constant 0, whose map is blank. Called on the output for ``B`` inputs (a
    tensor ``(B, classes, H, W)``, or a dict holding it under ``"out"`` as torchvision's FCN,
    DeepLabV3 and LR-ASPP return), it returns ``(B, E)``: every input scored over each of the
    ``E`` regions. With one region (or none) ``target`` can be left out; with one region per
    example, pass ``target=score.targets`` so that each input is scored over its own.

    Args:
        class_index: The class ``k`` explained.
        mask: The regions, ``(H, W)`` for one or ``(E, H, W)``, at the output's resolution:
            a boolean tensor, or a numeric one holding only 0 and 1. A soft mask (values
            between 0 and 1) is refused, not thresholded nor used as weights. ``None`` for the
            whole image. Every region needs at least one pixel. :meth:`from_prediction` builds
            the regions that the clean prediction assigns to the class.
        reduction: ``"mean_probability"`` or ``"logit_sum"``, as above.

    Raises:
        ValueError: ``class_index`` is not a non-negative int, ``mask`` is not an ``(H, W)``
            or ``(E, H, W)`` tensor of booleans or 0/1 values, a region of ``mask`` is empty,
            or ``reduction`` is unknown.

    Example::

        >>> segmenter = deeplabv3_mobilenet_v3_large(weights="DEFAULT").eval()
        >>> score = SegmentationScore.from_prediction(segmenter(images), class_index=15)
        >>> maps = PolyCam(segmenter, score_fn=score).attribute(images, target=score.targets)
    """

    def __init__(
        self,
        class_index: int,
        mask: Tensor | None = None,
        reduction: Reduction = "mean_probability",
    ) -> None:
        check_int("class_index", class_index, 0)
        if mask is not None:
            if not isinstance(mask, Tensor) or mask.dim() not in (2, 3):
                got = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
                raise ValueError(f"mask must be an (H, W) or (E, H, W) tensor; got {got}")
            outside = (mask != 0) & (mask != 1)
            if bool(outside.any()):
                # .bool() would make any non-zero value, 0.3 or NaN, a full member of the region.
                value = mask[outside][0].item()
                raise ValueError(
                    f"mask must be boolean or hold only 0 and 1; got {mask.dtype} values such "
                    f"as {value:g}"
                )
            mask = (mask if mask.dim() == 3 else mask[None]).detach().bool()
            _check_regions(mask)
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}; got {reduction!r}")
        self.class_index = class_index
        self.mask = mask
        self.reduction: Reduction = reduction

    @classmethod
    def from_prediction(cls, output: Any, class_index: int, **options: Any) -> SegmentationScore:
        """One region per example: the pixels that the clean ``output`` assigns to the class
        (its arg-max over classes). ``options`` are the constructor's ``reduction``.

        Raises:
            ValueError: The prediction of an example assigns no pixel to the class.
        """
        logits = _logits(output)
        check_int("class_index", class_index, 0)
        # Checked here too: a class the output lacks would read as empty regions.
        _check_class(class_index, logits)
        regions = logits.argmax(dim=1) == class_index
        empty = _empty_regions(regions)
        if empty:
            raise ValueError(
                f"output: the prediction assigns no pixel to class {class_index} in example "
                f"{empty[0]} ({len(empty)} of {len(regions)} examples): there is no region to "
                "explain; leave those examples out, or give a mask"
            )
        return cls(class_index, regions, **options)

    @property
    def targets(self) -> Tensor:
        """``0, 1, ..., E - 1``: the ``target`` for a batch whose input ``i`` uses region ``i``."""
        count = 1 if self.mask is None else len(self.mask)
        return torch.arange(count, device=None if self.mask is None else self.mask.device)

    def __call__(self, output: Any) -> Tensor:
        logits = _logits(output)
        _check_class(self.class_index, logits)
        if self.reduction == "mean_probability":
            values = logits.float().softmax(dim=1)[:, self.class_index]
        else:
            values = logits.float()[:, self.class_index]
        if self.mask is None:
            region = values.new_ones(1, *values.shape[-2:])
        else:
            if self.mask.shape[-2:] != values.shape[-2:]:
                raise ValueError(
                    f"mask is {tuple(self.mask.shape[-2:])} but the model's output is "
                    f"{tuple(values.shape[-2:])}: give the mask at the output's resolution"
                )
            region = self.mask.to(values.device, values.dtype)
        total = torch.einsum("bhw,ehw->be", values, region)
        if self.reduction == "logit_sum":
            return total
        return total / region.sum(dim=(1, 2)).clamp_min(1.0)

    def __repr__(self) -> str:
        regions = "whole image" if self.mask is None else f"{len(self.mask)} regions"
        return f"SegmentationScore({self.class_index}, {regions}, reduction={self.reduction!r})"


def _check_class(class_index: int, logits: Tensor) -> None:
    if not 0 <= class_index < logits.shape[1]:
        raise ValueError(
            f"class_index {class_index} is out of range for an output of {logits.shape[1]} classes"
        )


def _empty_regions(mask: Tensor) -> list[int]:
    """The indices of the ``(E, H, W)`` mask's regions that hold no pixel."""
    return (~mask.flatten(1).any(dim=1)).nonzero()[:, 0].tolist()


def _check_regions(mask: Tensor) -> None:
    """A ValueError naming the first empty region of the boolean ``(E, H, W)`` mask."""
    empty = _empty_regions(mask)
    if empty:
        # The mean over no pixel is undefined (it would read 0), and a constant score gives a
        # blank map without a word.
        which = "mask is" if len(mask) == 1 else f"mask: region {empty[0]} of {len(mask)} is"
        raise ValueError(
            f"{which} empty (no pixel is True): every region needs at least one pixel; pass "
            "mask=None for the whole image"
        )


def _logits(output: Any) -> Tensor:
    if isinstance(output, Mapping) and "out" not in output:
        raise ValueError(
            "output: a dict output must hold the (B, classes, H, W) logits under 'out', as "
            f"torchvision's FCN, DeepLabV3 and LR-ASPP return; has {sorted(map(str, output))}"
        )
    logits = output["out"] if isinstance(output, Mapping) else output
    if not isinstance(logits, Tensor) or logits.dim() != 4:
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise TypeError(
            "SegmentationScore scores per-pixel logits, a (B, classes, H, W) tensor or a dict "
            f"with it under 'out'; got {got}"
        )
    return logits
