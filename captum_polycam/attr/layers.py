"""Choosing the layers Poly-CAM reads: one per resolution of the model's feature maps.

:func:`discover_layers` records one forward pass and picks, for each resolution of the main
path, the last post-activation output; :func:`describe_layers` reports what Poly-CAM would read.
Naming and reading the layers is :mod:`captum_polycam.attr.capture`'s job.
"""

from __future__ import annotations

import contextlib
import math
import threading
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from captum_polycam._conventions import evaluation_mode, input_errors_explained
from captum_polycam.attr.capture import (
    LayerInfo,
    LayerLike,
    Reshape,
    capture_activations,
    first_example,
    hooks,
    layer_info,
    reshape_function,
    resolve_layers,
)

__all__ = ["LayerInfo", "LayerLike", "describe_layers", "discover_layers"]

# activations (for example EfficientNet ports' ``MemoryEfficientSwish``) are recognised by name.
_ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Sigmoid,
    nn.Softplus,
)
_ACTIVATION_NAMES = ("relu", "swish", "silu", "gelu", "mish")
_PADDINGS = (
    nn.ZeroPad2d,
    nn.ConstantPad2d,
    nn.ReflectionPad2d,
    nn.ReplicationPad2d,
    nn.CircularPad2d,
)
# Convolutional stacks halve the side from one stage to the next, or quarter it at a stem; a
# larger step between two layers found means the stages in between could not be read.
_MAX_SIDE_SHRINK = 4
_PASS_LAYERS_HINT = (
    "Pass the layers explicitly, PolyCam(model, layers=[...]) or --layers on the command line, "
    "with reshape='nhwc' for channels-last stages (Swin: its stages, such as features.1, "
    "features.3, features.5 and features.7) or reshape='tokens' to reshape tokens to their grid "
    "(a flat ViT: one layer, a Score-CAM-like map, since layers of one resolution add no "
    "detail); see 'Choosing the layers' in the documentation"
)


@dataclass
class _Call:
    """What the discovery pass records about one module call."""

    order: int
    name: str
    module: nn.Module
    index: int  # how many times this module ran before
    in_size: tuple[int, ...] | None = None
    # The output as Poly-CAM reads it (reshaped when a reshape is given), as a tensor on the
    # meta device: its shape without its values, which a recording of every module of a
    # dense 3D network would hold by the hundreds of megabytes.
    output: Any = None
    block: _Call | None = None  # innermost enclosing call that is not a plain Sequential
    passes_through: bool = False  # returned its input unchanged (Identity, eval-mode Dropout)
    made: int = 0  # the object the module returned, numbered: shared by nested modules
    hands_on: frozenset[int] = frozenset()  # the numbers of the maps a returned dict holds


class _Preference(NamedTuple):
    """How well a candidate stands for its resolution: compared field by field, greater wins."""

    on_main_path: bool
    post_activation: bool
    is_block: bool  # the output of a module with children rather than of a leaf
    order: int  # when the tensor was computed: the latest is the deepest of its resolution


class _Choice(NamedTuple):
    """The candidate kept for one resolution, and the call that names it."""

    preference: _Preference
    call: _Call


def _shallow_to_deep(choice: _Choice) -> tuple[int, int]:
    """Sort key: decreasing spatial size, then computation order."""
    return -math.prod(choice.call.output.shape[2:]), choice.preference.order


def _spatial(value: Any, dims: int) -> tuple[int, ...] | None:
    """The spatial size of ``value`` if it is a ``dims``-D tensor (the inputs' ``N x C x
    *spatial``), else ``None``."""
    return tuple(value.shape[2:]) if isinstance(value, Tensor) and value.dim() == dims else None


def _is_activation(module: nn.Module) -> bool:
    name = type(module).__name__.lower()
    return isinstance(module, _ACTIVATIONS) or any(word in name for word in _ACTIVATION_NAMES)


def _has_children(module: nn.Module) -> bool:
    return next(module.children(), None) is not None


