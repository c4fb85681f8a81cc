"""Poly-CAM (Englebert, Cornu & De Vleeschouwer, ICPR 2022) as a Captum attribution."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from itertools import accumulate, pairwise
from typing import Any, Literal, overload

import torch
from captum.attr import LayerAttribution, PerturbationAttribution
from torch import Tensor, nn

from captum_polycam._compat import TargetType
from captum_polycam.attr.layers import (
    LayerCall,
    LayerLike,
    capture_activations,
    discover_layers,
    resolve_layers,
)
from captum_polycam.attr.maps import backward_recursion, robust_normalise, upsample
from captum_polycam.perturbation.scoring import (
    PerturbationScorer,
    check_inputs,
    check_perturbations_per_eval,
)
from captum_polycam.perturbation.targets import ExampleTargets, ScoreFn

__all__ = ["PolyCam"]

Variant = Literal["plus", "minus", "plusminus"]
_VARIANTS = ("plus", "minus", "plusminus")


def _model_of(forward_func: Callable[..., Any]) -> nn.Module | None:
    if isinstance(forward_func, nn.Module):
        return forward_func
    owner = getattr(forward_func, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


class PolyCam(LayerAttribution, PerturbationAttribution):
    r"""Poly-CAM: a high-resolution class activation map from several layers, gradient free.

    For every chosen layer ``l`` (shallow to deep) and channel ``k``, the activation
    ``A_{l,k}`` is normalised at its native resolution with
    ``N(a) = clip((a - p_0.1(a)) / max(p_99.9(a), 1e-12), 0, 1)`` and upsampled bilinearly
    to the input size, giving a mask ``H_k``. With ``p`` the score of the target and
    ``b = p(X)``, the channel weight is

    - ``plus`` (PCAM+): ``w_k = p(X * H_k)``, the confidence when the region is unveiled;
    - ``minus`` (PCAM-): ``w_k = relu(b - p(X * (1 - H_k)))``, the drop when it is hidden;
    - ``plusminus`` (PCAM+-): ``w_k = relu(p(X * H_k) + b - p(X * (1 - H_k)))``.

    Each layer's map is ``S_l = relu(sum_k w_k A_{l,k})``. From the deepest layer up,
    ``M_L = S_L`` and ``M_l = relu(LNorm(S_l, size(M_{l+1})) * Up(M_{l+1}, size(S_l)))``, where
    ``LNorm(S, s) = S / max(Up(Down(S, s), size(S)), 1e-12)`` divides by a bilinear down-and-up
    resampling of ``S``. The attribution is ``N(M_1)`` upsampled to the input size.

    PCAM+ and PCAM- cost one forward pass per channel of every layer, PCAM+- two; they are
    run ``perturbations_per_eval`` at a time.

    Args:
        forward_func: The model, or a function of ``(inputs, *additional_forward_args)``
            calling it. Layer names and automatic discovery need an ``nn.Module`` (or a bound
            method of one).
        layers: Modules or dotted names, ordered shallow to deep, each optionally followed by
            ``":k"`` (or given as ``(layer, k)``) to read the ``k``-th call of a module object
            called several times in a forward pass (the default is its last call). ``None``
            picks one layer per resolution with :func:`~captum_polycam.discover_layers`.
        variant: ``"plus"``, ``"minus"`` or ``"plusminus"``.
        score_fn: What a forward pass is scored by: ``"softmax"`` (the paper's choice, a
            sigmoid for a single output unit), ``"logit"``, or a callable mapping the model's
            output to per-example values (or to an array the target indexes into), for
            regression, detection or segmentation scores.

    Example:
        >>> from captum_polycam import PolyCam
        >>> from torchvision.models import vgg16
        >>> model = vgg16().eval()
        >>> polycam = PolyCam(model, layers=["features.15", "features.22", "features.29"])
        >>> saliency = polycam.attribute(torch.rand(2, 3, 224, 224), target=[1, 2])
        >>> saliency.shape
        torch.Size([2, 1, 224, 224])
    """

    def __init__(
        self,
        forward_func: Callable[..., Any],
        layers: Sequence[LayerLike] | LayerLike | None = None,
        variant: Variant = "plusminus",
        *,
        score_fn: ScoreFn = "softmax",
    ) -> None:
        if not callable(forward_func):
            raise TypeError(f"forward_func must be callable; got {type(forward_func).__name__}")
        if variant not in _VARIANTS:
            raise ValueError(f"variant must be one of {_VARIANTS}; got {variant!r}")
        self.model = _model_of(forward_func)
        if layers is None and self.model is None:
            raise TypeError(
                "layers=None discovers layers from the model's modules, so forward_func must be "
                "an nn.Module or a bound method of one; otherwise pass the layer modules"
            )
        resolved = None if layers is None else resolve_layers(self.model, layers)  # type: ignore[arg-type]
        LayerAttribution.__init__(
            self, forward_func, None if resolved is None else [c.module for c in resolved]
        )
        PerturbationAttribution.__init__(self, forward_func)
        self.variant: Variant = variant
        self.layer_calls = resolved
        self._scorer = PerturbationScorer(forward_func, score_fn)

    @overload
    def attribute(
        self,
        inputs: Tensor,
        target: TargetType = None,
        additional_forward_args: Any = None,
        *,
        perturbations_per_eval: int | None = None,
        return_stages: Literal[False] = False,
        show_progress: bool = False,
    ) -> Tensor: ...

    @overload
    def attribute(
        self,
        inputs: Tensor,
        target: TargetType = None,
        additional_forward_args: Any = None,
        *,
        perturbations_per_eval: int | None = None,
        return_stages: Literal[True],
        show_progress: bool = False,
    ) -> tuple[Tensor, list[Tensor]]: ...

    @overload
    def attribute(
        self,
        inputs: tuple[Tensor],
        target: TargetType = None,
        additional_forward_args: Any = None,
        *,
        perturbations_per_eval: int | None = None,
        return_stages: bool = False,
        show_progress: bool = False,
    ) -> tuple[Tensor] | tuple[tuple[Tensor], list[Tensor]]: ...

    def attribute(
        self,
        inputs: Tensor | tuple[Tensor],
        target: TargetType = None,
        additional_forward_args: Any = None,
        *,
        perturbations_per_eval: int | None = None,
        return_stages: bool = False,
        show_progress: bool = False,
    ) -> Any:
        r"""Compute the Poly-CAM map of each example.

        Args:
            inputs: ``N x C x H x W`` float tensor, normalised as the model expects, or a
                1-tuple holding it (Captum's tuple form; the maps then come in a 1-tuple).
            target: The output index explained for each example, as in Captum: an int, a
                tuple for multi-dimensional outputs, a list or tensor with one entry per
                example, or ``None`` for each example's top-1 class.
            additional_forward_args: Extra arguments of ``forward_func`` after the inputs.
                Tensors whose first dimension is ``N`` are treated as per-example and follow
                their example into the masked batches; anything else is passed as is.
            perturbations_per_eval: Masked inputs per forward pass. ``None`` uses 4 on the
                CPU and 64 on a GPU. The result does not depend on it (beyond float
                rounding).
            return_stages: Also return the intermediate composites.
            show_progress: Show a progress bar counting masked forward passes.

        Returns:
            The maps, ``N x 1 x H x W`` in ``[0, 1]`` on the inputs' device. With
            ``return_stages=True``, a pair ``(maps, stages)`` where ``stages`` holds the
            normalised composites deepest first (the deepest layer alone, the deepest two,
            ...), each ``N x 1 x H x W``; the last one equals ``maps``.
        """
        as_tuple = isinstance(inputs, tuple) and len(inputs) == 1  # Captum's tuple form
        if as_tuple:
            inputs = inputs[0]
        check_inputs(inputs)
        if perturbations_per_eval is not None:
            check_perturbations_per_eval(perturbations_per_eval)
        if additional_forward_args is not None and not isinstance(additional_forward_args, tuple):
            additional_forward_args = (additional_forward_args,)
        self._warn_if_training()
        with torch.no_grad():
            stages = self._stages(
                inputs, target, additional_forward_args, perturbations_per_eval, show_progress
            )
        maps = (stages[-1],) if as_tuple else stages[-1]
        return (maps, stages) if return_stages else maps

    def _stages(
        self,
        inputs: Tensor,
        target: TargetType,
        additional_forward_args: tuple[Any, ...] | None,
        perturbations_per_eval: int | None,
        show_progress: bool,
    ) -> list[Tensor]:
        layers = self.layer_calls
        if layers is None:
            assert self.model is not None
            names = discover_layers(self.model, inputs, additional_forward_args)
            layers = resolve_layers(self.model, names)
        output, activations = capture_activations(
            lambda: self.forward_func(inputs, *(additional_forward_args or ())), layers
        )
        self._check_resolutions(layers, activations)
        clean = self._scorer.score_output(output, len(inputs))
        targets = ExampleTargets.resolve(target, clean)
        baseline = targets.select(clean, torch.arange(len(inputs), device=clean.device))

        masks = [robust_normalise(activation) for activation in activations]
        unveiled, hidden = self._score_masks(
            inputs, masks, baseline, targets, additional_forward_args, perturbations_per_eval,
            show_progress,
        )  # fmt: skip
        layer_maps = []
        for index, activation in enumerate(activations):
            weights = self._channel_weights(
                baseline, None if unveiled is None else unveiled[index],
                None if hidden is None else hidden[index],
            )  # fmt: skip
            weighted = torch.nansum(weights[:, :, None, None] * activation, dim=1, keepdim=True)
            layer_maps.append(weighted.relu())

        size = tuple(inputs.shape[-2:])
        return [upsample(robust_normalise(m), size) for m in backward_recursion(layer_maps)]

    def _channel_weights(
        self, baseline: Tensor, unveiled: Tensor | None, hidden: Tensor | None
    ) -> Tensor:
        if self.variant == "plus":
            assert unveiled is not None
            return unveiled
        assert hidden is not None
        drop = baseline[:, None] - hidden
        if self.variant == "minus":
            return drop.relu()
        assert unveiled is not None
        return (unveiled + drop).relu()

    def _score_masks(
        self,
        inputs: Tensor,
        masks: list[Tensor],
        baseline: Tensor,
        targets: ExampleTargets,
        additional_forward_args: tuple[Any, ...] | None,
        perturbations_per_eval: int | None,
        show_progress: bool,
    ) -> tuple[list[Tensor] | None, list[Tensor] | None]:
        """Scores of ``X * H_k`` (unveiled) and ``X * (1 - H_k)`` (hidden), per layer ``(N, K)``.

        An all-zero mask (a channel dead on this input, common after a ReLU) needs no forward
        pass of its own: unveiling it gives the black image, scored once per example, and
        hiding it gives the clean input, whose score is ``baseline``.
        """
        modes = {"plus": (False,), "minus": (True,), "plusminus": (False, True)}[self.variant]
        count, size, device = len(inputs), tuple(inputs.shape[-2:]), inputs.device
        # Jobs: (masks as (N*K, 1, h, w), indices of the masks to score, hide). The first job,
        # when unveiling, is one black image per example.
        jobs: list[tuple[Tensor, Tensor, bool]] = []
        if False in modes:
            black = inputs.new_zeros(count, 1, 1, 1)
            jobs.append((black, torch.arange(count, device=device), False))
        for layer_masks in masks:
            flat = layer_masks.flatten(0, 1)[:, None]
            alive = flat.flatten(1).amax(dim=1).gt(0).nonzero().squeeze(1)
            jobs.extend((flat, alive, hide) for hide in modes)
        sizes = [len(index) for _, index, _ in jobs]
        firsts = list(accumulate(sizes, initial=0))
        example_of = torch.cat([index // (len(flat) // count) for flat, index, _ in jobs])

        def fill(start: int, stop: int, out: Tensor) -> None:
            for first, (flat, index, hide) in zip(firsts, jobs, strict=False):
                lo, hi = max(start, first), min(stop, first + len(index))
                if lo >= hi:
                    continue
                mask = upsample(flat[index[lo - first : hi - first]], size)
                rows = out[lo - start : hi - start]
                torch.index_select(inputs, 0, example_of[lo:hi], out=rows)
                rows.mul_(1.0 - mask if hide else mask)

        scores = self._scorer.score_perturbations(
            inputs, firsts[-1], example_of, fill, targets, additional_forward_args,
            show_progress=show_progress, description="Poly-CAM forward passes",
            perturbations_per_eval=perturbations_per_eval,
        )  # fmt: skip

        per_job = list(zip(jobs, scores.split(sizes), strict=True))
        black_scores = per_job.pop(0)[1] if False in modes else baseline
        unveiled: list[Tensor] = []
        hidden: list[Tensor] = []
        for (flat, index, hide), job_scores in per_job:
            channels = len(flat) // count
            full = (baseline if hide else black_scores).repeat_interleave(channels)
            full[index] = job_scores
            (hidden if hide else unveiled).append(full.view(count, channels))
        return (unveiled or None), (hidden or None)

    def _warn_if_training(self) -> None:
        if self.model is not None and self.model.training:
            warnings.warn(
                "the model is in training mode: dropout and batch statistics make the maps "
                "noisy and run-dependent; call model.eval() first",
                UserWarning,
                stacklevel=3,  # the caller of attribute()
            )

    @staticmethod
    def _check_resolutions(layers: list[LayerCall], activations: list[Tensor]) -> None:
        for (shallow, a), (deep, b) in pairwise(zip(layers, activations, strict=True)):
            if b.shape[-2] > a.shape[-2] or b.shape[-1] > a.shape[-1]:
                raise ValueError(
                    "layers must be ordered shallow to deep, by non-increasing resolution; "
                    f"{deep} ({b.shape[-2]}x{b.shape[-1]}) comes after {shallow} "
                    f"({a.shape[-2]}x{a.shape[-1]})"
                )
