"""Insertion and deletion curves (Petsiuk et al., RISE, BMVC 2018), batched on the device.

Pixels are ranked by decreasing saliency. Insertion starts from a baseline image (a blur of
the input by default) and copies the input's pixels back, most salient first; deletion starts
from the input and replaces its pixels by the baseline's. After each step the model scores the
image: a faithful map makes insertion rise fast (high area) and deletion fall fast (low area).
Signals and volumes go the same way, by samples and by voxels, blurred in every dimension.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.v2.functional import gaussian_blur

from captum_polycam._compat import TargetType
from captum_polycam._conventions import (
    SIGNALS_IMAGES_VOLUMES,
    check_inputs,
    check_int,
    unpack_single,
)
from captum_polycam._repr import settings_repr
from captum_polycam.metrics._part import MetricPart
from captum_polycam.metrics._protocol import protocol_value
from captum_polycam.metrics.keys import (
    DELETION,
    DELETION_CURVE,
    INSERTION,
    INSERTION_CURVE,
    INSERTION_MINUS_DELETION,
    SCORE_DIRECTIONS,
    ScoreDirection,
)
from captum_polycam.normalisation import ChannelReduction, pixel_saliency
from captum_polycam.perturbation.batch import PreparedBatch
from captum_polycam.perturbation.options import Precision, ScoringOptions
from captum_polycam.perturbation.scoring import PerturbationPlan, PerturbationScorer
from captum_polycam.perturbation.targets import ScoreFn

__all__ = ["CurveResult", "Deletion", "Insertion", "InsertionDeletion", "InsertionDeletionResult"]

Baseline = Literal["blur", "zeros", "mean"] | Tensor | Callable[[Tensor], Tensor]
AreaRule = Literal["mean", "trapezoid"]
CurveKind = Literal["insertion", "deletion"]
_CURVE_KEYS = {INSERTION: INSERTION_CURVE, DELETION: DELETION_CURVE}


@dataclass(frozen=True)
class CurveResult:
    """One curve per example.

    Attributes:
        kind: ``"insertion"`` or ``"deletion"``.
        auc: ``(N,)`` area under each curve.
        curve: ``(N, S)`` score after each step.
        fractions: ``(S,)`` fraction of the positions (pixels, samples or voxels) moved at
            each step (``1`` at the last),
            the x-axis of the curves.
        protocol: The metric's settings that decide the numbers: ``n_steps``, ``baseline``
            (``"tensor"`` for a tensor, a callable's name), ``blur_kernel_size`` and
            ``blur_sigma`` (with the blur baseline only), ``score_fn`` (a callable's name),
            ``auc``, ``channel_reduction`` and ``precision``. :class:`MetricSummary` refuses
            to mix results whose protocols differ. Empty for a result built by hand.
    """

    kind: CurveKind
    auc: Tensor
    curve: Tensor
    fractions: Tensor
    protocol: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Tensor | CurveResult]:
        """The areas and the curves (with their x-axis) by key, as :class:`MetricSummary`
        takes them: ``"insertion"`` and ``"insertion_curve"``, or the deletion ones."""
        return {self.kind: self.auc, _CURVE_KEYS[self.kind]: self}


@dataclass(frozen=True)
class InsertionDeletionResult:
    """Both curves of each example, and ``difference = insertion.auc - deletion.auc``."""

    insertion: CurveResult
    deletion: CurveResult

    @property
    def difference(self) -> Tensor:
        return self.insertion.auc - self.deletion.auc

    @property
    def protocol(self) -> dict[str, Any]:
        """The settings that decide the numbers, shared by both curves
        (:attr:`CurveResult.protocol`)."""
        return self.insertion.protocol

    def as_dict(self) -> dict[str, Tensor | CurveResult]:
        """Per-example areas and curves by key (:mod:`captum_polycam.metrics.keys`), as
        :class:`MetricSummary` takes them."""
        return {
            **self.insertion.as_dict(),
            **self.deletion.as_dict(),
            INSERTION_MINUS_DELETION: self.difference,
        }


class InsertionDeletion:
    r"""Insertion and deletion curves and their areas, sharing the ranking and the baseline.

    With ``P = H * W`` pixels, ``n = n_steps`` and ``q = ceil(P / n)`` pixels per step, let
    ``T_k`` be the ``min(k q, P)`` most salient pixels (all channels of a pixel move together;
    ties are broken by taking the later pixel in row-major order first, which is what flipping
    a stable ascending sort gives). With the baseline ``B`` and the target's score ``p``:

    - insertion step ``k``: ``p(B`` with the pixels of ``T_k`` taken from ``X)``;
    - deletion step ``k``: ``p(X`` with the pixels of ``T_k`` taken from ``B)``.

    With ``auc="mean"`` (the paper's protocol) the steps are ``k = 1 .. n`` and the area is
    their mean; the empty state ``k = 0`` is not scored. With ``auc="trapezoid"`` the steps are
    ``k = 0 .. n`` and the area is the trapezoid rule over the fraction ``|T_k| / P``.

    Higher insertion and lower deletion are better (``score_directions``).

    The defaults are the paper's: 224 steps, the input blurred by an 11 x 11 Gaussian of
    sigma 5 (reflect padding, torchvision's ``gaussian_blur``) as the baseline of both curves,
    scored by the softmax probability of the target.

    Signals ``N x C x L`` and volumes ``N x C x D x H x W`` are ranked and moved by samples
    and by voxels in the same way: ``P = L`` or ``P = D * H * W`` positions, ties to the later
    position in row-major order (the last axis fastest). The blur is the same Gaussian in every
    dimension (separable: the 1-D kernel of ``blur_kernel_size`` taps and ``blur_sigma`` along
    each axis, reflect padding): along ``L`` for signals; for volumes, each slice blurred as an
    image (``gaussian_blur``, as above), then along ``D``. A volume of one slice is not blurred
    along ``D`` (reflecting one slice gives it back, and the kernel sums to 1), so that it
    gives its image's curves exactly.

    Every result carries the settings that decide its numbers (:attr:`CurveResult.protocol`),
    so that :class:`MetricSummary` never averages curves of different protocols;
    ``perturbations_per_eval`` and ``compile`` change only how the steps are run, and are not
    part of it.

    ``perturbations_per_eval``, ``precision`` and ``compile`` are Captum's keywords, checked
    once by the :class:`~captum_polycam.ScoringOptions` built from them for the engine (a
    ``ValueError`` or ``TypeError`` naming the argument).

    Args:
        forward_func: The model, or a function of ``(inputs, *additional_forward_args)``.
        n_steps: Number of steps ``n``, at most the number of positions ``P`` of the inputs
            (``H * W`` pixels, ``L`` samples, ``D * H * W`` voxels; more would only repeat the
            last state); a call with more raises ``ValueError`` before any forward pass.
        baseline: ``"blur"``, ``"zeros"``, ``"mean"`` (each channel's mean over the image,
            signal or volume), a tensor broadcastable to the inputs, or a callable from inputs
            to baselines.
        score_fn: ``"softmax"`` (a sigmoid for a single output unit), ``"logit"`` or a
            callable from the model output to per-example scores.
        auc: ``"mean"`` or ``"trapezoid"``.
        channel_reduction: How ``N x C x *spatial`` attributions become one value per
            position: ``"sum"`` or ``"abs_sum"``.
        perturbations_per_eval: Step images **per example** in one forward pass, possibly
            of several examples and curves; ``None`` (the default) is measured. The results do
            not depend on it.
        blur_kernel_size: Side of the blur kernel, an odd positive int; a call refuses inputs
            of a side of ``blur_kernel_size // 2`` positions or fewer, which its reflect
            padding cannot cover (but a volume's depth of 1, which is not blurred).
        blur_sigma: Standard deviation of the blur, a positive finite number.
        precision: ``"fp32"`` (the paper's), or ``"bf16"`` or ``"fp16"`` to score the step
            images under ``torch.autocast``; the ranking and the step images stay float32.
        compile: Score the step images through ``torch.compile`` (for long runs).

    Example:
        >>> metric = InsertionDeletion(model)
        >>> result = metric(inputs, PolyCam(model).attribute(inputs))
        >>> result.insertion.auc, result.deletion.auc, result.difference
    """

    score_directions: ClassVar[dict[str, ScoreDirection]] = {
        key: SCORE_DIRECTIONS[key] for key in (INSERTION, DELETION, INSERTION_MINUS_DELETION)
    }

    def __init__(
        self,
        forward_func: Callable[..., Any],
        n_steps: int = 224,
        baseline: Baseline = "blur",
        score_fn: ScoreFn = "softmax",
        auc: AreaRule = "mean",
        channel_reduction: ChannelReduction = "sum",
        perturbations_per_eval: int | None = None,
        blur_kernel_size: int = 11,
        blur_sigma: float = 5.0,
        precision: Precision = "fp32",
        compile: bool = False,
    ) -> None:
        n_steps = check_int("n_steps", n_steps)
        blur_kernel_size = _check_blur(blur_kernel_size, blur_sigma)
        if auc not in ("mean", "trapezoid"):
            raise ValueError(f"auc must be 'mean' or 'trapezoid'; got {auc!r}")
        if isinstance(baseline, str) and baseline not in ("blur", "zeros", "mean"):
            raise ValueError(
                f"baseline must be 'blur', 'zeros', 'mean', a tensor or a callable; "
                f"got {baseline!r}"
            )
        if not isinstance(baseline, (str, Tensor)) and not callable(baseline):
            raise TypeError(f"baseline must be a string, a tensor or a callable; got {baseline!r}")
        if channel_reduction not in ("sum", "abs_sum"):
            raise ValueError(
                f"channel_reduction must be 'sum' or 'abs_sum'; got {channel_reduction!r}"
            )
        options = ScoringOptions(perturbations_per_eval, precision, compile)
        self.scorer = PerturbationScorer(forward_func, score_fn, options)
        self.n_steps = n_steps
        self.baseline = baseline
        self.auc = auc
        self.channel_reduction: ChannelReduction = channel_reduction
        self.blur_kernel_size = blur_kernel_size
        self.blur_sigma = blur_sigma

    def __repr__(self) -> str:
        return settings_repr(type(self).__name__, **self._settings())

    def _settings(self) -> dict[str, Any]:
        return {
            "n_steps": self.n_steps,
            "baseline": self.baseline,
            "score_fn": self.scorer.score_fn,
            "auc": self.auc,
            "channel_reduction": self.channel_reduction,
            "perturbations_per_eval": self.scorer.perturbations_per_eval,
            "blur_kernel_size": self.blur_kernel_size,
            "blur_sigma": self.blur_sigma,
            "precision": self.scorer.precision,
            "compile": self.scorer.compile,
        }

    def _protocol(self) -> dict[str, Any]:
        """The settings that decide the numbers (:attr:`CurveResult.protocol`)."""
        protocol: dict[str, Any] = {
            "n_steps": self.n_steps,
            "baseline": protocol_value(self.baseline),
        }
        if self._blurs():
            protocol |= {"blur_kernel_size": self.blur_kernel_size, "blur_sigma": self.blur_sigma}
        return protocol | {
            "score_fn": protocol_value(self.scorer.score_fn),
            "auc": self.auc,
            "channel_reduction": self.channel_reduction,
            "precision": self.scorer.precision,
        }

    def _check_sizes(self, examples: Tensor) -> None:
        """Refuse more steps than positions, and a blur kernel too large for the inputs, from
        the inputs' shape alone, before any forward pass.

        Past ``P`` steps every step would show the last state again (the full image for
        insertion, the baseline for deletion), which only pads the curve and skews its area.
        The blur pads each blurred side by reflection, ``blur_kernel_size // 2`` positions,
        which needs more positions than that on each side (torch's padding fails otherwise).
        """
        size = tuple(examples.shape[2:])
        shown, unit = " x ".join(map(str, size)), _POSITIONS[len(size)]
        if self.n_steps > math.prod(size):
            raise ValueError(
                f"n_steps must be at most {math.prod(size)}, the {shown} {unit} of the "
                f"inputs; got {self.n_steps}"
            )
        padding = self.blur_kernel_size // 2
        blurred = _blurred_sides(size)
        if self._blurs() and padding >= min(blurred):
            # A volume's depth of 1 is not blurred: the error says so where it could puzzle.
            exempt = " (a depth of 1 is not blurred)" if len(blurred) < len(size) else ""
            raise ValueError(
                f"blur_kernel_size must be at most {2 * min(blurred) - 1} for "
                f"{shown} inputs: the blur's reflect padding of blur_kernel_size // 2 "
                f"{unit} must be smaller than each side{exempt}; got {self.blur_kernel_size}"
            )

    def _blurs(self) -> bool:
        return isinstance(self.baseline, str) and self.baseline == "blur"

    def __call__(
        self,
        inputs: Tensor | tuple[Tensor],
        attributions: Tensor | tuple[Tensor],
        target: TargetType = None,
        additional_forward_args: Any = None,
        *,
        prepared: PreparedBatch | None = None,
    ) -> InsertionDeletionResult:
        """The curves of a batch; see the class docstring for the definitions.

        Args:
            inputs: ``N x C x *spatial`` float tensor, as the model expects it: signals
                ``N x C x L``, images ``N x C x H x W`` or volumes ``N x C x D x H x W``; or a
                1-tuple holding it (Captum's tuple form).
            attributions: ``N x 1 x *s`` (upsampled linearly, bilinearly or trilinearly to
                the inputs' size: ``N x 1 x h x w`` for images), ``N x *s`` or
                ``N x C x *spatial`` saliency, or a 1-tuple holding it.
            target: Captum ``TargetType``; ``None`` for each example's top-1 class.
            additional_forward_args: Extra arguments of the model after the inputs; tensors
                whose first dimension is ``N`` follow their example.
            prepared: The batch's clean pass, made by :meth:`PerturbationScorer.prepare
                <captum_polycam.perturbation.PerturbationScorer.prepare>` of a scorer with
                the same ``score_fn`` on these ``inputs``, to share it between metrics;
                ``None`` runs it here.

        Returns:
            Per-example areas and curves, on the inputs' device, with their protocol.

        Raises:
            ValueError: ``n_steps`` exceeds the inputs' ``P`` positions, or the blur baseline's
                ``blur_kernel_size // 2`` is not smaller than each blurred side of the inputs
                (both checked before any forward pass), or the inputs, attributions or target
                are malformed.
        """
        curves = self.curves(
            inputs, attributions, target, additional_forward_args, prepared=prepared
        )
        return InsertionDeletionResult(curves[INSERTION], curves[DELETION])

    @torch.no_grad()
    def curves(
        self,
        inputs: Tensor | tuple[Tensor],
        attributions: Tensor | tuple[Tensor],
        target: TargetType = None,
        additional_forward_args: Any = None,
        kinds: Sequence[CurveKind] = (INSERTION, DELETION),
        *,
        prepared: PreparedBatch | None = None,
    ) -> dict[str, CurveResult]:
        """The curves of ``kinds`` only, by kind; the arguments, and the errors, are those of
        ``__call__``."""
        examples = unpack_single(inputs, "inputs")[0]
        check_inputs(examples, spatial_dims=SIGNALS_IMAGES_VOLUMES)
        saliency = pixel_saliency(
            examples, unpack_single(attributions, "attributions")[0], self.channel_reduction
        )
        self._check_sizes(examples)
        batch = self.scorer.reuse(prepared, inputs, target, additional_forward_args)
        inputs = batch.inputs
        count, pixels = len(inputs), math.prod(inputs.shape[2:])

        # rank[n, i]: position of pixel (sample, voxel) i in example n's order of decreasing
        # saliency.
        order = saliency.flatten(1).argsort(dim=1, stable=True).flip(1)
        positions = torch.arange(pixels, device=inputs.device).expand(count, -1)
        rank = torch.empty_like(order).scatter_(1, order, positions)

        per_step = math.ceil(pixels / self.n_steps)
        first = 0 if self.auc == "trapezoid" else 1
        steps = torch.arange(first, self.n_steps + 1, device=inputs.device)
        moved = (steps * per_step).clamp(max=pixels)
        plan = self._step_plan(inputs, self._baseline(inputs), rank, moved, kinds)
        scores = self.scorer.score(batch, plan).view(count, len(kinds), len(steps))

        fractions = moved.to(inputs.dtype) / pixels
        protocol = self._protocol()
        results = {}
        for index, kind in enumerate(kinds):
            curve = scores[:, index]
            if self.auc == "mean":
                area = curve.mean(dim=1)
            else:
                area = torch.trapezoid(curve, fractions, dim=1)
            results[kind] = CurveResult(kind, area, curve, fractions, dict(protocol))
        return results

    @staticmethod
    def _step_plan(
        inputs: Tensor, baseline: Tensor, rank: Tensor, moved: Tensor, kinds: Sequence[CurveKind]
    ) -> PerturbationPlan:
        """Every step image, ordered by example, then curve, then step."""
        steps, size = len(moved), inputs.shape[2:]
        per_example = len(kinds) * steps
        example_of = torch.arange(len(inputs), device=inputs.device)
        example_of = example_of.repeat_interleave(per_example)

        def fill(start: int, stop: int, out: Tensor) -> None:
            # A chunk spans a few (example, curve) runs of consecutive steps.
            position = start
            while position < stop:
                run, step = divmod(position, steps)
                example, curve = divmod(run, len(kinds))
                end = min(stop, (run + 1) * steps)
                taken = rank[example] < moved[step : step + end - position, None]
                taken = taken.view(-1, 1, *size)
                source, background = inputs[example], baseline[example]
                if kinds[curve] == DELETION:
                    source, background = background, source
                torch.where(taken, source, background, out=out[position - start : end - start])
                position = end

        return PerturbationPlan(example_of, fill, "insertion/deletion steps")

    def _baseline(self, inputs: Tensor) -> Tensor:
        if isinstance(self.baseline, str):
            if self.baseline == "blur":
                return _blur(inputs, self.blur_kernel_size, self.blur_sigma)
            if self.baseline == "zeros":
                return torch.zeros_like(inputs)
            spatial = tuple(range(2, inputs.dim()))
            return inputs.mean(dim=spatial, keepdim=True).expand_as(inputs)
        baseline = self.baseline if isinstance(self.baseline, Tensor) else self.baseline(inputs)
        if not isinstance(baseline, Tensor):
            raise TypeError(f"baseline: the callable must return a tensor; got {type(baseline)}")
        try:
            return torch.broadcast_to(baseline.to(inputs), inputs.shape)
        except RuntimeError:
            raise ValueError(
                f"baseline of shape {tuple(baseline.shape)} cannot broadcast to the inputs' "
                f"shape {tuple(inputs.shape)}"
            ) from None


# What the positions of signals, images and volumes are called, in the errors.
_POSITIONS = {1: "samples", 2: "pixels", 3: "voxels"}


def _blurred_sides(size: tuple[int, ...]) -> tuple[int, ...]:
    """The sides of ``size`` that the blur runs along: all, but a volume's depth of 1."""
    return size[1:] if len(size) == 3 and size[0] == 1 else size


def _blur(inputs: Tensor, kernel_size: int, sigma: float) -> Tensor:
    """The Gaussian blur of ``N x C x *spatial`` inputs along every spatial axis, with
    reflect padding.

    Images go through torchvision's ``gaussian_blur``, as they always have. The Gaussian is
    separable, so volumes are blurred slice by slice by the same call (their slices as the
    channels of one image, so that a volume of one slice makes exactly the image's call), then
    along ``D``; signals along ``L``. A depth of 1 is left as it is: reflect padding has nothing
    to reflect there, and copies of the one slice (what reflecting it would give) blurred by a
    kernel that sums to 1 are the slice itself.
    """
    if inputs.dim() == 3:
        return _blur_along(inputs, 2, kernel_size, sigma)
    count, _, *size = inputs.shape
    planes = inputs.reshape(count, -1, *size[-2:])
    blurred = gaussian_blur(planes, [kernel_size, kernel_size], [sigma, sigma]).view_as(inputs)
    if inputs.dim() == 5 and size[0] > 1:
        blurred = _blur_along(blurred, 2, kernel_size, sigma)
    return blurred


def _blur_along(values: Tensor, dim: int, kernel_size: int, sigma: float) -> Tensor:
    """``values`` convolved along ``dim`` with the normalised 1-D Gaussian of ``kernel_size``
    taps at offsets ``-kernel_size // 2 .. kernel_size // 2`` from the centre,
    ``g(t) = exp(-t^2 / (2 sigma^2)) / sum_t' exp(-t'^2 / (2 sigma^2))`` (torchvision's kernel),
    after reflect padding of ``kernel_size // 2``."""
    half = kernel_size // 2
    offsets = torch.arange(-half, half + 1, dtype=values.dtype, device=values.device)
    taps = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (taps / taps.sum()).view(1, 1, -1)
    moved = values.movedim(dim, -1)
    lines = moved.reshape(-1, 1, moved.shape[-1])
    blurred = F.conv1d(F.pad(lines, (half, half), mode="reflect"), kernel)
    return blurred.view(moved.shape).movedim(-1, dim)


def _check_blur(kernel_size: Any, sigma: Any) -> int:
    """``blur_kernel_size`` as a plain int, or a ValueError naming the setting unless
    torchvision's ``gaussian_blur`` takes it: an odd positive int ``blur_kernel_size`` and a
    positive finite ``blur_sigma``."""
    # Checked at construction whatever the baseline, so that a mistake does not wait for the
    # first batch to fail inside torchvision (or to pass unnoticed until the baseline changes).
    kernel_size = check_int("blur_kernel_size", kernel_size)
    if kernel_size % 2 == 0:
        raise ValueError(
            f"blur_kernel_size must be odd, so that the kernel centres on each pixel; "
            f"got {kernel_size}"
        )
    # bool is a Real to Python, but True is no standard deviation; NaN fails the comparison.
    if isinstance(sigma, bool) or not isinstance(sigma, Real) or not 0 < sigma < math.inf:
        raise ValueError(f"blur_sigma must be a positive finite number; got {sigma!r}")
    return kernel_size


class _SingleCurve(MetricPart):
    """One curve of :class:`InsertionDeletion`, computed alone (half the forward passes)."""

    whole = InsertionDeletion
    kind: ClassVar[CurveKind]

    def __call__(
        self,
        inputs: Tensor | tuple[Tensor],
        attributions: Tensor | tuple[Tensor],
        target: TargetType = None,
        additional_forward_args: Any = None,
    ) -> CurveResult:
        """The curve of a batch; see :class:`InsertionDeletion` for the arguments."""
        curves = self.metric.curves(
            inputs, attributions, target, additional_forward_args, kinds=(self.kind,)
        )
        return curves[self.kind]


class Insertion(_SingleCurve):
    """The insertion curve alone; higher is better. See :class:`InsertionDeletion`."""

    kind = INSERTION
    score_direction = SCORE_DIRECTIONS[INSERTION]


class Deletion(_SingleCurve):
    """The deletion curve alone; lower is better. See :class:`InsertionDeletion`."""

    kind = DELETION
    score_direction = SCORE_DIRECTIONS[DELETION]
