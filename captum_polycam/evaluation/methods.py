"""Saliency methods by name: Poly-CAM, its ablations, Captum's baselines and a random floor.

Every method maps a batch and its targets to ``N x 1 x H x W`` maps in ``[0, 1]`` at the
input's resolution, and records every parameter its maps depend on. Names:

- ``pcam+``, ``pcam-``, ``pcam+-``: Poly-CAM's three variants, on the run's layers;
  options follow colons: ``:no-lnorm`` (no local normalisation), ``:budgetF`` (at most the
  fraction ``F`` of the masked passes, ``PolyCam(pass_budget=F)``), ``:stageK`` (the
  composite of the deepest ``K`` layers), ``:layerK`` (layer ``K``, counted shallow to deep
  from 1, alone, without the recursion). Methods that differ only by ``:no-lnorm``,
  ``:stageK`` or ``:layerK`` share one Poly-CAM run: none of them changes a channel weight.
- ``gradcam``: Captum's ``LayerGradCam`` on the deepest layer, upsampled bilinearly; with a
  ``reshape``, Grad-CAM's formula on Captum's ``LayerActivation`` and layer gradients, both
  reshaped to ``N x C x h x w`` (``LayerGradCam`` reads dimension 1 as the channels).
- ``ig``, ``ixg``, ``saliency``, ``smoothgrad``, ``occlusion``: Captum's
  ``IntegratedGradients``, ``InputXGradient``, ``Saliency``, ``NoiseTunnel(Saliency)`` and
  ``Occlusion``.
- ``random``: uniform noise, the floor every method should beat.
- ``package.module:callable``: ``callable(model)`` returns a Captum attribution whose
  ``attribute(inputs, target=...)`` gives the maps.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
from captum.attr import (
    Attribution,
    InputXGradient,
    IntegratedGradients,
    LayerActivation,
    LayerAttribution,
    LayerGradCam,
    LayerGradientXActivation,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from torch import Tensor, nn

from captum_polycam.attr import VARIANTS, PolyCam, PolyCamMaps
from captum_polycam.attr.capture import Reshape, reshape_function, resolve_layers
from captum_polycam.metrics.confidence import min_max_mask
from captum_polycam.normalisation import scale_to_unit
from captum_polycam.perturbation.options import Precision, ScoringOptions
from captum_polycam.resources.errors import EvaluationError
from captum_polycam.resources.names import file_stem, import_callable

__all__ = [
    "BASELINES",
    "Method",
    "build_methods",
    "masked_passes_per_image",
    "method_file_stem",
    "scale_to_unit",
]

BASELINES = ("gradcam", "ig", "ixg", "saliency", "smoothgrad", "occlusion", "random")
_VARIANTS = {name.lower(): variant for variant, name in VARIANTS.items()}  # pcam+ -> plus
_INDEXED_OPTION = re.compile(r"(stage|layer)([1-9][0-9]*)")
_BUDGET_OPTION = re.compile(r"budget([0-9]*\.?[0-9]+)")


def method_file_stem(name: str) -> str:
    """The method's part of artefact names: ``pcam+-_no-lnorm`` for ``pcam+-:no-lnorm``."""
    return file_stem(name)


class Method:
    """A named saliency method bound to a model: ``explain(inputs, targets)`` gives maps.

    Attributes:
        name: The name it was asked for, such as ``"pcam+-:no-lnorm"``.
        parameters: Everything its maps depend on, JSON-serialisable (recorded in run.json).
    """

    def __init__(
        self, name: str, parameters: dict[str, Any], explain: Callable[[Tensor, Tensor], Tensor]
    ) -> None:
        self.name = name
        self.parameters = parameters
        self._explain = explain

    def __repr__(self) -> str:
        return f"Method({self.name!r})"

    def explain(self, inputs: Tensor, targets: Tensor) -> Tensor:
        """``N x 1 x H x W`` maps in ``[0, 1]`` of ``inputs`` (``N x C x H x W``) for the
        class indices ``targets`` (``(N,)``, or one for all, as Captum broadcasts a single
        target), on the inputs' device, in float32."""
        if targets.numel() == 1:
            targets = targets.reshape(1).expand(len(inputs))
        maps = self._explain(inputs, targets)
        return maps.detach().float()


