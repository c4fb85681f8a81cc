"""Saliency methods by name: Poly-CAM, its ablations, Captum's baselines and a random floor.

Every method maps a batch and its targets to ``N x 1 x H x W`` maps in ``[0, 1]`` at the
input's resolution (``N x 1 x D x H x W`` for scans, ``N x 1 x L`` for signals), and records
every parameter its maps depend on (a :class:`Method`). A
:class:`Run` computes them: one Poly-CAM run gives every method asked of its configuration,
and every other method is a run of its own. Names:

- ``pcam+``, ``pcam-``, ``pcam+-``: Poly-CAM's three variants, on the run's layers;
  options follow colons: ``:no-lnorm`` (no local normalisation), ``:budgetF`` (at most the
  fraction ``F`` of the masked passes, ``PolyCam(pass_budget=F)``), ``:auto`` (as many
  passes as an estimated fidelity of 0.99 asks, ``PolyCam(pass_budget="auto")``; a budgeted
  run records each map's estimated fidelity), ``:stageK`` (the
  composite of the deepest ``K`` layers), ``:layerK`` (layer ``K``, counted shallow to deep
  from 1, alone, without the recursion). Methods that differ only by ``:no-lnorm``,
  ``:stageK`` or ``:layerK`` are outputs of one Poly-CAM run (the same variant and budget):
  none of them changes a channel weight.
- ``gradcam``: Captum's ``LayerGradCam`` on the deepest layer, upsampled bilinearly
  (trilinearly for scans, linearly for signals); with a ``reshape``, Grad-CAM's formula on
  Captum's ``LayerActivation`` and layer gradients, both reshaped to ``N x C x h x w``
  (``LayerGradCam`` reads dimension 1 as the channels).
- ``ig``, ``ixg``, ``saliency``, ``smoothgrad``, ``occlusion``: Captum's
  ``IntegratedGradients``, ``InputXGradient``, ``Saliency``, ``NoiseTunnel(Saliency)`` and
  ``Occlusion`` (photos only: its windows are ``3 x 16 x 16``).
- ``random``: uniform noise, the floor every method should beat.
- ``centre``: a centred Gaussian (in every spatial dimension), the same for every image and
  class: the prior of a photo framed on its object, which every localisation table on such
  photos must show beside the methods (see :mod:`captum_polycam.metrics.localisation`).
- ``package.module:callable``: ``callable(model)`` returns a Captum attribution whose
  ``attribute(inputs, target=...)`` gives the maps.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

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
from captum_polycam.attr.budget import AUTO, DEFAULT_MIN_FIDELITY
from captum_polycam.attr.capture import Reshape, reshape_function, resolve_layers
from captum_polycam.normalisation import min_max_mask, scale_to_unit
from captum_polycam.perturbation.options import ScoringOptions
from captum_polycam.resources.errors import EvaluationError
from captum_polycam.resources.names import file_stem, import_callable

__all__ = [
    "BASELINES",
    "FIDELITY",
    "Method",
    "Run",
    "RunMaps",
    "build_methods",
    "centre_prior",
    "method_file_stem",
    "scale_to_unit",
]

BASELINES = ("gradcam", "ig", "ixg", "saliency", "smoothgrad", "occlusion", "random", "centre")
# The centre prior's standard deviation, as a fraction of each side of the input.
CENTRE_SIGMA = 0.25
_VARIANTS = {name.lower(): variant for variant, name in VARIANTS.items()}  # pcam+ -> plus
_INDEXED_OPTION = re.compile(r"(stage|layer)([1-9][0-9]*)")
_BUDGET_OPTION = re.compile(r"budget([0-9]*\.?[0-9]+)")
# How maps at a layer's resolution are brought to the input's, by its spatial dimensions.
_UPSAMPLING = {1: "linear", 2: "bilinear", 3: "trilinear"}


def method_file_stem(name: str) -> str:
    """The method's part of artefact names: ``pcam+-_no-lnorm`` for ``pcam+-:no-lnorm``."""
    return file_stem(name)


