"""Average drop and increase in confidence (Chattopadhay et al., Grad-CAM++, WACV 2018).

Both compare the model's confidence in the target on the clean image with its confidence on
the image multiplied by the saliency map, so they share the same two forward passes:
:class:`ConfidenceChange` returns both, :class:`AverageDrop` and :class:`IncreaseInConfidence`
one each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from captum_polycam._compat import TargetType
from captum_polycam._conventions import SIGNALS_IMAGES_VOLUMES, check_inputs, unpack_single
from captum_polycam._repr import settings_repr
from captum_polycam.metrics._part import MetricPart
from captum_polycam.metrics._protocol import protocol_value
from captum_polycam.metrics.keys import (
    AVERAGE_DROP,
    INCREASE_IN_CONFIDENCE,
    SCORE_DIRECTIONS,
    ScoreDirection,
)
from captum_polycam.normalisation import ChannelReduction, min_max_mask
from captum_polycam.perturbation.batch import PreparedBatch
from captum_polycam.perturbation.options import Precision, ScoringOptions
from captum_polycam.perturbation.scoring import PerturbationPlan, PerturbationScorer
from captum_polycam.perturbation.targets import ScoreFn

__all__ = [
    "AverageDrop",
    "ConfidenceChange",
    "ConfidenceChangeResult",
    "IncreaseInConfidence",
]


@dataclass(frozen=True)
class ConfidenceChangeResult:
    """Per-example confidences and their change when the image is masked by its map.

    Attributes:
        clean: ``(N,)`` score ``Y`` of the target on the clean inputs.
        masked: ``(N,)`` score ``O`` of the target on the masked inputs ``X * M``.
        drop: ``(N,)`` drop in percent, ``100 * max(0, Y - O) / Y``.
        increase: ``(N,)`` bool, ``O > Y``.
        protocol: The metric's settings that decide the numbers: ``score_fn`` (a callable's
            name), ``channel_reduction`` and ``precision``. :class:`MetricSummary` refuses to
            mix results whose protocols differ. Empty for a result built by hand.
    """

    clean: Tensor
    masked: Tensor
    drop: Tensor
    increase: Tensor
    protocol: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Tensor]:
        """Per-example values in percent, whose means over a dataset are the two metrics."""
        return {
            AVERAGE_DROP: self.drop,
            INCREASE_IN_CONFIDENCE: self.increase.to(self.drop.dtype) * 100,
        }


class ConfidenceChange:
    r"""Average drop and increase in confidence of a saliency map, from the same forwards.

    With ``p`` the score of the target class ``c`` (``score_fn``), ``Y_i = p(X_i)`` on the
    clean input and ``O_i = p(X_i * M_i)`` on the input multiplied by its saliency mask,
    every channel by the same ``M_i = (m_i - min(m_i)) / (max(m_i) - min(m_i))``
    (:func:`~captum_polycam.normalisation.min_max_mask`; a constant map gives ``M_i = 0``, the
    black image), over ``N`` examples:

    - average drop (%) ``= (100 / N) sum_i max(0, Y_i - O_i) / Y_i``; lower is better;
    - increase in confidence (%) ``= (100 / N) sum_i [O_i > Y_i]``; higher is better.

    Signals ``N x C x L`` and volumes ``N x C x D x H x W`` are masked in the same way: the map
    brought to the inputs' size (linearly or trilinearly, when at a lower resolution), min-max
    normalised over the example's samples or voxels, multiplies every channel.

    Each call returns the per-example terms, ``drop_i = 100 * max(0, Y_i - O_i) / Y_i`` and
    ``increase_i = [O_i > Y_i]``, so that the metrics over a dataset are their means (what
    :class:`~captum_polycam.metrics.MetricSummary` computes from ``as_dict()``). The drop is
    relative to a positive score: it is 0 where ``O_i >= Y_i``, and NaN where ``O_i < Y_i <= 0``,
    which only a ``"logit"`` or custom ``score_fn`` can give (and which ``MetricSummary``
    refuses, naming the example).

    Every result carries the settings that decide its numbers
    (:attr:`ConfidenceChangeResult.protocol`), so that :class:`MetricSummary` never averages
    values of different protocols; ``perturbations_per_eval`` and ``compile`` are not part of
    it.

    ``perturbations_per_eval``, ``precision`` and ``compile`` are Captum's keywords, checked
    once by the :class:`~captum_polycam.ScoringOptions` built from them for the engine (a
    ``ValueError`` or ``TypeError`` naming the argument).

    Args:
        forward_func: The model, or a function of ``(inputs, *additional_forward_args)``.
        score_fn: ``"softmax"`` (the paper's class probability; a sigmoid for a single output
            unit), ``"logit"``, or a callable from the model output to per-example scores (or
            to an array the target indexes into).
        channel_reduction: How ``N x C x *spatial`` attributions become one value per
            position: ``"sum"`` or ``"abs_sum"``.
        perturbations_per_eval: Masked inputs **per example** in one forward pass; each
            example has one masked input, so any value of 1 or more scores the whole batch in
            one pass. ``None`` (the default) is measured. The results do not depend on it.
        precision: ``"fp32"`` (the default), or ``"bf16"`` or ``"fp16"`` to score the masked
            inputs under ``torch.autocast``; the clean scores and the masks stay float32.
        compile: Score the masked inputs through ``torch.compile`` (for long runs).

    Example:
        >>> metric = ConfidenceChange(model)
        >>> result = metric(inputs, PolyCam(model).attribute(inputs))
        >>> result.drop.mean(), result.increase.float().mean() * 100
    """

    score_directions: ClassVar[dict[str, ScoreDirection]] = {
        key: SCORE_DIRECTIONS[key] for key in (AVERAGE_DROP, INCREASE_IN_CONFIDENCE)
    }

    def __init__(
        self,
        forward_func: Callable[..., Any],
        score_fn: ScoreFn = "softmax",
        channel_reduction: ChannelReduction = "sum",
        perturbations_per_eval: int | None = None,
        precision: Precision = "fp32",
        compile: bool = False,
    ) -> None:
        if channel_reduction not in ("sum", "abs_sum"):
            raise ValueError(
                f"channel_reduction must be 'sum' or 'abs_sum'; got {channel_reduction!r}"
            )
        options = ScoringOptions(perturbations_per_eval, precision, compile)
        self.scorer = PerturbationScorer(forward_func, score_fn, options)
        self.channel_reduction: ChannelReduction = channel_reduction

    def __repr__(self) -> str:
        return settings_repr(type(self).__name__, **self._settings())

    def _settings(self) -> dict[str, Any]:
        return {
            "score_fn": self.scorer.score_fn,
            "channel_reduction": self.channel_reduction,
            "perturbations_per_eval": self.scorer.perturbations_per_eval,
            "precision": self.scorer.precision,
            "compile": self.scorer.compile,
        }

    def _protocol(self) -> dict[str, Any]:
        """The settings that decide the numbers (:attr:`ConfidenceChangeResult.protocol`)."""
        return {
            "score_fn": protocol_value(self.scorer.score_fn),
            "channel_reduction": self.channel_reduction,
            "precision": self.scorer.precision,
        }

    @torch.no_grad()
    def __call__(
        self,
        inputs: Tensor | tuple[Tensor],
        attributions: Tensor | tuple[Tensor],
        target: TargetType = None,
        additional_forward_args: Any = None,
        *,
        prepared: PreparedBatch | None = None,
    ) -> ConfidenceChangeResult:
        """The clean and masked scores of a batch; see the class docstring for definitions.

        Args:
            inputs: ``N x C x *spatial`` float tensor, as the model expects it: signals
                ``N x C x L``, images ``N x C x H x W`` or volumes ``N x C x D x H x W`` (or a
                1-tuple holding it, Captum's tuple form).
            attributions: ``N x 1 x *s`` (upsampled linearly, bilinearly or trilinearly to
                the inputs' size: ``N x 1 x h x w`` for images), ``N x *s`` or
                ``N x C x *spatial`` saliency (or a 1-tuple holding it).
            target: Captum ``TargetType``; ``None`` for each example's top-1 class on the
                clean inputs.
            additional_forward_args: Extra arguments of the model after the inputs; tensors
                whose first dimension is ``N`` follow their example.
            prepared: The batch's clean pass, made by :meth:`PerturbationScorer.prepare
                <captum_polycam.perturbation.PerturbationScorer.prepare>` of a scorer with
                the same ``score_fn`` on these ``inputs``, to share it between metrics;
                ``None`` runs it here.

        Returns:
            Per-example scores, drops and increases, on the inputs' device, with their
            protocol.
        """
        examples = unpack_single(inputs, "inputs")[0]
        check_inputs(examples, spatial_dims=SIGNALS_IMAGES_VOLUMES)
        attributions = unpack_single(attributions, "attributions")[0]
        # The mask first, so that malformed attributions are refused before any forward pass.
        mask = min_max_mask(examples, attributions, self.channel_reduction)
        batch = self.scorer.reuse(prepared, inputs, target, additional_forward_args)
        inputs = batch.inputs

        def fill(start: int, stop: int, out: Tensor) -> None:
            torch.mul(inputs[start:stop], mask[start:stop, None], out=out)

        examples = torch.arange(len(inputs), device=inputs.device)
        masked = self.scorer.score(batch, PerturbationPlan(examples, fill, "masked inputs"))
        # The masked scores are kept in the inputs' dtype: round the clean ones alike, so that
        # an unchanged score compares equal.
        clean = batch.target_scores.to(masked.dtype)
        fell = masked < clean
        # Divide only where the score fell: elsewhere the drop is 0 whatever Y is.
        drop = torch.where(fell, (clean - masked) / torch.where(fell, clean, 1.0), 0.0)
        drop = torch.where(fell & (clean <= 0), torch.nan, drop) * 100
        return ConfidenceChangeResult(clean, masked, drop, masked > clean, self._protocol())


class _ConfidenceValue(MetricPart):
    """One per-example value of :class:`ConfidenceChange`, in percent."""

    whole = ConfidenceChange
    key: ClassVar[str]

    def __call__(
        self,
        inputs: Tensor | tuple[Tensor],
        attributions: Tensor | tuple[Tensor],
        target: TargetType = None,
        additional_forward_args: Any = None,
    ) -> Tensor:
        """``(N,)`` values in percent, on the inputs' device; arguments as
        :meth:`ConfidenceChange.__call__`."""
        result = self.metric(inputs, attributions, target, additional_forward_args)
        return result.as_dict()[self.key]


class AverageDrop(_ConfidenceValue):
    """The per-example drop ``100 * max(0, Y - O) / Y``; see :class:`ConfidenceChange`.

    Its mean over a dataset is the average drop in percent; lower is better.
    """

    key = AVERAGE_DROP
    score_direction = SCORE_DIRECTIONS[AVERAGE_DROP]


class IncreaseInConfidence(_ConfidenceValue):
    """The per-example increase ``100 * [O > Y]`` (100 or 0); see :class:`ConfidenceChange`.

    Its mean over a dataset is the increase in confidence in percent; higher is better.
    """

    key = INCREASE_IN_CONFIDENCE
    score_direction = SCORE_DIRECTIONS[INCREASE_IN_CONFIDENCE]
