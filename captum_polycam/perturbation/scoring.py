"""Scoring many perturbed copies of a batch, a few at a time, in one reused buffer.

Perturbation methods (Poly-CAM's masked inputs, insertion and deletion curves) all reduce to:
for items ``0 .. count - 1``, each derived from one example of the batch, build the perturbed
input, run the model and keep the target's score. :class:`PerturbationScorer` owns that loop so
that every method gets the same batching, device handling and progress reporting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from captum_polycam._compat import progress
from captum_polycam.perturbation.targets import ExampleTargets, ScoreFn, resolve_score_fn

__all__ = ["FillFn", "PerturbationScorer", "default_perturbations_per_eval"]

FillFn = Callable[[int, int, Tensor], None]
"""``fill(start, stop, out)`` writes the perturbed inputs of items ``start .. stop - 1``."""


def default_perturbations_per_eval(device: torch.device) -> int:
    """Inputs per forward pass when the caller does not choose.

    Measured, not guessed: on a 2-core CPU, EfficientNet-Lite0 runs fastest at 4 images per
    forward and slows down past 8; a GPU needs far larger batches to be busy.
    """
    return 64 if device.type == "cuda" else 4


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
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"perturbations_per_eval must be a positive int; got {value!r}")


class PerturbationScorer:
    """Forward perturbed inputs in chunks and return the target score of each.

    Args:
        forward_func: The model or any function of ``(inputs, *additional_forward_args)``.
        score_fn: ``"softmax"`` (the default; sigmoid for a single output unit), ``"logit"``,
            or a callable from the model output to per-example scores.
        perturbations_per_eval: Perturbed inputs per forward pass; ``None`` for the default
            of the inputs' device,
            :func:`~captum_polycam.perturbation.scoring.default_perturbations_per_eval`.
    """

    def __init__(
        self,
        forward_func: Callable[..., Any],
        score_fn: ScoreFn = "softmax",
        perturbations_per_eval: int | None = None,
    ) -> None:
        if perturbations_per_eval is not None:
            check_perturbations_per_eval(perturbations_per_eval)
        self.forward_func = forward_func
        self.score_fn = resolve_score_fn(score_fn)
        self.perturbations_per_eval = perturbations_per_eval

    def score_output(self, output: Any, count: int) -> Tensor:
        """``score_fn`` applied to the model's output for ``count`` inputs, checked."""
        scores = self.score_fn(output)
        if not isinstance(scores, Tensor) or scores.dim() == 0 or len(scores) != count:
            raise ValueError(
                "score_fn must return a tensor with one row per input; got "
                f"{getattr(scores, 'shape', type(scores))} for {count} inputs"
            )
        return scores

    @torch.no_grad()
    def score_perturbations(
        self,
        inputs: Tensor,
        count: int,
        example_of: Tensor,
        fill: FillFn,
        targets: ExampleTargets,
        additional_forward_args: tuple[Any, ...] | None = None,
        show_progress: bool = False,
        description: str = "forward passes",
        perturbations_per_eval: int | None = None,
    ) -> Tensor:
        """Score ``count`` perturbed inputs; item ``i`` perturbs example ``example_of[i]``.

        ``perturbations_per_eval``, when given, overrides the constructor's for this call.

        Returns:
            A ``(count,)`` tensor of target scores, on the inputs' device.
        """
        chunk = (
            perturbations_per_eval
            or self.perturbations_per_eval
            or default_perturbations_per_eval(inputs.device)
        )
        memory_format = (
            torch.channels_last
            if inputs.dim() == 4
            and inputs.is_contiguous(memory_format=torch.channels_last)
            and not inputs.is_contiguous()
            else torch.contiguous_format
        )
        buffer = torch.empty(
            (min(chunk, count), *inputs.shape[1:]), dtype=inputs.dtype, device=inputs.device
        ).contiguous(memory_format=memory_format)
        example_of = example_of.to(inputs.device)
        result = torch.empty(count, dtype=inputs.dtype, device=inputs.device)
        extra = additional_forward_args or ()
        per_example = [
            isinstance(arg, Tensor) and arg.dim() > 0 and len(arg) == len(inputs) for arg in extra
        ]
        bar = progress(total=count, desc=description, disable=not show_progress)
        try:
            for start in range(0, count, chunk):
                stop = min(start + chunk, count)
                batch = buffer[: stop - start]
                fill(start, stop, batch)
                rows = example_of[start:stop]
                args = [arg[rows] if p else arg for arg, p in zip(extra, per_example, strict=True)]
                scores = self.score_fn(self.forward_func(batch, *args))
                result[start:stop] = targets.select(scores, rows)
                bar.update(stop - start)
        finally:
            bar.close()
        return result