# The per-image key under which a run's estimated fidelity is recorded (NaN where none).
FIDELITY = "fidelity"


class RunMaps(NamedTuple):
    """What one call of :meth:`Run.explain` gives.

    Attributes:
        maps: Each output's ``N x 1 x H x W`` maps, by method name.
        fidelity: ``(N,)``, each map's estimated Spearman correlation with the exact
            Poly-CAM map, for a Poly-CAM run with a pass budget
            (:attr:`~captum_polycam.attr.PolyCamMaps.fidelity`); ``None`` for every other run.
    """

    maps: dict[str, Tensor]
    fidelity: Tensor | None = None


@dataclass(frozen=True)
class Method:
    """A named saliency method, as a run records it: one output of a :class:`Run`.

    Attributes:
        name: The name it was asked for, such as ``"pcam+-:no-lnorm"``.
        parameters: Everything its maps depend on, JSON-serialisable (recorded in run.json).
    """

    name: str
    parameters: dict[str, Any]


class Run:
    """One computation bound to a model that gives the maps of one or more methods.

    A Poly-CAM run (a variant, a pass budget, the layers) gives every method asked of it (the
    map, ``:stageK``, ``:layerK``, ``:no-lnorm``) from one decomposition; every other method
    is a run with one output. Each call of :meth:`explain` computes anew: a run keeps nothing
    from one call to the next.

    Attributes:
        methods: Its outputs, in the order their names were given to :func:`build_methods`.
    """

    def __init__(
        self,
        methods: Sequence[Method],
        explain: Callable[[Tensor, Tensor], RunMaps],
        masked_passes: Callable[[int], int] = lambda channels: 0,
    ) -> None:
        """
        Args:
            methods: Its outputs.
            explain: ``explain(inputs, targets)`` gives each output's maps by name, for
                ``(N,)`` targets, as a :class:`RunMaps`.
            masked_passes: The masked passes on one image, given the layers' channels (see
                :meth:`masked_passes_per_image`); none by default.
        """
        self.methods = tuple(methods)
        self._explain = explain
        self._masked_passes = masked_passes

    def __repr__(self) -> str:
        return f"Run({[method.name for method in self.methods]!r})"

    def explain(self, inputs: Tensor, targets: Tensor) -> RunMaps:
        """Each output's ``N x 1 x H x W`` maps in ``[0, 1]`` of ``inputs`` (``N x C x H x W``)
        for the class indices ``targets`` (``(N,)``, or one for all, as Captum broadcasts a
        single target), by method name in the order of :attr:`methods`, on the inputs'
        device, in float32; and their estimated fidelity where the run has a pass budget."""
        if targets.numel() == 1:
            targets = targets.reshape(1).expand(len(inputs))
        result = self._explain(inputs, targets)
        maps = {method.name: result.maps[method.name].detach().float() for method in self.methods}
        return result._replace(maps=maps)

    def masked_passes_per_image(self, channels: int) -> int:
        """At most how many masked forward passes one call makes per image, with ``channels``
        channels in Poly-CAM's layers: none for a method that masks no channel; for Poly-CAM,
        every channel once (twice for PCAM+-, the budget's fraction with a pass budget; dead
        channels are skipped, so this is an upper bound), and one more for the black image of
        the variants that unveil."""
        return self._masked_passes(channels)