class _SharedPolyCam:
    """One Poly-CAM configuration serving several outputs of a batch (the map, stages, single
    layers, the map without LNorm): each output after the first costs nothing.

    A run serves each output once. An output asked for again is a new batch, or the same
    images under a changed model (the sanity check's), so Poly-CAM runs again; so it does for
    other images or targets.
    """

    def __init__(self, polycam: PolyCam) -> None:
        self.polycam = polycam
        self._last: tuple[Tensor, Tensor, PolyCamMaps] | None = None
        self._served: set[str] = set()

    def __call__(self, inputs: Tensor, targets: Tensor, output: str) -> PolyCamMaps:
        if output in self._served or not self._same_batch(inputs, targets):
            self._last = (inputs.clone(), targets.clone(), self.polycam.decompose(inputs, targets))
            self._served = set()
        self._served.add(output)
        assert self._last is not None
        return self._last[2]

    def _same_batch(self, inputs: Tensor, targets: Tensor) -> bool:
        if self._last is None:
            return False
        last_inputs, last_targets, _ = self._last
        return (
            last_inputs.shape == inputs.shape
            and last_targets.shape == targets.shape
            and torch.equal(last_inputs, inputs)
            and torch.equal(last_targets, targets)
        )


def build_methods(
    names: Sequence[str],
    model: nn.Module,
    layers: Sequence[str],
    perturbations_per_eval: int | None = None,
    precision: Precision | None = None,
    compile: bool | None = None,
    *,
    options: ScoringOptions | None = None,
    reshape: Reshape | None = None,
) -> list[Method]:
    """Bind each named method to ``model``.

    Args:
        names: Method names (see the module's documentation).
        model: The classifier, in eval mode.
        layers: Poly-CAM's layers, shallow to deep; Grad-CAM uses the deepest.
        perturbations_per_eval: Masked inputs per example and forward pass for Poly-CAM and
            occlusion; ``None`` for Poly-CAM's default.
        precision: The type of Poly-CAM's masked passes (``PolyCam(precision=...)``); the
            gradient baselines run as the model is.
        compile: Compile Poly-CAM's masked passes (``PolyCam(compile=True)``).
        options: The three above as one
            :class:`~captum_polycam.perturbation.ScoringOptions`; the keyword arguments that
            are not ``None`` override it.
        reshape: How the layers' outputs become ``N x C x h x w``, for Poly-CAM and Grad-CAM
            (``PolyCam(reshape=...)``); recorded in the methods' parameters when given.

    Raises:
        EvaluationError: A name is unknown or malformed, appears twice, shares its file stem
            with another, a custom method's factory fails, or ``reshape`` is not one.
    """
    try:
        options = ScoringOptions.of(
            options,
            perturbations_per_eval=perturbations_per_eval,
            precision=precision,
            compile=compile,
        )
        transform = reshape_function(reshape)
    except (TypeError, ValueError) as error:
        raise EvaluationError(str(error)) from None
    # Absent without a reshape, so that runs from before it resume.
    layout = {} if reshape is None else {"reshape": _reshape_name(reshape)}
    if not names:
        raise EvaluationError("methods: give at least one method")
    repeated = sorted({name for name in names if list(names).count(name) > 1})
    if repeated:
        raise EvaluationError(f"methods: {', '.join(repeated)} given twice")
    stems: dict[str, list[str]] = {}
    for name in names:
        stems.setdefault(method_file_stem(name), []).append(name)
    clashes = [same for same in stems.values() if len(same) > 1]
    if clashes:
        raise EvaluationError(
            f"methods: {' and '.join(clashes[0])} would share the artefact files "
            f"*_{method_file_stem(clashes[0][0])}.*; rename one of them"
        )
    shared: dict[tuple[str, float | None], _SharedPolyCam] = {}
    methods = []
    for name in names:
        if name.split(":")[0] in _VARIANTS:
            methods.append(_poly_cam(name, model, list(layers), options, shared, transform, layout))
        elif name == "gradcam":
            methods.append(_grad_cam(model, layers[-1], transform, layout))
        elif name in BASELINES:
            methods.append(_baseline(name, model, options.perturbations_per_eval))
        elif ":" in name:
            methods.append(_custom(name, model))
        else:
            raise EvaluationError(
                f"methods: unknown method {name!r}; use pcam+, pcam-, pcam+- (with :no-lnorm, "
                f":budgetF, :stageK or :layerK), {', '.join(BASELINES)} or "
                "package.module:callable"
            )
    return methods


