"""Choosing the layers Poly-CAM reads, and reading them.

A layer is named by a module or its dotted name, optionally followed by ``:k`` to pick the
``k``-th call (0-based, negative from the end) of a module object that a forward pass calls
several times; the default is the last call, as a forward hook sees it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["LayerLike", "discover_layers"]

LayerLike = str | nn.Module | tuple[str | nn.Module, int]

# Activation modules whose outputs are the post-activation maps Poly-CAM assumes. Custom
# activations (for example EfficientNet ports' ``MemoryEfficientSwish``) are recognised by name.
_ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Softplus,
)  # fmt: skip
_ACTIVATION_NAMES = ("relu", "swish", "silu", "gelu", "mish")
_PADDINGS = (
    nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d, nn.CircularPad2d,
)  # fmt: skip


@dataclass(frozen=True)
class LayerCall:
    """One output of one module: the ``call``-th time it runs in a forward pass."""

    name: str
    module: nn.Module
    call: int = -1

    def __str__(self) -> str:
        return self.name if self.call == -1 else f"{self.name}:{self.call}"


def resolve_layers(model: nn.Module | None, layers: Sequence[LayerLike]) -> list[LayerCall]:
    """Turn user layer references into :class:`LayerCall` objects, with clear errors."""
    if isinstance(layers, (str, nn.Module)) or (
        isinstance(layers, tuple) and len(layers) == 2 and isinstance(layers[1], int)
    ):
        layers = [layers]  # type: ignore[list-item]
    if not isinstance(layers, Sequence) or len(layers) == 0:
        raise ValueError(f"layers must be a non-empty list of modules or names; got {layers!r}")
    names = {id(module): name for name, module in model.named_modules()} if model else {}
    modules = dict(model.named_modules()) if model else {}
    resolved = []
    for layer in layers:
        call = -1
        if isinstance(layer, tuple):
            layer, call = layer
        if isinstance(layer, str):
            name, _, suffix = layer.partition(":")
            if suffix:
                try:
                    call = int(suffix)
                except ValueError:
                    raise ValueError(
                        f"layers: {layer!r} must be 'name' or 'name:call_index'"
                    ) from None
            if model is None:
                raise TypeError(
                    f"layers: the name {layer!r} needs forward_func to be an nn.Module; "
                    "pass the module itself"
                )
            if name not in modules:
                raise ValueError(f"layers: the model has no module named {name!r}")
            resolved.append(LayerCall(name, modules[name], call))
        elif isinstance(layer, nn.Module):
            name = names.get(id(layer), type(layer).__name__)
            resolved.append(LayerCall(name, layer, call))
        else:
            raise TypeError(
                f"layers: expected a module, a dotted name or (module, call); got {layer!r}"
            )
    return resolved


@contextmanager
def _hooks(handles: list[torch.utils.hooks.RemovableHandle]) -> Iterator[None]:
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def capture_activations(
    forward: Callable[[], Any], layers: Sequence[LayerCall]
) -> tuple[Any, list[Tensor]]:
    """Run ``forward()`` once and return its output with a copy of each layer's output.

    The copy is taken when the module returns, so in-place operations later in the forward
    pass (residual sums, in-place activations) do not alter it.
    """
    calls: dict[int, int] = {}
    captured: dict[int, list[Tensor]] = {}

    def hook(module: nn.Module, _args: Any, output: Any) -> None:
        calls[id(module)] = calls.get(id(module), 0) + 1
        captured.setdefault(id(module), []).append(
            output.detach().clone() if isinstance(output, Tensor) else output
        )

    unique = {id(layer.module): layer.module for layer in layers}
    handles = [module.register_forward_hook(hook) for module in unique.values()]
    with _hooks(handles):
        output = forward()

    activations = []
    for layer in layers:
        outputs = captured.get(id(layer.module), [])
        if not outputs:
            raise ValueError(f"layers: {layer} is never called in the forward pass")
        if not -len(outputs) <= layer.call < len(outputs):
            raise ValueError(
                f"layers: {layer} asks for call {layer.call}, but the module is called "
                f"{len(outputs)} time(s)"
            )
        activation = outputs[layer.call]
        if not isinstance(activation, Tensor) or activation.dim() != 4:
            shape = tuple(activation.shape) if isinstance(activation, Tensor) else type(activation)
            raise ValueError(
                f"layers: the output of {layer} must be an N x C x h x w tensor; got {shape}"
            )
        activations.append(activation)
    return output, activations


@dataclass
class _Call:
    """What the discovery pass records about one module call."""

    order: int
    name: str
    module: nn.Module
    index: int  # how many times this module ran before
    in_size: tuple[int, ...] | None = None
    output: Any = None
    block: _Call | None = None  # innermost enclosing call that is not a plain Sequential
    passes_through: bool = False  # returned its input unchanged (Identity, eval-mode Dropout)


def _spatial(value: Any) -> tuple[int, ...] | None:
    return tuple(value.shape[-2:]) if isinstance(value, Tensor) and value.dim() == 4 else None


def _is_activation(module: nn.Module) -> bool:
    name = type(module).__name__.lower()
    return isinstance(module, _ACTIVATIONS) or any(word in name for word in _ACTIVATION_NAMES)


def _has_children(module: nn.Module) -> bool:
    return next(module.children(), None) is not None


def discover_layers(
    model: nn.Module, inputs: Tensor, additional_forward_args: Any = None
) -> list[str]:
    """Pick one layer per spatial resolution, the deepest of each, from one dry forward pass.

    Every module call whose output is an ``N x C x h x w`` map with ``h x w`` more than one
    position and within the input's size (and aspect ratio, which rules out channels-last
    tensors) is a candidate. Among the candidates of a resolution the one chosen is, in order of
    preference:

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

    Args:
        model: The network. It runs once in evaluation mode; its training flags, parameters
            and buffers are left as they were.
        inputs: A batch shaped like the ones to explain; only its first example is used.
        additional_forward_args: Extra arguments of ``model`` after the input.

    Returns:
        Layer names ordered shallow to deep, ``name:k`` where the chosen output is not the last
        call of a module object. Pass them, edited or not, as ``PolyCam(model, layers=...)``.

    Example:
        >>> from torchvision.models import resnet50
        >>> discover_layers(resnet50().eval(), torch.rand(1, 3, 224, 224))
        ['relu', 'layer1', 'layer2', 'layer3', 'layer4']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module; got {type(model).__name__}")
    if not isinstance(inputs, Tensor) or inputs.dim() != 4 or inputs.shape[0] == 0:
        raise ValueError("inputs must be a non-empty N x C x H x W tensor")
    height, width = inputs.shape[-2:]
    records: list[_Call] = []
    stack: list[_Call] = []
    counts: dict[int, int] = {}

    def pre_hook(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            index = counts.get(id(module), 0)
            counts[id(module)] = index + 1
            block = next((c for c in reversed(stack) if not isinstance(c.module, nn.Sequential)),
                         None)  # fmt: skip
            stack.append(_Call(0, name, module, index, _spatial(args[0] if args else None),
                               block=block))  # fmt: skip

        return hook

    def post_hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        call = stack.pop()
        call.order, call.output = len(records), output
        # An in-place activation also returns its input, but it changed it.
        call.passes_through = bool(args) and args[0] is output and not _is_activation(module)
        records.append(call)

    handles = []
    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(pre_hook(name)))
        handles.append(module.register_forward_hook(post_hook))
    args = () if additional_forward_args is None else additional_forward_args
    args = args if isinstance(args, tuple) else (args,)
    # Per-example arguments follow the first example into the dry pass.
    args = tuple(
        arg[:1] if isinstance(arg, Tensor) and arg.dim() > 0 and len(arg) == len(inputs) else arg
        for arg in args
    )
    # Evaluation mode, so that the dry pass cannot update batch-norm statistics.
    modes = {module: module.training for module in model.modules()}
    try:
        with _hooks(handles), torch.no_grad():
            model.eval()
            model(inputs[:1], *args)
    finally:
        for module, training in modes.items():
            module.training = training

    def is_candidate(call: _Call) -> bool:
        size = _spatial(call.output)
        if size is None or math.prod(size) <= 1 or isinstance(call.module, _PADDINGS):
            return False
        h, w = size
        return h <= height and w <= width and abs(math.log((h / height) / (w / width))) < 0.5

    def is_main_path(call: _Call) -> bool:
        block = call.block
        if block is None or block.block is None:  # the model itself
            return True
        block_out = _spatial(block.output)
        return block_out is None or block.in_size == block_out or _spatial(call.output) == block_out

    # A tensor returned by nested modules is one candidate: the first call made it, the last
    # (outermost) one that did not merely pass it through names it.
    groups: dict[int, list[_Call]] = {}
    for call in records:
        if is_candidate(call):
            groups.setdefault(id(call.output), []).append(call)

    best: dict[tuple[int, ...], tuple[tuple[bool, bool, bool, int], _Call]] = {}
    main_sizes = set()
    for members in groups.values():
        producers = [call for call in members if not call.passes_through]
        if not producers:  # the model's input, handed on unchanged
            continue
        size = _spatial(members[0].output)
        main = any(is_main_path(call) for call in members)
        if main:
            main_sizes.add(size)
        key = (
            main,
            any(_is_activation(call.module) for call in members),
            any(_has_children(call.module) for call in members),
            members[0].order,
        )
        if size not in best or key > best[size][0]:
            best[size] = (key, producers[-1])

    # Shallow to deep: by decreasing resolution, then by when it was computed.
    chosen = sorted(
        (best[size] for size in main_sizes),
        key=lambda item: (-math.prod(_spatial(item[1].output) or ()), item[0][3]),
    )
    names = []
    for _, call in chosen:
        last = counts[id(call.module)] - 1
        names.append(call.name if call.index == last else f"{call.name}:{call.index}")
    return names