def build_methods(
    names: Sequence[str],
    model: nn.Module,
    layers: Sequence[str],
    *,
    options: ScoringOptions | None = None,
    reshape: Reshape | None = None,
    spatial_dims: int = 2,
) -> list[Run]:
    """Bind the named methods to ``model``, as the runs that compute them.

    Args:
        names: Method names (see the module's documentation).
        model: The classifier, in eval mode.
        layers: Poly-CAM's layers, shallow to deep; Grad-CAM uses the deepest.
        options: How Poly-CAM's masked passes run (``PolyCam(perturbations_per_eval=...,
            precision=..., compile=...)``); occlusion takes its ``perturbations_per_eval``,
            and the gradient baselines run as the model is. ``None`` for the defaults.
        reshape: How the layers' outputs become ``N x C x h x w``, for Poly-CAM and Grad-CAM
            (``PolyCam(reshape=...)``); recorded in their parameters (``None`` without one).
        spatial_dims: The inputs' spatial dimensions: 2 for photos (``N x C x H x W``), 3 for
            scans (``N x C x D x H x W``), 1 for signals; Grad-CAM's upsampling follows them.

    Returns:
        One run per Poly-CAM configuration asked for (variant and pass budget), whose
        outputs are its methods, and one run per other method; in the order of the names,
        a Poly-CAM run at the place of its first.

    Raises:
        EvaluationError: A name is unknown or malformed, appears twice, shares its file stem
            with another, a custom method's factory fails, ``reshape`` is not one, or a method
            is not defined for inputs of ``spatial_dims`` (occlusion, on anything but photos).
    """
    options = options or ScoringOptions()
    if spatial_dims not in _UPSAMPLING:
        raise EvaluationError(
            f"spatial_dims must be 1, 2 or 3 (signals, photos, scans); got {spatial_dims!r}"
        )
    try:
        transform = reshape_function(reshape)
    except (TypeError, ValueError) as error:
        raise EvaluationError(str(error)) from None
    layout = {"reshape": None if reshape is None else _reshape_name(reshape)}
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
    parsed: list[Run | _PolyCamOutput] = []
    for name in names:
        if name.split(":")[0] in _VARIANTS:
            parsed.append(_poly_cam_output(name, list(layers), options, layout))
        elif name == "gradcam":
            parsed.append(_grad_cam(model, layers[-1], transform, layout, spatial_dims))
        elif name == "occlusion" and spatial_dims != 2:
            raise EvaluationError(
                "methods: occlusion slides 3 x 16 x 16 windows over photos, and these inputs "
                f"have {spatial_dims} spatial dimension(s): leave it out of the methods"
            )
        elif name in BASELINES:
            parsed.append(_baseline(name, model, options.perturbations_per_eval))
        elif ":" in name:
            parsed.append(_custom(name, model, spatial_dims))
        else:
            raise EvaluationError(
                f"methods: unknown method {name!r}; use pcam+, pcam-, pcam+- (with :no-lnorm, "
                f":budgetF, :stageK or :layerK), {', '.join(BASELINES)} or "
                "package.module:callable"
            )
    configurations: dict[tuple[str, float | None], list[_PolyCamOutput]] = {}
    for entry in parsed:
        if isinstance(entry, _PolyCamOutput):
            configurations.setdefault(entry.configuration, []).append(entry)
    runs: list[Run] = []
    for entry in parsed:
        if isinstance(entry, Run):
            runs.append(entry)
        elif entry.configuration in configurations:
            outputs = configurations.pop(entry.configuration)
            runs.append(_poly_cam_run(model, list(layers), outputs, options, transform))
    return runs


@dataclass(frozen=True)
class _PolyCamOutput:
    """A Poly-CAM method by name: the run it needs (its configuration) and what it takes
    from the run's decomposition."""

    method: Method
    configuration: tuple[str, float | str | None]  # variant, pass budget
    local_normalisation: bool
    output: tuple[str, int] | None  # ("stage" | "layer", K); None for the map

    def of(self, decomposed: PolyCamMaps) -> Tensor:
        """Its maps in ``decomposed``, the decomposition without LNorm for ``:no-lnorm``."""
        if self.output is None:
            return decomposed.maps
        kind, k = self.output
        return (decomposed.stages if kind == "stage" else decomposed.layer_maps)[k - 1]


