"""Poly-CAM as a Quantus explanation function.

Quantus (Hedström et al., JMLR 2023) evaluates a method that it calls itself through an
``explain_func``: ``explain_func(model=model, inputs=x_batch, targets=y_batch,
**explain_func_kwargs)``, with channel-first NumPy inputs ``N x C x H x W`` and ``(N,)``
integer targets, and takes ``N x 1 x H x W`` NumPy maps back.
:func:`poly_cam_explain_func` is that function for Poly-CAM. This module does not import
Quantus, which captum-polycam does not depend on.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from captum_polycam.attr.poly_cam import PolyCam

__all__ = ["poly_cam_explain_func"]

# The keywords that reach PolyCam's constructor: all of them but the model.
_POLY_CAM_OPTIONS = tuple(
    name
    for name in inspect.signature(PolyCam.__init__).parameters
    if name not in ("self", "forward_func")
)


def poly_cam_explain_func(
    model: nn.Module,
    inputs: np.ndarray | Tensor,
    targets: np.ndarray | Tensor | int | list[int],
    *,
    device: str | torch.device | None = None,
    method: str | None = None,
    show_progress: bool = False,
    **options: Any,
) -> np.ndarray:
    """Poly-CAM maps of a batch, as Quantus's ``explain_func`` takes them.

    The maps are ``PolyCam(model, **options).attribute(inputs, target=targets)``, computed
    where the model's parameters are and returned as a NumPy array.

    Args:
        model: The classifier, an ``nn.Module`` on the device to run on (Quantus hands its
            explanation functions the model it was given).
        inputs: ``N x C x H x W`` channel-first inputs, a NumPy array or a tensor; converted
            to the dtype of the model's parameters.
        targets: The explained class of each example, ``(N,)`` integers (or one for all).
        device: What Quantus passes when its metric is called with ``device=``: it must name
            the device of the model's parameters (``"cpu"``, ``"cuda"``, ``"cuda:1"``), since
            this function does not move a model; a model without parameters runs on it.
        method: The method's name, which ``quantus.evaluate`` adds to the keywords; ignored.
        show_progress: Report the masked forward passes (:meth:`PolyCam.attribute`'s).
        options: :class:`PolyCam`'s keywords: ``layers``, ``variant``, ``score_fn``,
            ``local_normalisation``, ``perturbations_per_eval``, ``precision``, ``compile``,
            ``pass_budget`` and ``reshape``; Quantus passes them from its
            ``explain_func_kwargs``.

    Returns:
        ``N x 1 x H x W`` maps in ``[0, 1]``, a NumPy array of the inputs' dtype.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, or a keyword is not Poly-CAM's.
        ValueError: ``device`` is not the model's, or targets are not integers; and what
            :meth:`PolyCam.attribute` raises for inputs the model cannot take.

    Example:
        >>> import quantus
        >>> metric = quantus.RelevanceMassAccuracy(disable_warnings=True)
        >>> scores = metric(
        ...     model=model, x_batch=x_batch, y_batch=y_batch, a_batch=None, s_batch=s_batch,
        ...     explain_func=poly_cam_explain_func,
        ...     explain_func_kwargs={"variant": "plusminus"},
        ... )
    """
    del method  # quantus.evaluate's name for the method, not an option of Poly-CAM
    unknown = sorted(set(options) - set(_POLY_CAM_OPTIONS))
    if unknown:
        raise TypeError(
            f"poly_cam_explain_func got keyword(s) {', '.join(unknown)} that Poly-CAM does not "
            f"take; it takes PolyCam's {', '.join(_POLY_CAM_OPTIONS)}, attribute's "
            "show_progress, and Quantus's device and method"
        )
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module; got {type(model).__name__}")
    where, dtype = _placement(model, device)
    batch = torch.as_tensor(inputs).to(device=where, dtype=dtype)
    maps = PolyCam(model, **options).attribute(
        batch, target=_targets(targets, where), show_progress=show_progress
    )
    return maps.detach().cpu().numpy()


def _placement(
    model: nn.Module, device: str | torch.device | None
) -> tuple[torch.device, torch.dtype]:
    """The device and float dtype the inputs go to: the model's parameters'."""
    wanted = None
    if device is not None:
        try:
            wanted = torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(
                f"device must name a torch device ('cpu', 'cuda', 'cuda:1'); got {device!r}"
            ) from None
    tensors = [*model.parameters(), *model.buffers()]
    floating = next((t for t in tensors if t.is_floating_point()), None)
    dtype = floating.dtype if floating is not None else torch.get_default_dtype()
    if not tensors:
        return wanted or torch.device("cpu"), dtype
    actual = tensors[0].device
    if wanted is not None and (
        wanted.type != actual.type or (wanted.index is not None and wanted.index != actual.index)
    ):
        raise ValueError(
            f"device is {str(wanted)!r} but the model's parameters are on {str(actual)!r}: "
            f"move the model first (model.to({str(wanted)!r})); poly_cam_explain_func runs "
            "the model where it is"
        )
    return actual, dtype


def _targets(targets: Any, device: torch.device) -> Tensor:
    """Quantus's ``y_batch`` as a long tensor on ``device``."""
    labels = torch.as_tensor(np.asarray(targets) if not isinstance(targets, Tensor) else targets)
    if labels.is_floating_point():
        if not bool((labels == labels.round()).all()):
            raise ValueError(f"targets must be class indices (integers); got {labels.tolist()}")
    elif labels.dtype == torch.bool or labels.is_complex():
        raise ValueError(f"targets must be class indices (integers); got dtype {labels.dtype}")
    return labels.to(device=device, dtype=torch.long)
