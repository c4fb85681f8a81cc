"""Captum's argument conventions, written once for every method and metric: the inputs and
their 1-tuple form, which forward arguments follow their example, positive integers, the
model behind a forward function, evaluation mode, and seeding random work without disturbing
the caller's random streams."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "check_inputs",
    "check_int",
    "evaluation_mode",
    "is_per_example",
    "module_of",
    "seeded",
    "unpack_single",
]

_KINDS = {1: "a positive int", 0: "a non-negative int", None: "an int"}


def check_int(
    name: str,
    value: Any,
    least: int | None = 1,
    *,
    none: bool = False,
    error: type[ValueError] = ValueError,
) -> None:
    """A clear ``error`` naming ``name`` unless ``value`` is an int (a bool is not) of at least
    ``least`` (1, 0, or ``None`` for any), or ``None`` where ``none`` allows it."""
    if value is None and none:
        return
    wrong_type = isinstance(value, bool) or not isinstance(value, int)
    if wrong_type or (least is not None and value < least):
        expected = _KINDS[least] + " or None" * none
        raise error(f"{name} must be {expected}; got {value!r}")


def unpack_single(value: Any, name: str) -> tuple[Any, bool]:
    """``(tensor, was_tuple)`` for a tensor or Captum's 1-tuple form ``(tensor,)``."""
    if isinstance(value, tuple):
        if len(value) != 1:
            raise TypeError(
                f"{name} must be a tensor or a 1-tuple holding one (Captum's tuple form); "
                f"got a {len(value)}-tuple: Poly-CAM and its metrics explain one input tensor"
            )
        return value[0], True
    return value, False


def check_inputs(inputs: Any, *, images: bool = True) -> Tensor:
    """``inputs`` if it is a non-empty, finite float tensor with a batch dimension, of shape
    ``N x C x H x W`` where ``images``; otherwise a clear error naming ``inputs``."""
    if not isinstance(inputs, Tensor):
        raise TypeError(f"inputs must be a torch.Tensor; got {type(inputs).__name__}")
    if images and (inputs.dim() != 4 or not inputs.is_floating_point()):
        raise ValueError(
            f"inputs must be a 4-D float tensor N x C x H x W; got {inputs.dim()}-D {inputs.dtype}"
        )
    if not inputs.is_floating_point():
        raise TypeError(f"inputs must be a float tensor; got dtype {inputs.dtype}")
    if inputs.dim() == 0:
        raise ValueError("inputs must have a batch dimension; got a 0-D tensor")
    if inputs.shape[0] == 0:
        raise ValueError("inputs is an empty batch")
    if not bool(torch.isfinite(inputs).all()):
        raise ValueError("inputs contains NaN or Inf values")
    return inputs


def is_per_example(value: Any, count: int) -> bool:
    """Whether ``value`` holds one row per example of a batch of ``count``, as Captum reads
    ``additional_forward_args``: a tensor of at least one dimension whose first is ``count``.
    Such values are cut, repeated and reordered with their examples; others pass as they are."""
    return isinstance(value, Tensor) and value.dim() > 0 and len(value) == count


def module_of(forward_func: Callable[..., Any]) -> nn.Module | None:
    """The ``nn.Module`` behind ``forward_func`` (itself, or the owner of a bound method)."""
    if isinstance(forward_func, nn.Module):
        return forward_func
    owner = getattr(forward_func, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """Run ``model`` in evaluation mode, then give every module back its own training flag.

    A look at the model must not change it: in training mode a forward pass would update
    batch-norm statistics.
    """
    modes = {module: module.training for module in model.modules()}
    try:
        model.eval()
        yield
    finally:
        for module, training in modes.items():
            module.training = training


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the generators that ``device``'s work draws from, restoring them afterwards, so
    that the work is reproducible and leaves the caller's random streams where they were."""
    cuda = []
    if device.type == "cuda":
        cuda = [torch.cuda.current_device() if device.index is None else device.index]
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        for index in cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield
