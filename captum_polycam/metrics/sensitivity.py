"""Max- and average-sensitivity of an explanation (Yeh et al., NeurIPS 2019).

How much does an explanation change when the input moves a little? Both measures sample
small random perturbations of each input, explain every perturbed copy and compare the
explanations with the clean one; they share the samples, so one pass gives both. The random
draws, the batching and the arguments passed to the explanation function are Captum's
(:func:`captum.metrics.sensitivity_max`), so that the max-sensitivity is the same number as
Captum's under the same seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from captum_polycam._compat import TargetType
from captum_polycam._conventions import check_inputs, check_int, is_per_example, unpack_single
from captum_polycam._repr import settings_repr
from captum_polycam.metrics.keys import (
    SCORE_DIRECTIONS,
    SENSITIVITY_AVG,
    SENSITIVITY_MAX,
    ScoreDirection,
)

__all__ = ["Sensitivity", "SensitivityResult"]


@dataclass(frozen=True)
class SensitivityResult:
    """The sensitivities of each example.

    Attributes:
        max: ``(N,)`` max-sensitivity, the largest relative change over the samples.
        avg: ``(N,)`` average-sensitivity, the mean relative change over the samples.
        protocol: The metric's settings that decide the numbers: ``n_perturb_samples``,
            ``perturb_radius`` and ``norm_ord``. :class:`MetricSummary` refuses to mix
            results whose protocols differ. Empty for a result built by hand.
    """

    max: Tensor
    avg: Tensor
    protocol: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Tensor]:
        """Per-example values by name, as :class:`MetricSummary` takes them."""
        return {SENSITIVITY_MAX: self.max, SENSITIVITY_AVG: self.avg}


class Sensitivity:
    r"""Max- and average-sensitivity of any explanation function.

    For an example ``x`` with explanation ``E(x)``, draw ``n = n_perturb_samples`` noises
    ``u_1 .. u_n``, each uniform in the L-infinity ball of radius ``r = perturb_radius``
    (every element independently uniform in ``[-r, r]``), and let

    ``s_j = ||E(x) - E(x + u_j)|| / ||E(x)||``,

    where ``||.||`` is the norm ``norm_ord`` of the explanation flattened to a vector (the
    elements of all explanation tensors together when it is a tuple), and a zero
    ``||E(x)||`` is replaced by 1, as Captum does. Then

    - max-sensitivity: ``SENS_max(x) = max_j s_j``;
    - average-sensitivity: ``SENS_avg(x) = (1 / n) sum_j s_j``.

    Low values mean a stable explanation. Yeh et al. define the average as an expectation
    over the ball; this is its Monte Carlo estimate from the same samples as the maximum.

    Every result carries the settings that decide what is estimated
    (:attr:`SensitivityResult.protocol`: ``n``, ``r`` and the norm), so that
    :class:`MetricSummary` never averages values of different protocols.
    ``max_examples_per_batch`` only groups the random draws, and the explanation function is
    what is measured, not how: neither is part of it.

    The computation follows :func:`captum.metrics.sensitivity_max` step by step, so that
    ``result.max`` equals it under the same ``torch.manual_seed``: the clean explanation
    first, then for each group of ``k`` samples per example the inputs repeated with
    ``repeat_interleave(k)``, the noise drawn on the CPU as
    ``torch.FloatTensor(size).uniform_(-r, r)`` for the whole group then moved to the inputs'
    device, and one explanation call for the group. All of it runs under ``torch.no_grad()``
    as in Captum; gradient-based attributions enable gradients themselves.

    Args:
        explanation_func: Called as ``explanation_func(inputs, **kwargs)``; it returns one
            finite explanation per input (NaN or Inf values are refused), as a tensor or a
            tuple of tensors whose first dimension is the batch. For example
            ``PolyCam(model).attribute``, or
            ``lambda x, target: LayerAttribution.interpolate(
            LayerGradCam(model, layer).attribute(x, target), (224, 224), "bilinear")``.
        n_perturb_samples: Number of samples ``n`` per example.
        perturb_radius: Radius ``r`` of the L-infinity ball.
        norm_ord: ``"fro"`` (the Euclidean norm of the flattened explanation) or a number
            ``p`` for the vector ``p``-norm (``math.inf`` for the largest absolute value).
        max_examples_per_batch: Most perturbed inputs per explanation call, Captum's
            argument of :func:`~captum.metrics.sensitivity_max`, kept under its name because
            it counts something else than ``perturbations_per_eval`` (which the other metrics
            and Poly-CAM take: perturbed inputs per example and forward pass). The samples
            are explained ``k = min(max(max_examples_per_batch // N, 1), n)`` per example at
            a time (so at least one per example and at least ``N`` inputs per call, even when
            ``max_examples_per_batch < N``). ``None`` explains
            all ``N * n`` perturbed inputs in one call.

    Example:
        >>> sensitivity = Sensitivity(PolyCam(model).attribute, n_perturb_samples=10)
        >>> result = sensitivity(inputs, target=labels)
        >>> result.max, result.avg
    """

    score_directions: ClassVar[dict[str, ScoreDirection]] = {
        key: SCORE_DIRECTIONS[key] for key in (SENSITIVITY_MAX, SENSITIVITY_AVG)
    }

    def __init__(
        self,
        explanation_func: Callable[..., Any],
        n_perturb_samples: int = 10,
        perturb_radius: float = 0.02,
        norm_ord: str | float = "fro",
        max_examples_per_batch: int | None = None,
    ) -> None:
        if not callable(explanation_func):
            raise TypeError(
                f"explanation_func must be callable; got {type(explanation_func).__name__}"
            )
        n_perturb_samples = check_int("n_perturb_samples", n_perturb_samples)
        if (
            isinstance(perturb_radius, bool)
            or not isinstance(perturb_radius, (int, float))
            or not math.isfinite(perturb_radius)
            or perturb_radius <= 0
        ):
            raise ValueError(
                f"perturb_radius must be a positive finite number; got {perturb_radius!r}"
            )
        if norm_ord != "fro" and (
            isinstance(norm_ord, bool)
            or not isinstance(norm_ord, (int, float))
            or math.isnan(norm_ord)
        ):
            raise ValueError(f"norm_ord must be 'fro' or a number; got {norm_ord!r}")
        max_examples_per_batch = check_int(
            "max_examples_per_batch", max_examples_per_batch, none=True
        )
        self.explanation_func = explanation_func
        self.n_perturb_samples = n_perturb_samples
        self.perturb_radius = float(perturb_radius)
        self.norm_ord = norm_ord
        self.max_examples_per_batch = max_examples_per_batch

    def __repr__(self) -> str:
        return settings_repr(
            "Sensitivity",
            explanation_func=self.explanation_func,
            n_perturb_samples=self.n_perturb_samples,
            perturb_radius=self.perturb_radius,
            norm_ord=self.norm_ord,
            max_examples_per_batch=self.max_examples_per_batch,
        )

    def __call__(
        self,
        inputs: Tensor | tuple[Tensor],
        target: TargetType = None,
        additional_forward_args: Any = None,
        *,
        explanations: Tensor | tuple[Tensor, ...] | None = None,
        **explanation_kwargs: Any,
    ) -> SensitivityResult:
        """The max- and average-sensitivity of each example.

        Args:
            inputs: A float tensor whose first dimension is the batch ``N``, or a 1-tuple
                holding one (Captum's tuple form). ``explanation_func`` receives the perturbed
                inputs in the same form.
            target: Passed to ``explanation_func`` as ``target=`` when not ``None``; a list
                or a tensor of per-example targets is repeated for each example's samples.
            additional_forward_args: Passed as ``additional_forward_args=`` when not
                ``None`` (as a tuple for the perturbed inputs); tensors whose first dimension
                is ``N`` are repeated for each example's samples, anything else is passed as
                is.
            explanations: The explanations of the clean ``inputs``, when the caller has
                them already (as ``explanation_func`` returns them: a tensor or a tuple of
                tensors, one row per example): ``explanation_func`` is then called on the
                perturbed inputs only. They are checked as its results are (one per example,
                finite), and each example's shape must be that of a perturbed input's
                explanation. ``None`` (the default) explains the clean inputs first.
            **explanation_kwargs: Passed to ``explanation_func`` as they are, except
                ``baselines``: per-example tensors (the inputs' number of dimensions and first
                dimension ``N > 1``), alone or in a tuple, are repeated like the inputs.

        Returns:
            The ``(N,)`` sensitivities, on the explanations' device, with their protocol.

        Raises:
            ValueError: ``explanation_func`` returns NaN or Inf values, for the clean or the
                perturbed inputs (naming which and the example), or not one explanation per
                input; or ``explanations`` are not one finite explanation per example shaped
                as those of the perturbed inputs.
        """
        as_tuple = isinstance(inputs, tuple)
        batch = self._check_inputs(inputs)
        count = len(batch)
        kwargs = dict(explanation_kwargs)
        if target is not None:
            kwargs["target"] = target
        if additional_forward_args is not None:
            kwargs["additional_forward_args"] = additional_forward_args

        per_call = self.n_perturb_samples
        if self.max_examples_per_batch is not None:
            per_call = min(max(self.max_examples_per_batch // count, 1), per_call)

        with torch.no_grad():
            if explanations is None:
                given = self._explain(batch, as_tuple, kwargs, count, "clean inputs")
            else:
                given = self._checked(explanations, count, "explanations", "clean inputs")
            clean = given.flat
            clean_norm = self._norm(clean)
            clean_norm = torch.where(clean_norm == 0, torch.ones_like(clean_norm), clean_norm)
            ratios = []
            done = 0
            while done < self.n_perturb_samples:
                # Groups of `per_call` samples, the last one smaller: Captum's order of draws.
                samples = min(per_call, self.n_perturb_samples - done)
                repeated = batch.repeat_interleave(samples, dim=0)
                # Captum's torch.FloatTensor(size): float32 on the CPU's generator, whatever
                # the inputs' dtype, device or torch's default device.
                noise = torch.empty(repeated.shape, dtype=torch.float32, device="cpu")
                noise.uniform_(-self.perturb_radius, self.perturb_radius)
                perturbed = repeated + noise.to(repeated.device)
                arguments = self._repeat_kwargs(kwargs, batch, samples)
                result = self._explain(
                    perturbed, as_tuple, arguments, count * samples, "perturbed inputs", samples
                )
                if explanations is not None and result.shapes != given.shapes:
                    raise ValueError(
                        f"explanations: shaped {given.shapes} per example, but "
                        f"explanation_func gives {result.shapes} per perturbed input"
                    )
                explained = result.flat
                if explained.shape[1] != clean.shape[1]:
                    raise ValueError(
                        f"explanation_func returned {explained.shape[1]} values per perturbed "
                        f"input and {clean.shape[1]} per clean input"
                    )
                change = self._norm(clean[:, None] - explained.view(count, samples, -1))
                ratios.append(change / clean_norm[:, None])
                done += samples
        sensitivities = torch.cat(ratios, dim=1)
        protocol = {
            "n_perturb_samples": self.n_perturb_samples,
            "perturb_radius": self.perturb_radius,
            "norm_ord": self.norm_ord,
        }
        return SensitivityResult(sensitivities.amax(dim=1), sensitivities.mean(dim=1), protocol)

    def _norm(self, values: Tensor) -> Tensor:
        # torch.norm(p="fro", dim=1), which Captum calls, is this Euclidean norm.
        order = 2 if self.norm_ord == "fro" else self.norm_ord
        return torch.linalg.vector_norm(values, order, dim=-1)

    def _explain(
        self,
        batch: Tensor,
        as_tuple: bool,
        kwargs: dict[str, Any],
        rows: int,
        what: str,
        per_example: int = 1,
    ) -> _Explained:
        """The explanations of ``batch`` by ``explanation_func``, checked (:meth:`_checked`).

        Args:
            batch: The inputs to explain, ``per_example`` consecutive rows per example.
            as_tuple: Whether ``explanation_func`` takes Captum's 1-tuple form.
            kwargs: Its keyword arguments.
            rows: The number of inputs in ``batch``.
            what: The inputs, as the errors name them (``"clean inputs"``, ...).
            per_example: Rows of ``batch`` per example, to name the example in errors.
        """
        explanation = self.explanation_func((batch,) if as_tuple else batch, **kwargs)
        return self._checked(explanation, rows, "explanation_func", what, per_example)

    @staticmethod
    def _checked(
        explanation: Any, rows: int, source: str, what: str, per_example: int = 1
    ) -> _Explained:
        """``explanation``, checked to hold ``rows`` finite rows, flattened.

        Args:
            explanation: A tensor or a tuple of tensors, from ``source`` (``"explanation_func"``
                or ``"explanations"``, as the errors name it).
            rows: The number of inputs explained.
            what: The inputs, as the errors name them (``"clean inputs"``, ...).
            per_example: Rows per example, to name the example in errors.

        Raises:
            TypeError: The explanation is not a tensor or a tuple of batched tensors.
            ValueError: It has not one row per input, or holds NaN or Inf values.
        """
        verb = "return" if source == "explanation_func" else "be"
        parts = explanation if isinstance(explanation, tuple) else (explanation,)
        if not parts or not all(isinstance(p, Tensor) and p.dim() > 0 for p in parts):
            raise TypeError(
                f"{source} must {verb} a tensor or a tuple of tensors with a batch "
                f"dimension; got {type(explanation).__name__}"
            )
        if any(len(part) != rows for part in parts):
            raise ValueError(
                f"{source} must {verb} one explanation per input ({rows}); got "
                f"first dimensions {[len(part) for part in parts]}"
            )
        flat = torch.cat([part.reshape(rows, -1) for part in parts], dim=1)
        finite = torch.isfinite(flat).all(dim=1)
        if not bool(finite.all()):
            # A NaN would make the example's sensitivity NaN, and the norms of an Inf map
            # are no change: refuse them as the other metrics refuse such attributions.
            example = int((~finite).nonzero()[0]) // per_example
            verbed = "returned" if source == "explanation_func" else "hold"
            raise ValueError(
                f"{source} {verbed} NaN or Inf values for the {what} of example "
                f"{example}; Sensitivity needs finite explanations"
            )
        return _Explained(flat, [tuple(part.shape[1:]) for part in parts])

    @staticmethod
    def _check_inputs(inputs: Any) -> Tensor:
        return check_inputs(unpack_single(inputs, "inputs")[0], spatial_dims=())

    @staticmethod
    def _repeat_kwargs(kwargs: dict[str, Any], inputs: Tensor, samples: int) -> dict[str, Any]:
        """The explanation arguments of the perturbed inputs, repeated as Captum repeats them."""
        count = len(inputs)

        def repeat(value: Any, dims: int | None = None) -> Any:
            per_example = is_per_example(value, count) and (dims is None or value.dim() == dims)
            return value.repeat_interleave(samples, dim=0) if per_example else value

        repeated = dict(kwargs)
        if "target" in kwargs:
            target = kwargs["target"]
            # Captum's _expand_target: lists entry by entry, tensors of several targets by row.
            if isinstance(target, list):
                repeated["target"] = [entry for entry in target for _ in range(samples)]
            elif isinstance(target, Tensor) and target.numel() > 1:
                repeated["target"] = target.repeat_interleave(samples, dim=0)
        if "additional_forward_args" in kwargs:
            extra = kwargs["additional_forward_args"]
            extra = extra if isinstance(extra, tuple) else (extra,)
            repeated["additional_forward_args"] = tuple(repeat(arg) for arg in extra)
        baselines = kwargs.get("baselines")
        if count > 1 and isinstance(baselines, (Tensor, tuple)):
            # Per-example baselines (as many dimensions as the inputs, N rows) follow their
            # example; a shared one, such as a C x H x W image, broadcasts as it is. (Captum
            # repeats them only when the first has the inputs' exact shape, and fails otherwise.)
            if isinstance(baselines, tuple):
                repeated["baselines"] = tuple(repeat(b, inputs.dim()) for b in baselines)
            else:
                repeated["baselines"] = repeat(baselines, inputs.dim())
        return repeated


@dataclass(frozen=True)
class _Explained:
    """Explanations flattened to ``(rows, D)`` (the parts side by side), and the shape of one
    row's explanation, part by part."""

    flat: Tensor
    shapes: list[tuple[int, ...]]
