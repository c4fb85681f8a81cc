"""Reading the layers Poly-CAM uses: naming them, and capturing their outputs in one call.

A layer is named by a module or its dotted name, optionally followed by ``:k`` to pick the
``k``-th call (0-based, negative from the end) of a module object that a forward pass calls
several times; the default is the last call, as a forward hook sees it. Hooks live for one
call and are removed however it ends.
"""

from __future__ import annotations

import math
import operator
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import torch
from torch import Tensor, nn

from captum_polycam._conventions import SIGNALS_IMAGES_VOLUMES, check_inputs, is_per_example
from captum_polycam.resources.names import import_callable

__all__ = [
    "LayerCall",
    "LayerInfo",
    "LayerLike",
    "Reshape",
    "capture_activations",
    "check_dimensions",
    "check_shallow_to_deep",
    "first_example",
    "hooks",
    "layer_info",
    "reshape_function",
    "resolve_layers",
]

LayerLike = str | nn.Module | tuple[str | nn.Module, int]
Reshape = str | Callable[[Tensor], Tensor]
"""How a layer's output becomes ``N x C x h x w``: ``"nhwc"``, ``"tokens"``,
``"package.module:callable"`` or a callable (see :func:`reshape_function`)."""


def reshape_function(reshape: Reshape | None) -> Callable[[Tensor], Tensor] | None:
    """The function that turns a layer's output into ``N x C x h x w`` maps, as
    pytorch-grad-cam's ``reshape_transform``.

    - ``None``: the output already is ``N x C x h x w`` (CNNs).
    - ``"nhwc"``: channels-last stages, ``N x h x w x C`` (torchvision's Swin, ConvNeXt
      blocks of timm), permuted to ``N x C x h x w``.
    - ``"tokens"``: a sequence ``N x L x C`` of patch tokens on a square grid. The tokens
      beyond the largest square, ``L - floor(sqrt(L))**2`` of them, are taken to be the class
      and register tokens that transformers put first (1 for a ViT's class token, 5 with 4
      registers), and are dropped: they belong to no position of the image.
    - a callable, from the layer's output to ``N x C x h x w``, or its name as
      ``"package.module:callable"``, which is how the command line and
      :class:`~captum_polycam.evaluation.EvaluationConfig` take one (a name can be recorded).

    Raises:
        ValueError: If ``reshape`` is none of these, or its name cannot be imported.
    """
    if reshape is None or callable(reshape):
        return reshape
    if reshape == "nhwc":
        return _from_channels_last
    if reshape == "tokens":
        return _from_tokens
    if isinstance(reshape, str) and ":" in reshape:
        try:
            return import_callable(reshape)
        except ValueError as error:
            raise ValueError(f"reshape: {reshape!r}: {error}") from None
    raise ValueError(
        "reshape must be None, 'nhwc', 'tokens', 'package.module:callable' or a callable; "
        f"got {reshape!r}"
    )


def _from_channels_last(output: Tensor) -> Tensor:
    if output.dim() != 4:
        raise ValueError(f"reshape='nhwc' needs N x h x w x C outputs; got {tuple(output.shape)}")
    return output.permute(0, 3, 1, 2)


def _from_tokens(output: Tensor) -> Tensor:
    if output.dim() != 3 or output.shape[1] == 0:
        raise ValueError(f"reshape='tokens' needs N x L x C outputs; got {tuple(output.shape)}")
    count, length, channels = output.shape
    side = math.isqrt(length)
    grid = output[:, length - side * side :]  # the leading class and register tokens dropped
    return grid.transpose(1, 2).reshape(count, channels, side, side)


@dataclass(frozen=True)
class LayerCall:
    """One output of one module: the ``call``-th time it runs in a forward pass."""

    name: str
    module: nn.Module
    call: int = -1

    def __str__(self) -> str:
        return self.name if self.call == -1 else f"{self.name}:{self.call}"


def resolve_layers(model: nn.Module | None, layers: Sequence[LayerLike]) -> list[LayerCall]:
    """Turn user layer references into :class:`LayerCall` objects, with clear errors.

    What needs no forward pass is checked here: names the model does not have, malformed call
    indices, and a layer given twice (by one name twice, by a name and the module object, or
    by two names of one module), which would double its masked passes. A call index the
    module does not reach, or two indices of one call (``"act:1"`` and ``"act"`` for a module
    called twice), are found by :func:`capture_activations`, on the clean pass.

    Raises:
        TypeError: If a layer is not a module, a dotted name or a ``(layer, k)`` pair with an
            int ``k``, or a name is given without an ``nn.Module`` to look it up in.
        ValueError: If ``layers`` is empty, a name is unknown or malformed, or a layer is
            given twice.
    """
    if isinstance(layers, (str, nn.Module)) or (
        isinstance(layers, tuple) and len(layers) == 2 and isinstance(layers[1], int)
    ):
        layers = [layers]  # type: ignore[list-item]
    if not isinstance(layers, Sequence) or len(layers) == 0:
        raise ValueError(f"layers must be a non-empty list of modules or names; got {layers!r}")
    names = (
        {id(module): name for name, module in model.named_modules()} if model is not None else {}
    )
    # Every name of a module registered under several (a shared block), not only its first.
    modules = dict(model.named_modules(remove_duplicate=False)) if model is not None else {}
    resolved: list[LayerCall] = []
    for position, layer in enumerate(layers):
        call = _reference_call(layer)
        reference = layer[0] if isinstance(layer, tuple) else layer
        if isinstance(reference, str):
            name, colon, suffix = reference.partition(":")
            if colon:
                if isinstance(layer, tuple):
                    raise ValueError(f"layers: {layer!r} gives the call index twice")
                try:
                    call = int(suffix)
                except ValueError:
                    raise ValueError(
                        f"layers: {reference!r} must be 'name' or 'name:call_index'"
                    ) from None
            if model is None:
                raise TypeError(
                    f"layers: the name {reference!r} needs forward_func to be an nn.Module; "
                    "pass the module itself"
                )
            if name not in modules:
                raise ValueError(f"layers: the model has no module named {name!r}")
            found = LayerCall(name, modules[name], call)
        else:
            found = LayerCall(names.get(id(reference), type(reference).__name__), reference, call)
        for earlier, other in enumerate(resolved):
            if other.module is found.module and other.call == found.call:
                raise ValueError(
                    f"layers: layers[{earlier}] and layers[{position}] are both {other}; "
                    "give each layer once (a duplicate would double its masked passes)"
                )
        resolved.append(found)
    return resolved


def _reference_call(layer: Any) -> int:
    """The call index a ``(layer, k)`` pair gives, ``-1`` for a plain module or name.

    Raises:
        TypeError: If ``layer`` is neither a module, a name nor such a pair with an int ``k``.
    """
    if isinstance(layer, (str, nn.Module)):
        return -1
    pair = isinstance(layer, tuple) and len(layer) == 2
    if not pair or not isinstance(layer[0], (str, nn.Module)):
        raise TypeError(
            f"layers: expected a module, a dotted name or (module, call); got {layer!r}"
        )
    call = layer[1]
    try:
        if isinstance(call, bool):  # True is an int to Python, but never meant as call 1
            raise TypeError
        return operator.index(call)  # an int, or a NumPy or 0-d tensor integer
    except TypeError:
        raise TypeError(
            f"layers: the call index of {layer!r} must be an int; got {call!r}"
        ) from None


@contextmanager
def hooks(handles: list[torch.utils.hooks.RemovableHandle]) -> Iterator[None]:
    """Keep the hooks of ``handles`` for the ``with`` block, and remove them however it ends."""
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def capture_activations(
    forward: Callable[[], Any], layers: Sequence[LayerCall], reshape: Reshape | None = None
) -> tuple[Any, list[Tensor]]:
    """Run ``forward()`` once and return its output with a copy of each layer's output, made
    ``N x C x *spatial`` by ``reshape`` (see :func:`reshape_function`).

    The copy is taken when the module returns, so in-place operations later in the forward
    pass (residual sums, in-place activations) do not alter it. Hooks belong to the modules,
    so every thread's passes through them run them: only those of the calling thread are
    read, and other threads may use the same model meanwhile.

    Raises:
        ValueError: If a layer is never called, asks for a call its module does not make, is
            not an ``N x C x l``, ``N x C x h x w`` or ``N x C x d x h x w`` tensor once
            reshaped, or names the same call as another layer (``"act:1"`` and ``"act"`` of a
            module called twice).
    """
    transform = reshape_function(reshape)
    calls: dict[int, int] = {}
    captured: dict[int, list[Tensor]] = {}
    thread = threading.get_ident()

    def hook(module: nn.Module, _args: Any, output: Any) -> None:
        if threading.get_ident() != thread:  # another call's pass through a shared model
            return
        calls[id(module)] = calls.get(id(module), 0) + 1
        captured.setdefault(id(module), []).append(
            output.detach().clone() if isinstance(output, Tensor) else output
        )

    unique = {id(layer.module): layer.module for layer in layers}
    handles = [module.register_forward_hook(hook) for module in unique.values()]
    with hooks(handles):
        output = forward()

    activations = []
    # Two indices of one call ("act:1" and "act" of a module called twice) are one layer,
    # which only the number of calls reveals.
    read: dict[tuple[int, int], LayerCall] = {}
    for layer in layers:
        outputs = captured.get(id(layer.module), [])
        if not outputs:
            raise ValueError(f"layers: {layer} is never called in the forward pass")
        if not -len(outputs) <= layer.call < len(outputs):
            raise ValueError(
                f"layers: {layer} asks for call {layer.call}, but the module is called "
                f"{len(outputs)} time(s)"
            )
        index = layer.call % len(outputs)
        other = read.setdefault((id(layer.module), index), layer)
        if other is not layer:
            raise ValueError(
                f"layers: {other} and {layer} are the same output, call {index} of the "
                f"{len(outputs)} calls of the module; give each layer once (a duplicate would "
                "double its masked passes)"
            )
        activation = outputs[layer.call]
        if transform is not None and isinstance(activation, Tensor):
            try:
                activation = transform(activation)
            except Exception as error:  # a user's reshape: say whose it is
                raise ValueError(f"reshape failed on the output of {layer}: {error}") from None
        if not isinstance(activation, Tensor) or not 3 <= activation.dim() <= 5:
            shape = tuple(activation.shape) if isinstance(activation, Tensor) else type(activation)
            hint = (
                "; pass reshape='nhwc' for channels-last stages or reshape='tokens' for a "
                "sequence of tokens"
                if transform is None and isinstance(activation, Tensor)
                else ""
            )
            raise ValueError(
                f"layers: the output of {layer} must be an N x C x l, N x C x h x w or "
                f"N x C x d x h x w tensor; got {shape}{hint}"
            )
        activations.append(activation.contiguous())
    return output, activations