def _poly_cam_run(
    model: nn.Module,
    layers: list[str],
    outputs: list[_PolyCamOutput],
    options: ScoringOptions,
    transform: Callable[[Tensor], Tensor] | None,
) -> Run:
    """The run of one Poly-CAM configuration: one decomposition per call gives ``outputs``."""
    variant, pass_budget = outputs[0].configuration
    polycam = PolyCam(
        model,
        layers,
        variant,
        pass_budget=pass_budget,
        reshape=transform,
        **dataclasses.asdict(options),
    )
    ablated = any(not output.local_normalisation for output in outputs)

    def explain(inputs: Tensor, targets: Tensor) -> RunMaps:
        decomposed = polycam.decompose(inputs, targets)
        # The ablation recombines the same layer maps: LNorm changes no channel weight.
        plain = decomposed.recomposed(local_normalisation=False) if ablated else decomposed
        maps = {
            output.method.name: output.of(decomposed if output.local_normalisation else plain)
            for output in outputs
        }
        return RunMaps(maps, None if pass_budget is None else decomposed.fidelity)

    def masked_passes(channels: int) -> int:
        fraction = 1 if pass_budget in (None, AUTO) else pass_budget
        masked = channels * (2 if variant == "plusminus" else 1) * fraction
        return math.ceil(masked) + (variant != "minus")

    return Run([output.method for output in outputs], explain, masked_passes)


def _poly_cam_output(
    name: str, layers: list[str], options: ScoringOptions, layout: dict[str, str | None]
) -> _PolyCamOutput:
    head, *suffixes = name.split(":")
    variant = _VARIANTS[head]
    local_normalisation = True
    pass_budget: float | str | None = None
    output: tuple[str, int] | None = None  # ("stage" | "layer", K)
    for option in suffixes:
        indexed = _INDEXED_OPTION.fullmatch(option)
        budget = _BUDGET_OPTION.fullmatch(option)
        if option == "no-lnorm" and local_normalisation:
            local_normalisation = False
        elif option == AUTO and pass_budget is None:
            pass_budget = AUTO
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
                f"methods: {name!r}: options after {head} are :no-lnorm, one of :budgetF or "
                f":auto, and one of :stageK or :layerK, each at most once; got {option!r}"
            )
    parameters: dict[str, Any] = {
        "method": "PolyCam",
        "variant": variant,
        "layers": layers,
        **layout,
        "score_fn": "softmax",
        "local_normalisation": local_normalisation,
        "precision": options.precision,
        "compile": options.compile,
        "pass_budget": pass_budget,
        **({"min_fidelity": DEFAULT_MIN_FIDELITY} if pass_budget == AUTO else {}),
    }
    if output is None:
        parameters["output"] = "maps"
    elif output[0] == "stage":
        k = output[1]
        parameters["output"] = f"stage {k}: the deepest {k} layer(s), {', '.join(layers[-k:])}"
    else:
        k = output[1]
        parameters["output"] = f"layer {k} alone, without the recursion: {layers[k - 1]}"
    method = Method(name, parameters)
    return _PolyCamOutput(method, (variant, pass_budget), local_normalisation, output)


def _requiring_gradients(inputs: Tensor) -> Tensor:
    # Captum warns once per call site when it has to switch gradients on for the inputs.
    return inputs.detach().requires_grad_()


def _upsampled(maps: Tensor, inputs: Tensor) -> Tensor:
    spatial = tuple(inputs.shape[2:])
    return LayerAttribution.interpolate(maps, spatial, _UPSAMPLING[len(spatial)])


def _reshape_name(reshape: Reshape) -> str:
    # A callable is recorded by where it lives: its repr changes from one process to the next.
    if isinstance(reshape, str):
        return reshape
    return f"{getattr(reshape, '__module__', '?')}:{getattr(reshape, '__qualname__', reshape)}"


def _single(
    name: str, parameters: dict[str, Any], explain: Callable[[Tensor, Tensor], Tensor]
) -> Run:
    """The run of a method that is its only output."""
    return Run(
        [Method(name, parameters)],
        lambda inputs, targets: RunMaps({name: explain(inputs, targets)}),
    )


