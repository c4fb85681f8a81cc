"""Scoring many perturbed copies of a batch, a few per example at a time, in one reused buffer.

Perturbation methods (Poly-CAM's masked inputs, insertion and deletion curves, the masked
images of average drop) all reduce to: prepare the batch once (:meth:`PerturbationScorer.prepare`:
the clean pass, its scores and the targets), then for items ``0 .. count - 1``, each derived
from one example, build the perturbed input, run the model and keep the target's score
(:meth:`PerturbationScorer.score` with a :class:`PerturbationPlan`). One engine owns both steps
so that every method gets the same batching, argument handling, checks and progress reporting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from captum_polycam._compat import TargetType, progress
from captum_polycam.perturbation.batch import (
    PreparedBatch,
    check_inputs,
    check_perturbations_per_eval,
    module_of,
    unpack_single,
)
from captum_polycam.perturbation.targets import ExampleTargets, ScoreFn, resolve_score_fn

__all__ = ["FillFn", "PerturbationPlan", "PerturbationScorer", "default_perturbations_per_eval"]

FillFn = Callable[[int, int, Tensor], None]
"""``fill(start, stop, out)`` writes the perturbed inputs of items ``start .. stop - 1``."""

# Inputs per forward pass that keep a device busy. Measured, not guessed: on a 2-core CPU,
# EfficientNet-Lite0 runs fastest at 4 images per forward and slows down past 8; a GPU needs
# far larger batches.
_INPUTS_PER_PASS = {"cpu": 4, "cuda": 64}


def default_perturbations_per_eval(device: torch.device, examples: int) -> int:
    """Perturbations per example and forward pass when the caller does not choose.

    About 4 inputs per pass on a CPU and 64 on a GPU, shared by the ``examples`` of the batch,
    and at least one per example.
    """
    return max(1, _INPUTS_PER_PASS.get(device.type, _INPUTS_PER_PASS["cuda"]) // examples)


@dataclass(frozen=True)
class PerturbationPlan:
    """What to score: ``count`` perturbed inputs, item ``i`` derived from ``example_of[i]``.

    Attributes:
        example_of: ``(count,)`` index of the example each item perturbs. Items of several
            examples may share a forward pass, so the plan may order them freely.
        fill: ``fill(start, stop, out)`` writes the inputs of items ``start .. stop - 1`` into
            ``out``, a reused buffer of shape ``(stop - start, C, H, W)``.
        description: What the progress bar counts.
    """

    example_of: Tensor
    fill: FillFn
    description: str = "forward passes"

    def __len__(self) -> int:
        return len(self.example_of)


class PerturbationScorer:
    """Prepare a batch with one clean pass, then score its perturbations in chunks.

    Args:
        forward_func: The model or any function of ``(inputs, *additional_forward_args)``.
        score_fn: ``"softmax"`` (the default; sigmoid for a single output unit), ``"logit"``,
            or a callable from the model output to per-example scores.
        perturbations_per_eval: Perturbed inputs **per example** in one forward pass, as in
            Captum: a pass holds at most ``perturbations_per_eval * N`` inputs for a batch of
            ``N`` examples, and may mix items of several examples. ``None`` chooses by device
            (:func:`default_perturbations_per_eval`).
    """

    def __init__(
        self,
        forward_func: Callable[..., Any],
        score_fn: ScoreFn = "softmax",
        perturbations_per_eval: int | None = None,
    ) -> None:
        if not callable(forward_func):
            raise TypeError(f"forward_func must be callable; got {type(forward_func).__name__}")
        if perturbations_per_eval is not None:
            check_perturbations_per_eval(perturbations_per_eval)
        self.forward_func = forward_func
        self.score_fn = score_fn
        self._score = resolve_score_fn(score_fn)
        self.perturbations_per_eval = perturbations_per_eval

    @torch.no_grad()
    def prepare(
        self,
        inputs: Tensor | tuple[Tensor],
        target: TargetType = None,
        additional_forward_args: Any = None,
    ) -> PreparedBatch:
        """Check a batch, run its clean forward pass and resolve its targets.

        Args:
            inputs: ``N x C x H x W`` float tensor, or Captum's 1-tuple form ``(inputs,)``.
            target: Captum ``TargetType``; ``None`` for each example's top-1 class.
            additional_forward_args: Extra arguments of ``forward_func`` after the inputs, one
                value or a tuple. Tensors whose first dimension is ``N`` are per-example.

        Raises:
            TypeError, ValueError: Malformed inputs or targets, a model output that is not
                scores, NaN or Inf in the scores, inputs of another dtype or device than
                the model's parameters.
        """
        inputs = unpack_single(inputs, "inputs")[0]
        check_inputs(inputs)
        if additional_forward_args is None:
            forward_args: tuple[Any, ...] = ()
        elif isinstance(additional_forward_args, tuple):
            forward_args = additional_forward_args
        else:
            forward_args = (additional_forward_args,)
        per_example = tuple(
            isinstance(arg, Tensor) and arg.dim() > 0 and len(arg) == len(inputs)
            for arg in forward_args
        )
        output = self._forward_clean(inputs, forward_args)
        scores = self._scores_of(output, len(inputs))
        if not bool(torch.isfinite(scores).all()):
            raise ValueError(
                "the model's scores on the clean inputs contain NaN or Inf: check the model and "
                "its inputs (and score_fn, if you passed one)"
            )
        targets = ExampleTargets.resolve(target, scores)
        rows = torch.arange(len(inputs), device=scores.device)
        target_scores = targets.select(scores, rows).to(inputs.device)
        return PreparedBatch(
            inputs, output, scores, targets, target_scores, forward_args, per_example
        )

    @torch.no_grad()
    def score(
        self,
        batch: PreparedBatch,
        plan: PerturbationPlan,
        *,
        perturbations_per_eval: int | None = None,
        show_progress: bool = False,
    ) -> Tensor:
        """The target score of every item of ``plan``, as a ``(count,)`` tensor.

        The inputs are built by ``plan.fill`` into one buffer reused by every pass, and the
        scores are gathered on the device: nothing crosses to the host until the end, when one
        check makes sure that no score was NaN or Inf.

        Args:
            batch: The prepared batch the plan perturbs.
            plan: The items to score.
            perturbations_per_eval: Overrides the constructor's for this call.
            show_progress: Show a progress bar counting the perturbed inputs.
        """
        if perturbations_per_eval is not None:
            check_perturbations_per_eval(perturbations_per_eval)
        inputs, count = batch.inputs, len(plan)
        per_example = (
            perturbations_per_eval
            or self.perturbations_per_eval
            or default_perturbations_per_eval(inputs.device, len(batch))
        )
        chunk = per_example * len(batch)
        # Keep the caller's memory layout: channels-last inputs run channels-last kernels.
        layout = (
            torch.channels_last
            if inputs.is_contiguous(memory_format=torch.channels_last)
            and not inputs.is_contiguous()
            else torch.contiguous_format
        )
        buffer = torch.empty(
            (min(chunk, count), *inputs.shape[1:]), dtype=inputs.dtype, device=inputs.device
        ).contiguous(memory_format=layout)
        example_of = plan.example_of.to(inputs.device)
        result = torch.empty(count, dtype=inputs.dtype, device=inputs.device)
        finite = torch.ones((), dtype=torch.bool, device=inputs.device)
        bar = progress(total=count, desc=plan.description, disable=not show_progress)
        try:
            for start in range(0, count, chunk):
                stop = min(start + chunk, count)
                perturbed = buffer[: stop - start]
                plan.fill(start, stop, perturbed)
                examples = example_of[start:stop]
                output = self.forward_func(perturbed, *batch.forward_args_for(examples))
                scores = self._score(output)
                finite &= torch.isfinite(scores).all().to(finite.device)
                result[start:stop] = batch.targets.select(scores, examples)
                bar.update(stop - start)
        finally:
            bar.close()
        if not bool(finite):
            raise ValueError(
                f"the model's scores contain NaN or Inf on some of the {count} perturbed inputs "
                f"({plan.description}), though not on the clean inputs: the model is not stable "
                "on perturbed images"
            )
        return result

    def _forward_clean(self, inputs: Tensor, forward_args: tuple[Any, ...]) -> Any:
        try:
            return self.forward_func(inputs, *forward_args)
        except RuntimeError as error:
            mismatch = _parameter_mismatch(self.forward_func, inputs)
            if mismatch is not None:
                raise mismatch from error
            raise

    def _scores_of(self, output: Any, count: int) -> Tensor:
        if not isinstance(output, Tensor) and isinstance(self.score_fn, str):
            raise TypeError(
                f"forward_func returned a {type(output).__name__}, not a tensor of scores: pass "
                "score_fn to turn its output into scores, for example "
                "score_fn=lambda out: out['logits'].softmax(dim=-1)"
            )
        scores = self._score(output)
        if not isinstance(scores, Tensor) or scores.dim() == 0 or len(scores) != count:
            raise ValueError(
                "score_fn must return a tensor with one row per input; got "
                f"{getattr(scores, 'shape', type(scores))} for {count} inputs"
            )
        return scores


def _parameter_mismatch(forward_func: Callable[..., Any], inputs: Tensor) -> Exception | None:
    """A clear error when the inputs' dtype or device is not the model's, else ``None``."""
    model = module_of(forward_func)
    parameter = next(
        (p for p in model.parameters() if p.is_floating_point()) if model is not None else iter(()),
        None,
    )
    if parameter is None:
        return None
    if parameter.dtype != inputs.dtype:
        return TypeError(
            f"inputs are {inputs.dtype} but the model's parameters are {parameter.dtype}: "
            f"convert the inputs with inputs.to({parameter.dtype}) or the model with "
            f"model.to({inputs.dtype})"
        )
    if parameter.device != inputs.device:
        return ValueError(
            f"inputs are on {inputs.device} but the model's parameters are on "
            f"{parameter.device}: move the inputs with inputs.to('{parameter.device}')"
        )
    return None
