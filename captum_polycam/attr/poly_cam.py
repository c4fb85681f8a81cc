"""Poly-CAM (Englebert, Cornu & De Vleeschouwer, ICPR 2022) as a Captum attribution."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from itertools import accumulate
from typing import Any, Literal, NamedTuple, overload

import torch
from captum.attr import LayerAttribution, PerturbationAttribution
from captum.log import log_usage
from torch import Tensor

from captum_polycam._compat import TargetType
from captum_polycam._conventions import (
    SIGNALS_IMAGES_VOLUMES,
    buffers_kept,
    check_inputs,
    module_of,
    unpack_single,
)
from captum_polycam._repr import settings_repr
from captum_polycam.attr.budget import (
    AUTO,
    check_min_fidelity,
    check_pass_budget,
    mask_features,
    spend_budget,
)
from captum_polycam.attr.capture import (
    LayerLike,
    Reshape,
    capture_activations,
    check_dimensions,
    check_shallow_to_deep,
    layer_info,
    reshape_function,
    resolve_layers,
)
from captum_polycam.attr.layers import discover_layers
from captum_polycam.attr.maps import (
    backward_recursion,
    normalise_within,
    robust_bounds,
    robust_normalise,
)
from captum_polycam.normalisation import upsample
from captum_polycam.perturbation.batch import PreparedBatch, check_perturbations_per_eval
from captum_polycam.perturbation.options import Precision, ScoringOptions
from captum_polycam.perturbation.scoring import PerturbationPlan, PerturbationScorer
from captum_polycam.perturbation.targets import ScoreFn

__all__ = ["VARIANTS", "PolyCam", "PolyCamMaps", "Variant"]

Variant = Literal["plus", "minus", "plusminus"]
# The one declaration of the variants, with the paper's names (which evaluate's methods are).
VARIANTS: dict[Variant, str] = {"plus": "PCAM+", "minus": "PCAM-", "plusminus": "PCAM+-"}
# Which masked inputs each variant scores: unveiled X * H (hide=False), hidden X * (1 - H).
_HIDE_MODES: dict[str, tuple[bool, ...]] = {
    "plus": (False,),
    "minus": (True,),
    "plusminus": (False, True),
}


class PolyCamMaps(NamedTuple):
    """Everything one Poly-CAM run computes, each ``N x 1 x H x W`` in ``[0, 1]`` (``N x 1 x
    L`` for signals, ``N x 1 x D x H x W`` for volumes).

    Attributes:
        maps: The attribution, fusing every layer (what :meth:`PolyCam.attribute` returns).
        stages: The composites deepest first: the deepest layer alone, the deepest two, ...;
            the last one equals ``maps``.
        layer_maps: Each layer's own map ``S_l``, shallow to deep, without the recursion
            (the paper's single-layer ablation).
        passes: The masked forward passes run, summed over the examples (without the clean
            pass and the black image of each example).
        exact_passes: The masked passes of the exact method: live channels times the
            variant's masks per channel (one, or two for PCAM+-), summed over the examples.
            ``passes`` equals it unless a ``pass_budget`` is set.
        fidelity: ``(N,)``, each map's Spearman correlation with the exact map:
            ``1`` for the exact method (and wherever a budget scored every live channel);
            under a ``pass_budget``, an estimate from the channels scored last, whose
            estimated weights are compared with their scores and the errors carried into
            the map (see "The pass budget" in the documentation, with how it tracks the true
            value); NaN where the budget left no channel to check.
        saliencies: Each layer's ``S_l`` at its own resolution, not normalised: what the
            recursion combines, and what :meth:`recomposed` combines again.
    """

    maps: Tensor
    stages: list[Tensor]
    layer_maps: list[Tensor]
    passes: int
    exact_passes: int
    fidelity: Tensor
    saliencies: tuple[Tensor, ...] = ()

    def recomposed(self, local_normalisation: bool) -> PolyCamMaps:
        """The same run's ``maps`` and ``stages`` with or without local normalisation.

        ``LNorm`` acts in the recursion only, after every channel is weighted, so the paper's
        ablation needs no masked pass of its own: the layer maps are combined again.

        Example:
            >>> result = PolyCam(model).decompose(inputs)
            >>> ablation = result.recomposed(local_normalisation=False).maps
        """
        stages = _stages(list(self.saliencies), local_normalisation, tuple(self.maps.shape[2:]))
        return self._replace(maps=stages[-1], stages=stages)


class _LayerMasks(NamedTuple):
    """One layer's channels as masks, normalised a chunk at a time when their inputs are
    built, so that a batch holds its activations once rather than twice."""

    activations: Tensor  # (N * K, 1, *spatial), example-major: K channels per example
    low: Tensor  # (N * K, 1, 1, ...): the mask is normalise_within(activations, low, divisor)
    divisor: Tensor
    live: Tensor  # (N, K): the mask is not all zero, so the channel needs a pass of its own

    @classmethod
    def of(cls, activation: Tensor) -> _LayerMasks:
        flat = activation.flatten(0, 1)[:, None]
        low, divisor = robust_bounds(flat)
        # Normalising is monotone: a mask's largest value is that of its largest activation.
        peak = normalise_within(flat.flatten(2).amax(dim=2).view_as(low), low, divisor)
        return cls(flat, low, divisor, peak.view(activation.shape[:2]).gt(0))

    def masks(self, indices: Tensor | slice) -> Tensor:
        return normalise_within(self.activations[indices], self.low[indices], self.divisor[indices])


class _MaskRun(NamedTuple):
    """A run of masked inputs: some masks of one layer, unveiled or hidden."""

    masks: _LayerMasks
    indices: Tensor  # rows of ``masks.activations`` to score, example-major
    hide: bool  # score X * (1 - H) rather than X * H

    @property
    def examples(self) -> Tensor:
        """The example each masked input is made from."""
        return self.indices // self.masks.live.shape[1]


class _MaskScores(NamedTuple):
    """The target's scores on one call's masked inputs, every layer's channels side by side."""

    unveiled: Tensor | None  # (N, K): p(X * H_k), when the variant unveils
    hidden: Tensor | None  # (N, K): p(X * (1 - H_k)), when the variant hides
    black: Tensor | None  # (N,): p(X * 0), what every dead channel unveils; None for PCAM-


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

    Cost: PCAM+ and PCAM- run one forward pass per live channel of every layer and example,
    PCAM+- two (a channel that is zero on the whole input needs none), plus one clean pass.
    ``pass_budget`` scores only the channels holding the most activation mass and estimates
    the weights of the others, for a fraction of the passes.

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
        local_normalisation: bool = True,
        perturbations_per_eval: int | None = None,
        precision: Precision = "fp32",
        compile: bool = False,
        pass_budget: float | Literal["auto"] | None = None,
        min_fidelity: float | None = None,
        reshape: Reshape | None = None,
    ) -> None:
        r"""
        Args:
            forward_func: The model, or a function of ``(inputs, *additional_forward_args)``
                calling it. Layer names and automatic discovery need an ``nn.Module`` (or a
                bound method of one).
            layers: Modules or dotted names, ordered shallow to deep, each optionally followed
                by ``":k"`` (or given as ``(layer, k)``) to read the ``k``-th call of a module
                object called several times in a forward pass (the default is its last call).
                Each layer is given once: a duplicate, which would double its passes, is an
                error, as are a name the model does not have and a call it does not make
                (found on the clean pass, before any masked pass). ``None`` picks one layer
                per resolution with :func:`~captum_polycam.discover_layers` on each batch.
            variant: ``"plus"`` (PCAM+), ``"minus"`` (PCAM-) or ``"plusminus"`` (PCAM+-).
            score_fn: What a forward pass is scored by: ``"softmax"`` (the paper's choice, a
                sigmoid for a single output unit), ``"logit"``, or a callable mapping the
                model's output to per-example values (or to an array the target indexes
                into), for models whose output is not a tensor of class logits (a dict, a
                detection or segmentation output) or for regression scores.
            local_normalisation: ``False`` skips ``LNorm`` in the recursion, multiplying each
                layer's raw map ``S_l`` by the upsampled composite: the paper's ablation.
            perturbations_per_eval: The default of :meth:`attribute`'s: masked inputs **per
                example** in one forward pass, ``None`` (the default) measured.
            precision: ``"fp32"`` (the paper's), or ``"bf16"`` or ``"fp16"`` to score the
                masked inputs under ``torch.autocast``. The clean pass, the activations, the
                masks and all the map arithmetic stay float32. A CPU without native bf16
                (AVX-512 BF16 or AMX) runs bf16 tens of times slower than fp32: a warning
                says so, from one input timed in each precision (see the performance page).
            compile: Run the masked passes through ``torch.compile``: a warm-up of seconds to
                minutes on the first call, worth it over many maps (see the performance page).
            pass_budget: ``None`` (the default) for the exact method. A number in ``(0, 1]``
                spends at most that fraction of the exact masked passes of each example
                (``floor(pass_budget * live channels)`` channels are scored, by decreasing
                share of their layer's activation mass, the deepest layer first) and
                estimates the other channels' weights (as dead channels' for PCAM+ and
                PCAM-, from the scored channels with the most similar masks for PCAM+-): an
                approximation, whose estimated fidelity each map reports
                (``PolyCamMaps.fidelity``) and whose measured fidelity is on the
                performance page. ``1.0`` gives the exact maps. Whatever the budget, one
                channel of each layer at least (its channel of most activation mass) is
                scored, so that no layer is estimated from nothing: a budget too small for
                that (``1e-9``, or ``0.01`` of a small model) spends one pass per layer and
                example, two for PCAM+-. ``"auto"`` spends rounds of growing budgets, from
                0.05 to 1, until the estimated fidelity reaches ``min_fidelity``.
            min_fidelity: Where ``pass_budget="auto"`` stops: an estimated Spearman
                correlation with the exact map, in ``(0, 1]``; ``None`` (the default) for
                0.99. Only with ``pass_budget="auto"``.
            reshape: How each layer's output becomes ``N x C x h x w``, as pytorch-grad-cam's
                ``reshape_transform``: ``None`` (CNNs), ``"nhwc"`` for channels-last stages
                (Swin), ``"tokens"`` for a square grid of tokens after the class and register
                tokens, or a callable (see :func:`~captum_polycam.attr.capture.reshape_function`).
                Discovery (``layers=None``) reads the outputs through it too.
        """
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {tuple(VARIANTS)}; got {variant!r}")
        check_pass_budget(pass_budget)
        self.min_fidelity = check_min_fidelity(min_fidelity, pass_budget)
        reshape_function(reshape)  # a clear error now rather than on the first batch
        # The options check their three keywords, the scorer forward_func and score_fn.
        options = ScoringOptions(perturbations_per_eval, precision, compile)
        scorer = PerturbationScorer(forward_func, score_fn, options)
        self.model = module_of(forward_func)
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
        self.local_normalisation = local_normalisation
        self.pass_budget: float | Literal["auto"] | None = (
            pass_budget if pass_budget is None or pass_budget == AUTO else float(pass_budget)
        )
        self.layer_calls = resolved
        self.reshape = reshape
        self._scorer = scorer

    @property
    def options(self) -> ScoringOptions:
        """How the masked passes run: the constructor's ``perturbations_per_eval``,
        ``precision`` and ``compile`` as one :class:`~captum_polycam.ScoringOptions`."""
        return self._scorer.options

    def __repr__(self) -> str:
        layers = None if self.layer_calls is None else [str(c) for c in self.layer_calls]
        return settings_repr(
            "PolyCam",
            layers=layers,
            variant=self.variant,
            score_fn=self._scorer.score_fn,
            local_normalisation=self.local_normalisation,
            precision=self._scorer.precision,
            compile=self._scorer.compile,
            # Shown only when set, so that the exact method reads as it always has.
            **({} if self.pass_budget is None else {"pass_budget": self.pass_budget}),
            **({"min_fidelity": self.min_fidelity} if self.pass_budget == AUTO else {}),
        )

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

    # Captum's wrappers (NoiseTunnel) call ``attribute.__wrapped__``, which log_usage provides.
    @log_usage()
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
            inputs: ``N x C x H x W`` float tensor (images), ``N x C x L`` (signals) or
                ``N x C x D x H x W`` (volumes), normalised as the model expects, or a 1-tuple
                holding it (Captum's tuple form; the maps then come in a 1-tuple). Every layer's
                output has the inputs' spatial dimensions; masks and maps are resampled
                linearly, bilinearly or trilinearly (see "Signals and volumes").
            target: The output index explained for each example, as in Captum: an int, a
                tuple for multi-dimensional outputs, a list or tensor with one entry per
                example, or ``None`` for each example's top-1 class. A NumPy integer
                (``labels[i]``) is taken wherever an int is.
            additional_forward_args: Extra arguments of ``forward_func`` after the inputs.
                Tensors whose first dimension is ``N`` are treated as per-example and follow
                their example into the masked batches; anything else is passed as is.
            perturbations_per_eval: Masked inputs **per example** in one forward pass, as in
                Captum's ``FeatureAblation``: a pass holds at most
                ``perturbations_per_eval * N`` masked inputs, possibly of several examples.
                ``None`` takes the constructor's, whose default is measured unless fixed
                (:class:`~captum_polycam.ScoringOptions`). The maps do not depend on it
                (beyond float rounding).
            return_stages: Also return the intermediate composites.
            show_progress: Report the masked forward passes done, their rate and the time
                left: a bar on a terminal, otherwise a status line every 30 s and a final one.

        Returns:
            The maps, ``N x 1 x H x W`` in ``[0, 1]`` on the inputs' device (``N x 1 x L``
            for signals, ``N x 1 x D x H x W`` for volumes). With
            ``return_stages=True``, a pair ``(maps, stages)`` where ``stages`` holds the
            normalised composites deepest first (the deepest layer alone, the deepest two,
            ...), each ``N x 1 x H x W``; the last one equals ``maps``.

        Raises:
            TypeError, ValueError: Malformed inputs or targets (a NumPy integer is taken as an
                int), or inputs the model cannot take: another dtype or device than its
                parameters, other dimensions or channels than its first convolution's (said
                whether the layers are given or discovered; torch's error is kept as the
                cause), or layers whose maps have other spatial dimensions than the inputs.
            RuntimeError: Another thread is running the model in training mode (see below).

        Warns:
            UserWarning: The model is in training mode; it comes back as it went in, every
                buffer (batch-norm running statistics) given back as it was after the
                passes. Or a map is all zero, naming the examples, the layer at fault and
                the cause (no channel raises the score, or the weighted sum is not positive
                anywhere), with what to try.

        Calls from several threads may share one ``PolyCam`` and one model in evaluation
        mode: each call reads only its own thread's forward passes. A model in training mode
        serves one thread at a time, since every call gives its buffers back; a concurrent
        call is refused with a ``RuntimeError``.
        """
        inputs, was_tuple = unpack_single(inputs, "inputs")
        # The warning names attribute()'s caller, past log_usage's wrapper.
        result = self._run(
            inputs,
            target,
            additional_forward_args,
            perturbations_per_eval,
            show_progress,
            warning_stacklevel=4,
        )
        maps = (result.maps,) if was_tuple else result.maps
        return (maps, result.stages) if return_stages else maps

    def decompose(
        self,
        inputs: Tensor,
        target: TargetType = None,
        additional_forward_args: Any = None,
        *,
        perturbations_per_eval: int | None = None,
        show_progress: bool = False,
    ) -> PolyCamMaps:
        """The map, every stage and every layer's own map, from one run.

        The arguments are those of :meth:`attribute`. One run serves the attribution and the
        paper's ablations (each stage; each layer without the recursion) at no extra cost.

        Example:
            >>> result = PolyCam(model).decompose(inputs)
            >>> result.maps, result.stages[0], result.layer_maps[-1]
        """
        return self._run(
            inputs,
            target,
            additional_forward_args,
            perturbations_per_eval,
            show_progress,
            warning_stacklevel=3,
        )

    def _run(
        self,
        inputs: Tensor,
        target: TargetType,
        additional_forward_args: Any,
        perturbations_per_eval: int | None,
        show_progress: bool,
        warning_stacklevel: int,
    ) -> PolyCamMaps:
        # Before any forward pass, discovery's included.
        check_inputs(inputs, spatial_dims=SIGNALS_IMAGES_VOLUMES)
        perturbations_per_eval = check_perturbations_per_eval(perturbations_per_eval)
        if self.model is not None and self.model.training:
            warnings.warn(
                "the model is in training mode: dropout and batch statistics make the maps "
                "noisy and run-dependent; call model.eval() first. The model comes back as it "
                "went in: the buffers its passes update (batch-norm running statistics) are "
                "given back as they were",
                UserWarning,
                stacklevel=warning_stacklevel,
            )
        # The scorer gives the buffers back after its passes; held here too, so that no other
        # thread runs a model in training mode between discovery and the last pass.
        with torch.no_grad(), buffers_kept(self.model):
            layers = self.layer_calls
            if layers is None:
                assert self.model is not None
                names = discover_layers(
                    self.model, inputs, additional_forward_args, reshape=self.reshape
                )
                layers = resolve_layers(self.model, names)
            batch, activations = capture_activations(
                lambda: self._scorer.prepare(inputs, target, additional_forward_args),
                layers,
                self.reshape,
            )
            infos = [layer_info(str(n), a) for n, a in zip(layers, activations, strict=True)]
            check_dimensions(infos, inputs)
            check_shallow_to_deep(infos)
            result, weights = self._maps(batch, activations, perturbations_per_eval, show_progress)
        blank = _blank_maps(result, weights, [str(layer) for layer in layers])
        if blank is not None:
            warnings.warn(
                f"{blank}. Try {self._other_settings()}",
                UserWarning,
                stacklevel=warning_stacklevel,
            )
        return result

    def _other_settings(self) -> str:
        """What else to try when a map comes out all zero, for this object's settings."""
        others = [repr(variant) for variant in VARIANTS if variant != self.variant]
        tips = [f"variant={' or '.join(others)}"]
        if self._scorer.score_fn != "softmax":  # probabilities are never negative
            tips.insert(0, "score_fn='softmax'")
        tips.append("other layers (post-activation outputs, see describe_layers)")
        return ", ".join(tips[:-1]) + f", or {tips[-1]}"

    def _maps(
        self,
        batch: PreparedBatch,
        activations: list[Tensor],
        perturbations_per_eval: int | None,
        show_progress: bool,
    ) -> tuple[PolyCamMaps, list[Tensor]]:
        """The maps, and each layer's channel weights ``(N, K_l)``, shallow to deep."""
        layers = [_LayerMasks.of(activation) for activation in activations]
        live = torch.cat([layer.live for layer in layers], dim=1)

        # The black images' scores: scored with the first channels, then reused.
        black: Tensor | None = None

        def weights_of(scored: Tensor) -> Tensor:
            nonlocal black
            scores = self._score_masks(
                batch, layers, scored, black, perturbations_per_eval, show_progress
            )
            black = scores.black
            return self._channel_weights(batch.target_scores, scores.unveiled, scores.hidden)

        def composite(weights: Tensor) -> Tensor:
            # The map at the finest layer's resolution: what the fidelity's ranks compare.
            maps = _layer_maps(weights, activations)
            return backward_recursion(maps, self.local_normalisation)[-1].flatten(1)

        if self.pass_budget is None:
            scored, weights = live, weights_of(live)
            fidelity = torch.ones(len(live), device=live.device)
        else:
            scored, weights, fidelity = spend_budget(
                self.pass_budget,
                [activation.relu().flatten(2).sum(dim=2) for activation in activations],
                [layer.live for layer in layers],
                weights_of,
                composite,
                # PCAM+- estimates from similar masks; PCAM+ and PCAM- weight as dead channels.
                features=(lambda: _features(layers)) if self.variant == "plusminus" else None,
                min_fidelity=self.min_fidelity,
            )
        layer_weights = list(weights.split([a.shape[1] for a in activations], dim=1))
        layer_maps = _layer_maps(weights, activations)

        size = tuple(batch.inputs.shape[2:])
        stages = _stages(layer_maps, self.local_normalisation, size)
        singles = [upsample(robust_normalise(m), size) for m in layer_maps]
        modes = len(_HIDE_MODES[self.variant])
        passes, exact = modes * int(scored.sum()), modes * int(live.sum())
        maps = PolyCamMaps(stages[-1], stages, singles, passes, exact, fidelity, tuple(layer_maps))
        return maps, layer_weights

    def _channel_weights(
        self, clean: Tensor, unveiled: Tensor | None, hidden: Tensor | None
    ) -> Tensor:
        if self.variant == "plus":
            assert unveiled is not None
            return unveiled
        assert hidden is not None
        drop = clean[:, None] - hidden
        if self.variant == "minus":
            return drop.relu()
        assert unveiled is not None
        return (unveiled + drop).relu()

    def _score_masks(
        self,
        batch: PreparedBatch,
        layers: list[_LayerMasks],
        scored: Tensor,
        black: Tensor | None,
        perturbations_per_eval: int | None,
        show_progress: bool,
    ) -> _MaskScores:
        """Scores of ``X * H_k`` (unveiled) and ``X * (1 - H_k)`` (hidden) of the ``scored``
        channels, and of the black image ``X * 0`` of each example when the variant unveils.

        An all-zero mask (a channel dead on this input, common after a ReLU) needs no forward
        pass of its own: unveiling it gives the black image, and hiding it gives the clean
        input, whose score the clean pass gave. A channel that is not scored gets those scores
        too. The black images are scored in the same passes as the first masked inputs,
        unless ``black`` holds their scores already (from an earlier call on this batch).
        """
        inputs, count = batch.inputs, len(batch)
        modes = _HIDE_MODES[self.variant]
        unveils = False in modes
        # Items 0 .. blacks - 1 are the black images, one per example; the runs follow.
        blacks = count if unveils and black is None else 0
        runs: list[_MaskRun] = []
        widths = [layer.live.shape[1] for layer in layers]
        for layer, chosen in zip(layers, scored.split(widths, dim=1), strict=True):
            indices = chosen.flatten().nonzero().squeeze(1)
            runs.extend(_MaskRun(layer, indices, hide) for hide in modes)
        run_sizes = [len(run.indices) for run in runs]
        run_starts = list(accumulate(run_sizes, initial=blacks))
        example_of = torch.cat(
            [torch.arange(blacks, device=inputs.device), *(run.examples for run in runs)]
        )
        size = tuple(inputs.shape[2:])

        def fill(start: int, stop: int, out: Tensor) -> None:
            if start < blacks:
                rows = out[: min(stop, blacks) - start]
                torch.index_select(inputs, 0, example_of[start : min(stop, blacks)], out=rows)
                rows.mul_(0.0)  # X * 0, as a mask of zeros multiplies it
            for run_start, run in zip(run_starts, runs, strict=False):
                lo, hi = max(start, run_start), min(stop, run_start + len(run.indices))
                if lo >= hi:
                    continue
                mask = upsample(run.masks.masks(run.indices[lo - run_start : hi - run_start]), size)
                rows = out[lo - start : hi - start]
                torch.index_select(inputs, 0, example_of[lo:hi], out=rows)
                rows.mul_(1.0 - mask if run.hide else mask)

        plan = PerturbationPlan(example_of, fill, "Poly-CAM forward passes")
        scores = self._scorer.score(
            batch, plan, perturbations_per_eval=perturbations_per_eval, show_progress=show_progress
        )

        if blacks:
            black = scores[:blacks]
        by_mode: dict[bool, list[Tensor]] = {hide: [] for hide in modes}
        for run, run_scores in zip(runs, scores[blacks:].split(run_sizes), strict=True):
            channels = run.masks.live.shape[1]
            # Dead channels score as the black image (unveiled) or the clean input (hidden).
            dead = batch.target_scores if run.hide else black
            assert dead is not None
            full = dead.repeat_interleave(channels)
            full[run.indices] = run_scores
            by_mode[run.hide].append(full.view(count, channels))
        unveiled, hidden = (
            torch.cat(by_mode[h], dim=1) if h in by_mode else None for h in (False, True)
        )
        return _MaskScores(unveiled, hidden, black)