def _read(value: Any, transform: Callable[[Tensor], Tensor] | None) -> Any:
    """``value`` as Poly-CAM would read it: reshaped when it can be, else not a map (``None``)."""
    if transform is None or not isinstance(value, Tensor):
        return value
    try:
        return transform(value)
    except Exception:  # a tensor of another layout (a true N x C x h x w one, a vector)
        return None


def _shape_only(value: Any) -> Any:
    """A tensor's shape, as a tensor on the meta device; anything else is not a map (``None``)."""
    if not isinstance(value, Tensor):
        return None
    return torch.empty(value.shape, dtype=value.dtype, device="meta")


class _Numbering:
    """Numbers the objects that modules return, one number per object, without keeping them.

    Nested modules (a Sequential and its last child) return the same tensor, which must count
    as one candidate. ``id()`` alone cannot tell: once a tensor is freed, a later one may get
    its id. A weak reference can: it dies with its object.
    """

    def __init__(self) -> None:
        self._live: dict[int, tuple[weakref.ref[Any], int]] = {}
        self._count = 0

    def number(self, value: Any) -> int:
        seen = self._live.get(id(value))
        if seen is not None and seen[0]() is value:
            return seen[1]
        self._count += 1
        # Tuples and dicts cannot be weakly referenced; they are never candidates, so a number
        # of their own is all they need.
        with contextlib.suppress(TypeError):
            self._live[id(value)] = (weakref.ref(value), self._count)
        return self._count


def _record_calls(
    model: nn.Module,
    inputs: Tensor,
    args: tuple[Any, ...],
    transform: Callable[[Tensor], Tensor] | None = None,
) -> tuple[list[_Call], dict[int, int]]:
    """Run ``model(inputs, *args)`` once and record every module call, in order of return,
    its input's and output's maps read through ``transform``.

    Returns:
        The calls, and how many times each module object (by ``id``) ran.
    """
    records: list[_Call] = []
    stack: list[_Call] = []
    counts: dict[int, int] = {}
    numbering = _Numbering()
    # The hooks run on every thread's passes through the model: only this one's are recorded.
    thread = threading.get_ident()

    def pre_hook(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            if threading.get_ident() != thread:
                return
            index = counts.get(id(module), 0)
            counts[id(module)] = index + 1
            block = next(
                (c for c in reversed(stack) if not isinstance(c.module, nn.Sequential)), None
            )
            size = _spatial(_read(args[0], transform), inputs.dim()) if args else None
            stack.append(_Call(0, name, module, index, size, block=block))

        return hook

    def post_hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if threading.get_ident() != thread:
            return
        call = stack.pop()
        call.order, call.output = len(records), _shape_only(_read(output, transform))
        call.made = numbering.number(output)
        if isinstance(output, dict):
            call.hands_on = frozenset(numbering.number(value) for value in output.values())
        # An in-place activation also returns its input, but it changed it.
        call.passes_through = bool(args) and args[0] is output and not _is_activation(module)
        records.append(call)

    handles = []
    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(pre_hook(name)))
        handles.append(module.register_forward_hook(post_hook))
    # A failure on inputs the model cannot take is said as the clean pass says it.
    explained = input_errors_explained(model, inputs)
    with hooks(handles), evaluation_mode(model), torch.no_grad(), explained:
        model(inputs, *args)
    return records, counts


def _hands_on_maps(call: _Call, made: set[int]) -> bool:
    """Whether ``call`` returns a dict holding maps that earlier calls made.

    Tuples do not count: the blocks of Hugging Face models return their hidden states in
    tuples, inside the feature extractor, where a backbone hands its maps on in a dict.
    """
    return not call.hands_on.isdisjoint(made)


def _feature_extractor(records: list[_Call], inputs: Tensor) -> _Call:
    """The call that closes the feature extractor: the first to hand on maps in a container.

    Detection and segmentation models gather their backbone's maps in a dict (torchvision's
    ``IntermediateLayerGetter``), which a feature pyramid, heads or a segmentation head then
    consume. Those consumers' maps are not the stack that computes the features: a pyramid goes
    back up in resolution, and heads read every level. A container of maps marks that hand-over
    whatever the modules are called, where a rule on names (``backbone``, ``body``, ``fpn``)
    would fit torchvision alone. Without such a container it is the model's own call, the last.
    """
    made: set[int] = set()
    for call in records:
        if _hands_on_maps(call, made):
            return call
        if _spatial(call.output, inputs.dim()) is not None and len(call.output) == len(inputs):
            made.add(call.made)
    return records[-1]


