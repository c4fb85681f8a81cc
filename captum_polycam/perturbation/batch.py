"""The one place a batch is prepared for perturbation: checked inputs, the clean forward pass,
its scores, the resolved targets and the per-example forward arguments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from captum_polycam._conventions import check_int
from captum_polycam.perturbation.targets import ExampleTargets

__all__ = ["PreparedBatch", "check_perturbations_per_eval"]


def check_perturbations_per_eval(value: Any) -> int | None:
    """``value`` as a Python int (a NumPy integer is one) or ``None``; a clear error naming
    ``perturbations_per_eval`` unless it is positive."""
    return check_int("perturbations_per_eval", value, none=True)


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