def polycam_runs(methods: Sequence[Method]) -> set[tuple[str, float | None]]:
    """The ``(variant, pass_budget)`` of each Poly-CAM run that ``methods`` share: the map,
    its stages, single layers and ``:no-lnorm`` of one configuration are one run."""
    return {
        (method.parameters["variant"], method.parameters.get("pass_budget"))
        for method in methods
        if method.parameters.get("method") == "PolyCam"
    }


def masked_passes_per_image(methods: Sequence[Method], channels: int) -> int:
    """At most how many masked passes the Poly-CAM ``methods`` make on one image, with
    ``channels`` in their layers: each run masks every channel once (twice for PCAM+-, a
    fraction with a pass budget; dead channels are skipped, so this is an upper bound) and
    scores the black image when it unveils, and outputs that share a run count once."""
    return sum(
        math.ceil(channels * (2 if variant == "plusminus" else 1) * (budget or 1))
        + (variant != "minus")
        for variant, budget in polycam_runs(methods)
    )


def _poly_cam(
    name: str,
    model: nn.Module,
    layers: list[str],
    options: ScoringOptions,
    shared: dict[tuple[str, float | None], _SharedPolyCam],
    transform: Callable[[Tensor], Tensor] | None,
    layout: dict[str, str],
) -> Method:
    head, *suffixes = name.split(":")
    variant = _VARIANTS[head]
    local_normalisation = True
    pass_budget: float | None = None
    output: tuple[str, int] | None = None  # ("stage" | "layer", K)
    for option in suffixes:
        indexed = _INDEXED_OPTION.fullmatch(option)
        budget = _BUDGET_OPTION.fullmatch(option)
        if option == "no-lnorm" and local_normalisation:
            local_normalisation = False
        elif budget and pass_budget is None:
            pass_budget = float(budget[1])
            if not 0 < pass_budget <= 1:
                raise EvaluationError(
                    f"methods: {name!r}: the pass budget of {option} must be in (0, 1]"
                )
        elif indexed and output is None:
            output = (indexed[1], int(indexed[2]))
            if output[1] > len(layers):
                raise EvaluationError(
                    f"methods: {name!r} asks for {option}, but Poly-CAM runs on "
                    f"{len(layers)} layers ({', '.join(layers)})"
                )
        else:
            raise EvaluationError(
                f"methods: {name!r}: options after {head} are :no-lnorm, :budgetF and one of "
                f":stageK or :layerK, each at most once; got {option!r}"
            )
    key = (variant, pass_budget)
    if key not in shared:
        polycam = PolyCam(
            model,
            layers,
            variant,
            pass_budget=pass_budget,
            options=options,
            reshape=transform,
        )
        shared[key] = _SharedPolyCam(polycam)
    shared_run = shared[key]

    def run(inputs: Tensor, targets: Tensor) -> PolyCamMaps:
        result = shared_run(inputs, targets, name)
        # The ablation recombines the same layer maps: LNorm changes no channel weight.
        return result if local_normalisation else result.recomposed(local_normalisation=False)

    parameters: dict[str, Any] = {
        "method": "PolyCam",
        "variant": variant,
        "layers": layers,
        **layout,
        "score_fn": "softmax",
        "local_normalisation": local_normalisation,
        "precision": options.precision,
        "compile": options.compile,
    }
    if pass_budget is not None:  # absent for the exact method, so that older runs resume
        parameters["pass_budget"] = pass_budget
    if output is None:
        parameters["output"] = "maps"
        return Method(name, parameters, lambda x, t: run(x, t).maps)
    kind, k = output
    if kind == "stage":
        parameters["output"] = f"stage {k}: the deepest {k} layer(s), {', '.join(layers[-k:])}"
        return Method(name, parameters, lambda x, t: run(x, t).stages[k - 1])
    parameters["output"] = f"layer {k} alone, without the recursion: {layers[k - 1]}"
    return Method(name, parameters, lambda x, t: run(x, t).layer_maps[k - 1])