def _choose(records: list[_Call], inputs: Tensor, reshaped: bool = False) -> list[_Call]:
    """The call that names the preferred candidate of each resolution, shallow to deep.

    In a CNN the last post-activation output of a resolution is preferred, being
    non-negative. In the stages of a transformer (``reshaped``: channels-last maps or tokens)
    the activations are inside the MLPs, four times wider and off the residual stream, so
    the blocks' outputs are preferred instead.
    """
    extractor = _feature_extractor(records, inputs)
    records = records[: extractor.order + 1]
    dims = inputs.dim()
    image = tuple(inputs.shape[2:])
    # A detector resizes its images before the backbone, often to a larger size than the input:
    # maps are then measured against the image the feature extractor sees.
    seen = extractor.in_size
    if seen is not None and all(s >= i for s, i in zip(seen, image, strict=True)):
        image = seen

    def map_size(size: tuple[int, ...] | None) -> tuple[int, ...] | None:
        """``size`` if it can be a map's: within the input's size and aspect ratio.

        The last two sizes of a channels-last ``N x h x w x C`` tensor are not ``h x w``.
        """
        if size is None:
            return None
        scales = [math.log(s / i) for s, i in zip(size, image, strict=True)]
        fits = max(scales) <= 0 and max(scales) - min(scales) < 0.5
        return size if fits else None

    def spatial(value: Any) -> tuple[int, ...] | None:
        return _spatial(value, dims)

    def is_candidate(call: _Call) -> bool:
        size = map_size(spatial(call.output))
        if size is None or math.prod(size) <= 1 or isinstance(call.module, _PADDINGS):
            return False
        # Transformer stages tile the image in patches: a reshaped tensor whose grid does not
        # divide the image is something else (Swin V2's table of relative positions, say).
        if reshaped and any(i % s for s, i in zip(size, image, strict=True)):
            return False
        # One map per example: RoI pooling, for one, returns one map per box.
        return call.output.shape[0] == len(inputs)

    def is_main_path(call: _Call) -> bool:
        block = call.block
        if block is None or block.block is None:  # the model itself
            return True
        block_out = map_size(spatial(block.output))
        return (
            block_out is None
            or map_size(block.in_size) == block_out
            or spatial(call.output) == block_out
        )

    # A tensor returned by nested modules is one candidate: the first call made it, the last
    # (outermost) one that did not merely pass it through names it.
    groups: dict[int, list[_Call]] = {}
    for call in records:
        if is_candidate(call):
            groups.setdefault(call.made, []).append(call)

    best: dict[tuple[int, ...], _Choice] = {}
    main_sizes = set()
    for members in groups.values():
        producers = [call for call in members if not call.passes_through]
        if not producers:  # the model's input, handed on unchanged
            continue
        size = spatial(members[0].output)
        preference = _Preference(
            on_main_path=any(is_main_path(call) for call in members),
            post_activation=not reshaped and any(_is_activation(c.module) for c in members),
            is_block=any(_has_children(call.module) for call in members),
            order=members[0].order,
        )
        if preference.on_main_path:
            main_sizes.add(size)
        if size not in best or preference > best[size].preference:
            best[size] = _Choice(preference, producers[-1])
    chosen = sorted((best[size] for size in main_sizes), key=_shallow_to_deep)
    return [choice.call for choice in chosen]


def _shown(reshape: Reshape) -> str:
    return repr(reshape) if isinstance(reshape, str) else getattr(reshape, "__name__", "f")


def _side_shrink(shallow: LayerInfo, deep: LayerInfo) -> float:
    return max(s / d for s, d in zip(shallow.size, deep.size, strict=True))