def _grad_cam(
    model: nn.Module,
    deepest: str,
    transform: Callable[[Tensor], Tensor] | None,
    layout: dict[str, str | None],
    spatial_dims: int,
) -> Run:
    layer = resolve_layers(model, [deepest])[0].module
    parameters = {
        "method": "LayerGradCam",
        "layer": deepest,
        **layout,
        "relu_attributions": True,
        "upsampling": _UPSAMPLING[spatial_dims],
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
            weights = gradients.mean(dim=tuple(range(2, gradients.dim())), keepdim=True)
            return torch.relu((weights * activations).sum(dim=1, keepdim=True))

    def explain(inputs: Tensor, targets: Tensor) -> Tensor:
        return scale_to_unit(_upsampled(maps(inputs, targets), inputs))

    return _single("gradcam", parameters, explain)


def _baseline(name: str, model: nn.Module, perturbations_per_eval: int | None) -> Run:
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
    elif name == "centre":
        parameters = {
            "method": "centre",
            "distribution": "Gaussian centred on the input",
            "sigma": f"{CENTRE_SIGMA} of each side",
            "scaling": "1 at the centre",
        }

        def explain(inputs: Tensor, targets: Tensor) -> Tensor:
            return centre_prior(len(inputs), inputs.shape[2:]).to(inputs.device)
    else:  # random
        parameters = {
            "method": "random",
            "distribution": "uniform on [0, 1)",
            "seed": "the run's seed and the batch",
        }

        def explain(inputs: Tensor, targets: Tensor) -> Tensor:
            maps = torch.rand(len(inputs), 1, *inputs.shape[2:])  # CPU: the same on any device
            return maps.to(inputs.device)

    return _single(name, parameters, explain)


def centre_prior(count: int, size: Sequence[int]) -> Tensor:
    r"""``count`` copies of the centred Gaussian ``count x 1 x *size``, the ``centre`` method.

    For ``size = (H, W)``, ``g(y, x) = exp(-((y - c_y) / s_y)^2 / 2 - ((x - c_x) / s_x)^2 / 2)``
    with the centre ``c = ((H - 1) / 2, (W - 1) / 2)`` in pixel indices and
    ``s = CENTRE_SIGMA * (H, W)``: 1 at the centre, about 0.14 at the middle of each edge; for
    ``(D, H, W)`` or ``(L,)`` the same, one term per dimension. It needs no model: it is what
    a method that ignores the image would score on photos framed on their object.
    """
    sides = [int(side) for side in size]
    squares = torch.zeros(())
    for axis, side in enumerate(sides):
        offsets = torch.arange(side, dtype=torch.float32) - (side - 1) / 2
        scaled = offsets / (CENTRE_SIGMA * side)
        # This axis's term, broadcast over the others: rows, then columns, in 2D.
        squares = (
            squares + scaled.view([-1 if other == axis else 1 for other in range(len(sides))]) ** 2
        )
    gaussian = torch.exp(-squares / 2)
    return gaussian.expand(count, 1, *sides).contiguous()


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


def _custom(name: str, model: nn.Module, spatial_dims: int) -> Run:
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
        "upsampling": _UPSAMPLING[spatial_dims],
        "scaling": "minimum to 0, maximum to 1",
    }

    def explain(inputs: Tensor, targets: Tensor) -> Tensor:
        maps = attribution.attribute(inputs, target=targets)
        if isinstance(maps, tuple):
            maps = maps[0]
        if maps.dim() == inputs.dim() and maps.shape[1] > 1:
            maps = maps.abs().sum(dim=1, keepdim=True)
        return min_max_mask(inputs, maps)[:, None]  # upsampled (bi/tri)linearly, then min-max

    return _single(name, parameters, explain)


def _identity(attribution: object) -> str:
    """What identifies a custom attribution from run to run: its ``repr`` when that shows its
    settings, its class when the ``repr`` is Python's default, whose address changes every run."""
    text = repr(attribution)
    if re.search(r" at 0x[0-9a-fA-F]+", text):
        kind = type(attribution)
        return f"{kind.__module__}.{kind.__qualname__}"
    return text