def _requiring_gradients(inputs: Tensor) -> Tensor:
    # Captum warns once per call site when it has to switch gradients on for the inputs.
    return inputs.detach().requires_grad_()


def _upsampled(maps: Tensor, inputs: Tensor) -> Tensor:
    return LayerAttribution.interpolate(maps, tuple(inputs.shape[-2:]), "bilinear")


def _reshape_name(reshape: Reshape) -> str:
    # A callable is recorded by where it lives: its repr changes from one process to the next.
    if isinstance(reshape, str):
        return reshape
    return f"{getattr(reshape, '__module__', '?')}:{getattr(reshape, '__qualname__', reshape)}"


def _grad_cam(
    model: nn.Module,
    deepest: str,
    transform: Callable[[Tensor], Tensor] | None,
    layout: dict[str, str],
) -> Method:
    layer = resolve_layers(model, [deepest])[0].module
    parameters = {
        "method": "LayerGradCam",
        "layer": deepest,
        **layout,
        "relu_attributions": True,
        "upsampling": "bilinear",
        "scaling": "divide by the maximum",
    }
    if transform is None:
        gradcam = LayerGradCam(model, layer)

        def maps(inputs: Tensor, targets: Tensor) -> Tensor:
            return gradcam.attribute(inputs, targets, relu_attributions=True)
    else:
        # LayerGradCam reads dimension 1 as the channels; a channels-last or token layout
        # needs its activations and gradients reshaped first, as pytorch-grad-cam does.
        activation = LayerActivation(model, layer)
        gradient = LayerGradientXActivation(model, layer, multiply_by_inputs=False)

        def maps(inputs: Tensor, targets: Tensor) -> Tensor:
            activations = transform(activation.attribute(inputs))
            gradients = transform(gradient.attribute(inputs, targets))
            weights = gradients.mean(dim=(2, 3), keepdim=True)
            return torch.relu((weights * activations).sum(dim=1, keepdim=True))

    def explain(inputs: Tensor, targets: Tensor) -> Tensor:
        return scale_to_unit(_upsampled(maps(inputs, targets), inputs))

    return Method("gradcam", parameters, explain)


def _baseline(name: str, model: nn.Module, perturbations_per_eval: int | None) -> Method:
    parameters: dict[str, Any]
    explain: Callable[[Tensor, Tensor], Tensor]
    if name == "ig":
        ig = IntegratedGradients(model)
        settings = {"baselines": 0.0, "n_steps": 50, "method": "gausslegendre"}
        parameters = {
            "method": "IntegratedGradients",
            **settings,
            "channels": "sum of absolute values",
            "scaling": "divide by the maximum",
        }

        def explain(inputs: Tensor, targets: Tensor) -> Tensor:
            attributions = ig.attribute(inputs, target=targets, internal_batch_size=50, **settings)
            return scale_to_unit(attributions.abs().sum(dim=1, keepdim=True))
    elif name == "ixg":
        ixg = InputXGradient(model)
        parameters = {
            "method": "InputXGradient",
            "channels": "sum of absolute values",
            "scaling": "divide by the maximum",
        }

        def explain(inputs: Tensor, targets: Tensor) -> Tensor:
            attributions = ixg.attribute(_requiring_gradients(inputs), target=targets)
            return scale_to_unit(attributions.abs().sum(dim=1, keepdim=True))
    elif name == "saliency":
        saliency = Saliency(model)
        parameters = {
            "method": "Saliency",
            "abs": True,
            "channels": "maximum",
            "scaling": "divide by the maximum",
        }

        def explain(inputs: Tensor, targets: Tensor) -> Tensor:
            gradients = saliency.attribute(_requiring_gradients(inputs), target=targets, abs=True)
            return scale_to_unit(gradients.amax(dim=1, keepdim=True))
    elif name == "smoothgrad":
        explain, parameters = _smoothgrad(model)
    elif name == "occlusion":
        occlusion = Occlusion(model)
        per_eval = perturbations_per_eval or 8
        parameters = {
            "method": "Occlusion",
            "sliding_window_shapes": [3, 16, 16],
            "strides": [3, 8, 8],
            "baselines": 0.0,
            "channels": "sum",
            "scaling": "minimum to 0, maximum to 1",
        }

        def explain(inputs: Tensor, targets: Tensor) -> Tensor:
            attributions = occlusion.attribute(
                inputs,
                sliding_window_shapes=(3, 16, 16),
                strides=(3, 8, 8),
                baselines=0.0,
                target=targets,
                perturbations_per_eval=per_eval,
            )
            return min_max_mask(inputs, attributions)[:, None]  # channels summed, then min-max
    else:  # random
        parameters = {
            "method": "random",
            "distribution": "uniform on [0, 1)",
            "seed": "the run's seed and the batch",
        }

        def explain(inputs: Tensor, targets: Tensor) -> Tensor:
            maps = torch.rand(len(inputs), 1, *inputs.shape[-2:])  # CPU: the same on any device
            return maps.to(inputs.device)

    return Method(name, parameters, explain)


