"""The one place a batch is prepared for perturbation: checked inputs, the clean forward pass,
its scores, the resolved targets and the per-example forward arguments."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from captum_polycam._conventions import check_int
from captum_polycam.perturbation.targets import ExampleTargets

__all__ = [
    "PreparedBatch",
    "check_inputs",
    "check_perturbations_per_eval",
    "module_of",
    "unpack_single",
]


def module_of(forward_func: Callable[..., Any]) -> nn.Module | None:
    """The ``nn.Module`` behind ``forward_func`` (itself, or the owner of a bound method)."""
    if isinstance(forward_func, nn.Module):
        return forward_func
    owner = getattr(forward_func, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


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


def check_inputs(inputs: Any) -> None:
    """A clear error unless ``inputs`` is a non-empty, finite ``N x C x H x W`` float tensor."""
    if not isinstance(inputs, Tensor):
        raise TypeError(f"inputs must be a torch.Tensor; got {type(inputs).__name__}")
    if inputs.dim() != 4 or not inputs.is_floating_point():
        raise ValueError(
            f"inputs must be a 4-D float tensor N x C x H x W; got {inputs.dim()}-D {inputs.dtype}"
        )
    if inputs.shape[0] == 0:
        raise ValueError("inputs is an empty batch")
    if not bool(torch.isfinite(inputs).all()):
        raise ValueError("inputs contains NaN or Inf values")


def check_perturbations_per_eval(value: Any) -> None:
    check_int("perturbations_per_eval", value, none=True)


@dataclass(frozen=True)
class PreparedBatch:
    """A batch after its clean forward pass: everything its perturbations are scored against.

    Attributes:
        inputs: The ``N x C x H x W`` inputs.
        output: The model's output on them.
        scores: ``score_fn(output)``, with first dimension ``N``.
        targets: The target of each example, resolved against ``scores``.
        target_scores: ``(N,)`` score of each example's target on the clean inputs.
        forward_args: The additional forward arguments, as a tuple.
        per_example: For each forward argument, whether it is a tensor with one row per
            example, which then follows its example into the perturbed batches.
        score_fn: The score function of the scorer that prepared it: a batch serves every
            scorer with the same one (:meth:`PerturbationScorer.reuse`).
    """

    inputs: Tensor
    output: Any
    scores: Tensor
    targets: ExampleTargets
    target_scores: Tensor
    forward_args: tuple[Any, ...]
    per_example: tuple[bool, ...]
    score_fn: Any = None

    def __len__(self) -> int:
        return len(self.inputs)

    def forward_args_for(self, examples: Tensor) -> list[Any]:
        """The forward arguments of perturbed inputs derived from ``examples``."""
        return [
            arg[examples] if follows else arg
            for arg, follows in zip(self.forward_args, self.per_example, strict=True)
        ]