@dataclass(frozen=True)
class LayerInfo:
    """The shape of one layer's output for one example, as :func:`describe_layers` reports it.

    Attributes:
        name: The layer as ``PolyCam(layers=...)`` takes it, ``"name"`` or ``"name:k"``.
        channels: Number of channels ``C`` of the ``N x C x *spatial`` output.
        size: Its spatial size: ``(l,)`` for a signal, ``(h, w)`` for an image, ``(d, h, w)``
            for a volume.
    """

    name: str
    channels: int
    size: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.name} ({self.channels}@{'x'.join(map(str, self.size))})"


def layer_info(name: str, output: Tensor) -> LayerInfo:
    """The :class:`LayerInfo` of the layer ``name`` from its ``N x C x *spatial`` ``output``."""
    return LayerInfo(name, output.shape[1], tuple(output.shape[2:]))


_SPATIAL_NAMES = {1: "1-D (N x C x l)", 2: "2-D (N x C x h x w)", 3: "3-D (N x C x d x h x w)"}


def check_dimensions(layers: Sequence[LayerInfo], inputs: Tensor) -> None:
    """Check that every layer's maps have as many spatial dimensions as ``inputs``: the masks
    are upsampled to the input's size, so a 2-D layer cannot mask a volume.

    Raises:
        ValueError: Naming the first layer whose maps are of another dimensionality.
    """
    spatial = inputs.dim() - 2
    for layer in layers:
        if len(layer.size) != spatial:
            hint = (
                "; pass reshape='nhwc' for channels-last stages or reshape='tokens' for a "
                "sequence of tokens"
                if len(layer.size) < spatial
                else ""
            )
            raise ValueError(
                f"layers: {layer} gives {_SPATIAL_NAMES[len(layer.size)]} maps, but the inputs "
                f"are {_SPATIAL_NAMES.get(spatial, f'{spatial}-D')} of shape "
                f"{tuple(inputs.shape)}; every layer must have the inputs' spatial "
                f"dimensions{hint}"
            )


def check_shallow_to_deep(layers: Sequence[LayerInfo]) -> None:
    """Check that ``layers`` go shallow to deep, as Poly-CAM's backward recursion needs: each
    map no larger than the one before it, in every dimension.

    Raises:
        ValueError: Naming the first layer that is larger than the one before it.
    """
    for shallow, deep in pairwise(layers):
        if any(d > s for d, s in zip(deep.size, shallow.size, strict=True)):
            raise ValueError(
                "layers: must go shallow to deep, by non-increasing resolution; "
                f"{deep} comes after {shallow}"
            )


def first_example(inputs: Tensor, additional_forward_args: Any) -> tuple[Tensor, tuple[Any, ...]]:
    """The first example of ``inputs`` and the forward arguments that go with it.

    Tensor arguments with one row per example are sliced like ``inputs``; the others are passed
    as they are.

    Raises:
        ValueError: If ``inputs`` is not a non-empty ``N x C x L``, ``N x C x H x W`` or
            ``N x C x D x H x W`` tensor.
    """
    check_inputs(inputs, spatial_dims=SIGNALS_IMAGES_VOLUMES)
    args = () if additional_forward_args is None else additional_forward_args
    args = args if isinstance(args, tuple) else (args,)
    return inputs[:1], tuple(arg[:1] if is_per_example(arg, len(inputs)) else arg for arg in args)