def _smoothgrad(model: nn.Module) -> tuple[Callable[[Tensor, Tensor], Tensor], dict[str, Any]]:
    tunnel = NoiseTunnel(Saliency(model))
    samples, noise_level = 25, 0.15
    parameters = {
        "method": "NoiseTunnel(Saliency)",
        "nt_type": "smoothgrad",
        "nt_samples": samples,
        "abs": True,
        "stdevs": f"{noise_level} x (max - min) of each input",
        "channels": "maximum",
        "scaling": "divide by the maximum",
    }

    def explain(inputs: Tensor, targets: Tensor) -> Tensor:
        # SmoothGrad's noise level is relative to each image's range, and Captum takes one
        # standard deviation per call, so each example gets its own call.
        maps = []
        for example, target in zip(inputs, targets, strict=True):
            stdev = noise_level * float(example.max() - example.min())
            gradients = tunnel.attribute(
                _requiring_gradients(example[None]),
                nt_type="smoothgrad",
                nt_samples=samples,
                nt_samples_batch_size=samples,
                stdevs=stdev,
                target=target[None],
                abs=True,
            )
            maps.append(gradients.amax(dim=1, keepdim=True))
        return scale_to_unit(torch.cat(maps))

    return explain, parameters


def _custom(name: str, model: nn.Module) -> Method:
    try:
        factory = import_callable(name)
    except ValueError as error:
        raise EvaluationError(f"methods: {name!r}: {error}") from None
    try:
        attribution = factory(model)
    except Exception as error:  # the user's code: say whose it is
        raise EvaluationError(
            f"methods: {name!r} failed to build its attribution: {type(error).__name__}: {error}"
        ) from None
    if not isinstance(attribution, Attribution) and not callable(
        getattr(attribution, "attribute", None)
    ):
        raise EvaluationError(
            f"methods: {name!r} must return a Captum attribution (an object with "
            f"attribute()); got {type(attribution).__name__}"
        )
    parameters = {
        "method": name,
        "attribution": _identity(attribution),
        "channels": "sum of absolute values when several",
        "upsampling": "bilinear",
        "scaling": "minimum to 0, maximum to 1",
    }

    def explain(inputs: Tensor, targets: Tensor) -> Tensor:
        maps = attribution.attribute(inputs, target=targets)
        if isinstance(maps, tuple):
            maps = maps[0]
        if maps.dim() == 4 and maps.shape[1] > 1:
            maps = maps.abs().sum(dim=1, keepdim=True)
        return min_max_mask(inputs, maps)[:, None]  # upsampled bilinearly, then min-max

    return Method(name, parameters, explain)


def _identity(attribution: object) -> str:
    """What identifies a custom attribution from run to run: its ``repr`` when that shows its
    settings, its class when the ``repr`` is Python's default, whose address changes every run."""
    text = repr(attribution)
    if re.search(r" at 0x[0-9a-fA-F]+", text):
        kind = type(attribution)
        return f"{kind.__module__}.{kind.__qualname__}"
    return text