def _discover(
    model: nn.Module,
    inputs: Tensor,
    additional_forward_args: Any,
    reshape: Reshape | None = None,
) -> list[LayerInfo]:
    """:func:`discover_layers`, with the shape of each layer found."""
    transform = reshape_function(reshape)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module; got {type(model).__name__}")
    first, args = first_example(inputs, additional_forward_args)
    records, counts = _record_calls(model, first, args, transform)
    layers = []
    for call in _choose(records, first, reshaped=transform is not None):
        last = counts[id(call.module)] - 1
        name = call.name if call.index == last else f"{call.name}:{call.index}"
        layers.append(layer_info(name, call.output))

    if len(layers) == 1 and transform is not None:
        raise ValueError(
            f"discover_layers: found maps at one resolution only, {layers[0]}, reading the "
            f"layers with reshape={_shown(reshape)}: this model keeps one grid throughout, as "
            "a flat ViT does. Pass one layer, such as "
            f"PolyCam(model, layers=[{layers[0].name!r}], reshape={_shown(reshape)}) or "
            f"--layers {layers[0].name} on the command line, for a Score-CAM-like map at that "
            "grid; more layers of the same grid add no detail, since Poly-CAM's gain comes from "
            "shallower layers at finer resolutions"
        )
    if len(layers) < 2:
        found = (
            f"N x C x h x w feature maps at one resolution only, {layers[0]}"
            if layers
            else "no N x C x h x w feature map of more than one position"
        )
        raise ValueError(
            f"discover_layers: found {found}. Poly-CAM needs a convolutional stack of "
            "N x C x h x w feature maps at several resolutions; models that work on tokens (ViT) "
            "or on channels-last N x h x w x C maps (Swin) have none that discovery can read. "
            f"{_PASS_LAYERS_HINT}"
        )
    gaps = [
        f"{shallow} is followed by {deep}, {_side_shrink(shallow, deep):.3g}x smaller"
        for shallow, deep in pairwise(layers)
        if _side_shrink(shallow, deep) > _MAX_SIDE_SHRINK
    ]
    if gaps:
        warnings.warn(
            f"discover_layers: the layers found skip resolutions: {'; '.join(gaps)}. The maps "
            "in between are probably channels-last (N x h x w x C) or tokens, which discovery "
            f"cannot read. {_PASS_LAYERS_HINT}",
            UserWarning,
            stacklevel=3,  # the caller of discover_layers or describe_layers
        )
    return layers


