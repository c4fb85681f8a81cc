"""Scoring many perturbed copies of a batch, a few per example at a time, in one reused buffer.

Perturbation methods (Poly-CAM's masked inputs, insertion and deletion curves, the masked
images of average drop) all reduce to: prepare the batch once (:meth:`PerturbationScorer.prepare`:
the clean pass, its scores and the targets), then for items ``0 .. count - 1``, each derived
from one example, build the perturbed input, run the model and keep the target's score
(:meth:`PerturbationScorer.score` with a :class:`PerturbationPlan`). One engine owns both steps
so that every method gets the same batching, argument handling, checks and progress reporting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from captum_polycam._compat import TargetType
from captum_polycam._conventions import (
    SIGNALS_IMAGES_VOLUMES,
    buffers_kept,
    check_inputs,
    input_errors_explained,
    is_per_example,
    module_of,
    unpack_single,
)
from captum_polycam._progress import Progress, current_progress, progress_mode
from captum_polycam.perturbation.batch import PreparedBatch, check_perturbations_per_eval
from captum_polycam.perturbation.options import (
    PRECISIONS,
    Precision,
    ScoringOptions,
    default_perturbations_per_eval,
)
from captum_polycam.perturbation.targets import (
    ExampleTargets,
    ScoreFn,
    logits_of,
    resolve_score_fn,
)
from captum_polycam.perturbation.tuning import LoweredPrecisionCheck, PassShape, PassTuner

__all__ = [
    "PRECISIONS",
    "FillFn",
    "PerturbationPlan",
    "PerturbationScorer",
    "Precision",
    "ScoringOptions",
    "default_perturbations_per_eval",
]

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Pass shapes measured so far, per model: shared by every scorer of the process.
_TUNER = PassTuner()
# How much slower a lowered precision runs than fp32 on a CPU, per model: measured once.
_LOWERED = LoweredPrecisionCheck()
# How a scorer runs its passes unless told: measured pass size, fp32, eager.
_DEFAULTS = ScoringOptions()
# An explicit pass size has its layout measured only in plans of at least this many passes, so
# that the measurement's 4 passes cost a sixteenth of the plan at most, and only once.
_LAYOUT_PROBE_PASSES = 64

FillFn = Callable[[int, int, Tensor], None]
"""``fill(start, stop, out)`` writes the perturbed inputs of items ``start .. stop - 1``."""


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
        options: How the passes run: their size (measured unless fixed), precision and
            compiling, as one :class:`ScoringOptions`, which the public classes build from
            their keywords. The default is ``ScoringOptions()``.

    Raises:
        TypeError: If ``forward_func`` is not callable or ``options`` is not a
            :class:`ScoringOptions`.
    """

    def __init__(
        self,
        forward_func: Callable[..., Any],
        score_fn: ScoreFn = "softmax",
        options: ScoringOptions = _DEFAULTS,
    ) -> None:
        if not callable(forward_func):
            raise TypeError(f"forward_func must be callable; got {type(forward_func).__name__}")
        if not isinstance(options, ScoringOptions):
            raise TypeError(
                f"options must be a ScoringOptions; got {type(options).__name__} (the public "
                "classes take perturbations_per_eval, precision and compile as keywords)"
            )
        self.options = options
        self.forward_func = forward_func
        self.score_fn = score_fn
        self._score = resolve_score_fn(score_fn)
        self._compiled: Callable[..., Any] | None = None

    @property
    def perturbations_per_eval(self) -> int | None:
        return self.options.perturbations_per_eval

    @property
    def precision(self) -> Precision:
        return self.options.precision

    @property
    def compile(self) -> bool:
        return self.options.compile

    @torch.no_grad()
    def prepare(
        self,
        inputs: Tensor | tuple[Tensor],
        target: TargetType = None,
        additional_forward_args: Any = None,
    ) -> PreparedBatch:
        """Check a batch, run its clean forward pass and resolve its targets.

        The model comes back as it went in: in training mode, its buffers (batch-norm
        statistics) are given back once the pass is done, here and in :meth:`score`.

        Args:
            inputs: ``N x C x H x W`` float tensor, or Captum's 1-tuple form ``(inputs,)``.
            target: Captum ``TargetType``; ``None`` for each example's top-1 class.
            additional_forward_args: Extra arguments of ``forward_func`` after the inputs, one
                value or a tuple. Tensors whose first dimension is ``N`` are per-example.

        Raises:
            TypeError, ValueError: Malformed inputs or targets, a model output that is not
                scores, NaN or Inf in the scores, inputs of another dtype or device than
                the model's parameters or of other channels than its first convolution's
                (found when the clean pass fails, whose error is kept as the cause).
        """
        inputs = unpack_single(inputs, "inputs")[0]
        check_inputs(inputs, spatial_dims=SIGNALS_IMAGES_VOLUMES)
        if additional_forward_args is None:
            forward_args: tuple[Any, ...] = ()
        elif isinstance(additional_forward_args, tuple):
            forward_args = additional_forward_args
        else:
            forward_args = (additional_forward_args,)
        per_example = tuple(is_per_example(arg, len(inputs)) for arg in forward_args)
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
            inputs, output, scores, targets, target_scores, forward_args, per_example, self.score_fn
        )

    def reuse(
        self,
        prepared: PreparedBatch | None,
        inputs: Tensor | tuple[Tensor],
        target: TargetType = None,
        additional_forward_args: Any = None,
    ) -> PreparedBatch:
        """``prepared``, a batch another scorer with the same ``score_fn`` prepared from these
        ``inputs``, so that several metrics share one clean pass; or, when it is ``None``, a
        new one (:meth:`prepare`).

        Raises:
            ValueError: ``prepared`` was made from other inputs or with another ``score_fn``.
        """
        if prepared is None:
            return self.prepare(inputs, target, additional_forward_args)
        inputs = unpack_single(inputs, "inputs")[0]
        if prepared.inputs is not inputs:
            raise ValueError("prepared: a batch prepared from other inputs than these")
        if prepared.score_fn != self.score_fn:
            raise ValueError(
                f"prepared: made with score_fn={prepared.score_fn!r}; this one scores with "
                f"score_fn={self.score_fn!r}"
            )
        return prepared

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
        check makes sure that no score was NaN or Inf. Without ``perturbations_per_eval``
        (here or in the options), the passes' size and memory layout are measured on the
        first call that scores enough items for this model, input shape, device and precision
        (:mod:`~captum_polycam.perturbation.tuning`), then reused; with it, the layout alone.
        A pass that runs out of memory is halved and retried, never failing the call.

        Args:
            batch: The prepared batch the plan perturbs.
            plan: The items to score.
            perturbations_per_eval: Overrides the options' for this call.
            show_progress: Report the perturbed inputs scored: a bar on a terminal, otherwise
                a status line every 30 s and a final one. Inside a job that counts passes
                (:func:`~captum_polycam.evaluation.evaluate`), they are counted there.

        Raises:
            ValueError: If a pass's scores are not shaped as the clean pass's, one row per
                input (checked on every pass), or any score is NaN or Inf.

        Warns:
            UserWarning: If ``precision`` is 2 or more times slower than fp32 on this CPU.
        """
        perturbations_per_eval = check_perturbations_per_eval(perturbations_per_eval)
        count = len(plan)
        # In training mode the passes would move the model's batch-norm statistics: every
        # buffer is given back as it was once they are done.
        with buffers_kept(module_of(self.forward_func)):
            self._check_lowered_precision(batch)
            # A job that counts passes (an evaluation) gets them; otherwise this call reports alone.
            job = current_progress()
            own = (
                None
                if job
                else Progress(plan.description, count, mode=progress_mode(show_progress))
            )
            counter = job or own
            assert counter is not None
            try:
                result, finite = self._score_plan(batch, plan, counter, perturbations_per_eval)
            finally:
                if own is not None:
                    own.close()
        if not bool(finite):
            raise ValueError(
                f"the model's scores contain NaN or Inf on some of the {count} perturbed inputs "
                f"({plan.description}), though not on the clean inputs: the model is not stable "
                "on perturbed images"
            )
        return result

    def _score_plan(
        self,
        batch: PreparedBatch,
        plan: PerturbationPlan,
        counter: Progress,
        perturbations_per_eval: int | None,
    ) -> tuple[Tensor, Tensor]:
        """The target score of every item of ``plan``, and whether they are all finite (a
        0-d bool tensor, left on the device), counting the items scored on ``counter``.

        A pass that runs out of memory is halved and retried, and the halved shape remembered
        when it was measured.
        """
        inputs, count = batch.inputs, len(plan)
        example_of = plan.example_of.to(inputs.device)
        result = torch.empty(count, dtype=inputs.dtype, device=inputs.device)
        finite = torch.ones((), dtype=torch.bool, device=inputs.device)
        buffers: dict[bool, Tensor] = {}
        forward = self._scoring_forward()

        def run(start: int, stop: int, shape: PassShape) -> None:
            items = stop - start
            # A compiled model sees passes of one size: the last one is padded.
            rows = shape.size if self.compile else items
            buffer = buffers.get(shape.channels_last)
            if buffer is None or len(buffer) < rows:
                buffer = torch.zeros(
                    (rows, *inputs.shape[1:]), dtype=inputs.dtype, device=inputs.device
                )
                buffer = buffers[shape.channels_last] = buffer.contiguous(
                    memory_format=shape.memory_format
                )
            plan.fill(start, stop, buffer[:items])
            examples = example_of[start:stop]
            if rows > items:  # the padding rows repeat the last example
                examples = torch.cat([examples, examples[-1:].expand(rows - items)])
            with self._autocast(inputs.device):
                output = forward(buffer[:rows], *batch.forward_args_for(examples))
            scores = self._score(_float32(output))
            self._check_pass_scores(scores, rows, batch.scores)
            scores = scores[:items]
            finite.logical_and_(torch.isfinite(scores).all().to(finite.device))
            result[start:stop] = batch.targets.select(scores, examples[:items])
            counter.update(stop - start)

        shape, start, tuned = self._pass_shape(batch, count, run, perturbations_per_eval)
        while start < count:
            stop = min(start + shape.size, count)
            try:
                run(start, stop, shape)
            except torch.OutOfMemoryError:
                if shape.size == 1:
                    raise
                # Halve the pass and go on; remember it, so the next call starts there.
                buffers.clear()
                if inputs.device.type == "cuda":
                    torch.cuda.empty_cache()
                shape = PassShape(shape.size // 2, shape.channels_last)
                if tuned:
                    _TUNER.remember(self._owner, self._tuning_key(inputs), shape)
                continue
            start = stop
        return result, finite

    def _pass_shape(
        self,
        batch: PreparedBatch,
        count: int,
        run: Callable[[int, int, PassShape], None],
        perturbations_per_eval: int | None,
    ) -> tuple[PassShape, int, bool]:
        """The shape of the passes, how many items choosing it already scored, and whether it
        was measured (rather than given or defaulted).

        An explicit ``perturbations_per_eval`` wins; the layout of its passes is still measured
        (4 passes, once per model, input shape, device, precision and pass size) when the plan
        holds at least ``_LAYOUT_PROBE_PASSES`` of them. Otherwise the shape measured for this
        model, input shape, device and precision, or, the first time, the fastest of a probe on
        the plan's first items.
        """
        inputs = batch.inputs
        caller_layout = _is_channels_last(inputs)
        explicit = perturbations_per_eval or self.perturbations_per_eval
        if self.compile:  # measuring would compile the model for every shape tried
            size = explicit or default_perturbations_per_eval(inputs.device, len(batch))
            return PassShape(size * len(batch), caller_layout), 0, False
        if explicit:
            return self._explicit_pass_shape(inputs, explicit * len(batch), count, run)
        key = self._tuning_key(inputs)
        remembered = _TUNER.chosen(self._owner, key)
        if remembered is not None:
            return remembered, 0, True
        layouts = (False, True) if inputs.dim() == 4 else (False,)
        item_bytes = inputs[0].numel() * inputs.element_size()
        probed, scored = _TUNER.probe(run, count, inputs.device, layouts, item_bytes)
        if probed is None:
            default = default_perturbations_per_eval(inputs.device, len(batch)) * len(batch)
            return PassShape(default, caller_layout), scored, False
        _TUNER.remember(self._owner, key, probed)
        return probed, scored, True

    def _explicit_pass_shape(
        self, inputs: Tensor, size: int, count: int, run: Callable[[int, int, PassShape], None]
    ) -> tuple[PassShape, int, bool]:
        """Passes of the caller's size, in the layout measured for it (see :meth:`_pass_shape`).

        Not reported as measured: a pass halved after running out of memory is not remembered
        as the measured shape of this model.
        """
        caller_layout = _is_channels_last(inputs)
        if inputs.dim() != 4:  # channels-last is a layout of 4-d tensors only
            return PassShape(size, caller_layout), 0, False
        key = (*self._tuning_key(inputs), size)
        remembered = _TUNER.chosen(self._owner, key)
        if remembered is None and count >= _LAYOUT_PROBE_PASSES * size:
            remembered = PassShape(size, _TUNER.fastest_layout(run, size, inputs.device))
            _TUNER.remember(self._owner, key, remembered)
        return remembered or PassShape(size, caller_layout), 0, False

    def _check_lowered_precision(self, batch: PreparedBatch) -> None:
        """On a CPU, time a pass of the first input in the lowered precision against fp32,
        once per model and input shape, and warn if it is far slower (see
        :class:`~captum_polycam.perturbation.tuning.LoweredPrecisionCheck`).

        A CPU without native bf16 emulates it, tens of times slower than fp32: better to say
        so before the passes than to let an hour go by.
        """
        inputs = batch.inputs
        if self.precision == "fp32" or inputs.device.type != "cpu":
            return
        first = inputs[:1]
        args = batch.forward_args_for(torch.zeros(1, dtype=torch.long, device=inputs.device))

        def run(lowered: bool) -> None:
            with self._autocast(inputs.device) if lowered else contextlib.nullcontext():
                self.forward_func(first, *args)

        _LOWERED.check(self._owner, self._tuning_key(inputs), self.precision, run)

    @property
    def _owner(self) -> Any:
        return module_of(self.forward_func) or self.forward_func

    def _tuning_key(self, inputs: Tensor) -> tuple[Any, ...]:
        return (tuple(inputs.shape[1:]), inputs.dtype, str(inputs.device), self.precision)

    def _scoring_forward(self) -> Callable[..., Any]:
        if not self.compile:
            return self.forward_func
        if self._compiled is None:  # compiled once per scorer, on first use
            self._compiled = torch.compile(self.forward_func, dynamic=False)
        return self._compiled

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager[Any]:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[self.precision])

    def _forward_clean(self, inputs: Tensor, forward_args: tuple[Any, ...]) -> Any:
        model = module_of(self.forward_func)
        with buffers_kept(model), input_errors_explained(self.forward_func, inputs):
            return self.forward_func(inputs, *forward_args)

    def _scores_of(self, output: Any, count: int) -> Tensor:
        if logits_of(output) is None and isinstance(self.score_fn, str):
            raise TypeError(
                f"forward_func returned a {type(output).__name__}, neither a tensor of scores "
                "nor an output with logits: pass score_fn to turn its output into scores, for "
                "example score_fn=lambda out: out['scores'].softmax(dim=-1)"
            )
        scores = self._score(output)
        if not isinstance(scores, Tensor) or scores.dim() == 0 or len(scores) != count:
            raise ValueError(
                "score_fn must return a tensor with one row per input; got "
                f"{getattr(scores, 'shape', type(scores))} for {count} inputs"
            )
        return scores

    def _check_pass_scores(self, scores: Any, rows: int, clean: Tensor) -> None:
        """A clear error unless a perturbed pass of ``rows`` inputs was scored ``(rows, ...)``,
        shaped as the clean pass's scores.

        Fewer rows would not fail on their own: one row is broadcast over the pass, its score
        copied to every input (a detector wrapper that drops the inputs without detections
        does that), and a map drifts silently. Shapes are known on the host, so checking
        every pass costs no device synchronisation.

        Raises:
            ValueError: If the scores are not a tensor of the expected shape.
        """
        expected = (rows, *clean.shape[1:])
        if isinstance(scores, Tensor) and tuple(scores.shape) == expected:
            return
        got = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        # The default scores are the model's output: it is forward_func that dropped rows.
        culprit = (
            f"forward_func (scored with score_fn={self.score_fn!r})"
            if isinstance(self.score_fn, str)
            else "score_fn"
        )
        raise ValueError(
            f"{culprit} must give one row of scores per input on every pass, shaped as on the "
            f"clean pass: a perturbed pass of {rows} inputs gave shape {got}, expected "
            f"{expected}. A model or score_fn that drops inputs (a detector's without "
            "detections, say) must still return a row for each, for example a score of 0"
        )


def _float32(output: Any) -> Any:
    """Half-precision model outputs as float32, so that the scores (a softmax over a thousand
    classes, say) are computed at full precision; anything else as it is."""
    if isinstance(output, Tensor) and output.dtype in (torch.bfloat16, torch.float16):
        return output.float()
    return output


def _is_channels_last(inputs: Tensor) -> bool:
    return (
        inputs.dim() == 4
        and inputs.is_contiguous(memory_format=torch.channels_last)
        and not inputs.is_contiguous()
    )