def _layer_maps(weights: Tensor, activations: list[Tensor]) -> list[Tensor]:
    """Each layer's ``S_l = relu(sum_k w_k A_{l,k})`` from every channel's weight ``(N, K)``."""
    layer_weights = weights.split([a.shape[1] for a in activations], dim=1)
    ones = (1,) * (activations[0].dim() - 2)
    return [
        (w.view(*w.shape, *ones) * activation).nansum(dim=1, keepdim=True).relu()
        for w, activation in zip(layer_weights, activations, strict=True)
    ]


def _stages(
    layer_maps: list[Tensor], local_normalisation: bool, size: tuple[int, ...]
) -> list[Tensor]:
    """The recursion's composites, deepest first, normalised and upsampled to ``size``."""
    composites = backward_recursion(layer_maps, local_normalisation)
    return [upsample(robust_normalise(m), size) for m in composites]


def _blank_maps(result: PolyCamMaps, weights: list[Tensor], layers: list[str]) -> str | None:
    """Why some maps of ``result`` are all zero, naming the examples and the layers at fault,
    or ``None`` when none is.

    The recursion multiplies the layers' maps, so one layer whose ``S_l`` is zero everywhere
    blanks the whole map: because no channel has a positive weight (no channel raises the
    score: logits below zero with ``score_fn="logit"``, or no hiding lowers it with PCAM- and
    PCAM+-), or because, some weights positive, the weighted sum of the channels is still
    positive nowhere (activations that can be negative).

    Args:
        result: The run, whose ``saliencies`` are the layers' ``S_l``.
        weights: Each layer's channel weights, ``(N, K_l)``, shallow to deep.
        layers: The layers' names, shallow to deep.
    """
    blank = result.maps.flatten(1).amax(dim=1) <= 0
    if not bool(blank.any()):
        return None
    causes = []
    for name, saliency, weight in zip(layers, result.saliencies, weights, strict=True):
        zero = blank & (saliency.flatten(1).amax(dim=1) <= 0)
        if not bool(zero.any()):
            continue
        if bool((weight[zero] > 0).any()):  # a NaN weight, which nansum skips, raises nothing
            causes.append(
                f"at layer {name}, the weighted sum of the channels is 0 or less everywhere"
            )
        else:
            causes.append(f"at layer {name}, no channel raises the score (no weight is positive)")
    if not causes:
        causes.append("the layers' maps have no positive position in common, or the map is flat")
    examples = blank.nonzero().squeeze(1).tolist()
    return f"Poly-CAM's map is all zero for example(s) {examples}: {'; '.join(causes)}"


def _features(layers: list[_LayerMasks]) -> Tensor:
    """:func:`~captum_polycam.attr.budget.mask_features` of every channel, ``(N, K, F)``."""
    count = len(layers[0].live)
    return torch.cat(
        [
            mask_features(layer.masks(slice(None))).view(count, layer.live.shape[1], -1)
            for layer in layers
        ],
        dim=1,
    )