def discover_layers(
    model: nn.Module,
    inputs: Tensor,
    additional_forward_args: Any = None,
    *,
    reshape: Reshape | None = None,
) -> list[str]:
    """Pick one layer per spatial resolution, the deepest of each, from one dry forward pass.

    Every module call whose output is an ``N x C x h x w`` map with one map per example, ``h x w``
    more than one position and within the input's size (and aspect ratio, which rules out
    channels-last tensors) is a candidate. The search ends with the first call that returns a
    dict of maps made by earlier calls: the feature extractor of a detection or
    segmentation model (torchvision's ``backbone.body`` or ``backbone``), whose maps a feature
    pyramid, heads or a segmentation head then consume. Where that extractor sees an image
    larger than the input (a detector resizes it), maps are measured against that image.
    Among the candidates of a resolution the one chosen is, in order of preference:

    1. on the main path: not a tensor internal to a block that changes resolution, such as the
       56 x 56 output of the first 1 x 1 convolution of ResNet's ``layer2.0``, which is
       computed after ``layer1`` but is not part of the 56 x 56 stage;
    2. a post-activation map (an activation module's output), since Poly-CAM assumes
       non-negative activations;
    3. the output of a block (a module with children) rather than of a single leaf;
    4. the latest computed.

    Calls are identified by the tensor they return, so a module object called several times
    (ResNet's ``Bottleneck.relu``, EfficientNet's ``_swish``) is resolved to the right call,
    and a tensor returned by nested modules is named after the outermost one (``layer1`` rather
    than ``layer1.2.relu``). Padding modules never define a resolution.

    With a ``reshape`` (``"nhwc"`` for channels-last stages, ``"tokens"`` for token
    sequences, or a callable), every output is read through it first, so that the stages of
    hierarchical transformers (Swin, Swin V2) are found as those of a CNN; there the outputs
    of blocks are preferred to activations (rule 2 is skipped), which live inside the MLPs,
    off the residual stream.

    Args:
        model: The network. It runs once in evaluation mode; its training flags, parameters
            and buffers are left as they were.
        inputs: A batch shaped like the ones to explain; only its first example is used.
        additional_forward_args: Extra arguments of ``model`` after the input. Tensors with one
            row per example are cut to the first example's row.
        reshape: How a layer's output becomes ``N x C x h x w``, as ``PolyCam(reshape=...)``
            takes it (:func:`~captum_polycam.attr.capture.reshape_function`).

    Returns:
        Layer names ordered shallow to deep, ``name:k`` where the chosen output is not the last
        call of a module object. Pass them, edited or not, as ``PolyCam(model, layers=...)``.

    Raises:
        TypeError: If ``model`` is not an ``nn.Module``.
        ValueError: If ``inputs`` is not a non-empty ``N x C x H x W`` tensor, or if the model
            has ``N x C x h x w`` maps at fewer than two resolutions (ViT, for one).

    Warns:
        UserWarning: If the layers found skip resolutions, the side shrinking more than four
            times from one to the next (Swin, whose stages run channels-last).

    Example:
        >>> from torchvision.models import resnet50
        >>> discover_layers(resnet50().eval(), torch.rand(1, 3, 224, 224))
        ['relu', 'layer1', 'layer2', 'layer3', 'layer4']
    """
    return [layer.name for layer in _discover(model, inputs, additional_forward_args, reshape)]


def describe_layers(
    model: nn.Module,
    inputs: Tensor,
    layers: Sequence[LayerLike] | None = None,
    additional_forward_args: Any = None,
    *,
    reshape: Reshape | None = None,
) -> list[LayerInfo]:
    """Name and shape of each layer Poly-CAM would read, from one forward pass of one example.

    Args:
        model: The network. It runs once, without gradients and in evaluation mode; its
            training flags, parameters and buffers are left as they were.
        inputs: A batch shaped like the ones to explain; only its first example is used.
        layers: The layers as ``PolyCam(layers=...)`` takes them: modules, dotted names,
            ``"name:k"`` or ``(module, k)``. ``None`` describes what :func:`discover_layers`
            picks.
        additional_forward_args: Extra arguments of ``model`` after the input. Tensors with one
            row per example are cut to the first example's row.
        reshape: How each layer's output becomes ``N x C x h x w``, as ``PolyCam(reshape=...)``
            takes it (``None`` keeps it as it is).

    Returns:
        One :class:`LayerInfo` per layer, in the order given (shallow to deep when discovered).

    Raises:
        TypeError: If ``model`` is not an ``nn.Module``, or a layer is not a module, name or
            ``(module, k)`` pair.
        ValueError: If ``inputs`` is not a non-empty ``N x C x H x W`` tensor, a layer is
            unknown, given twice, never called or not ``N x C x h x w``, or, with
            ``layers=None``, as :func:`discover_layers` raises.

    Warns:
        UserWarning: With ``layers=None``, as :func:`discover_layers` warns.

    Example:
        >>> from torchvision.models import resnet50
        >>> for layer in describe_layers(resnet50(), torch.rand(1, 3, 224, 224)):
        ...     print(layer)
        relu (64@112x112)
        layer1 (256@56x56)
        layer2 (512@28x28)
        layer3 (1024@14x14)
        layer4 (2048@7x7)
    """
    if layers is None:
        return _discover(model, inputs, additional_forward_args, reshape)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module; got {type(model).__name__}")
    calls = resolve_layers(model, layers)
    first, args = first_example(inputs, additional_forward_args)
    with evaluation_mode(model), torch.no_grad(), input_errors_explained(model, first):
        _, outputs = capture_activations(lambda: model(first, *args), calls, reshape)
    return [layer_info(str(call), output) for call, output in zip(calls, outputs, strict=True)]
