"""Captum's argument conventions, written once for every method and metric: the inputs and
their 1-tuple form, which forward arguments follow their example, integers (NumPy's included),
the model behind a forward function and the errors of inputs it cannot take, evaluation mode,
giving a model back as it came, and seeding random work without disturbing the caller's
random streams."""

from __future__ import annotations

import operator
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "as_int",
    "buffers_kept",
    "check_inputs",
    "check_int",
    "evaluation_mode",
    "input_errors_explained",
    "is_per_example",
    "module_of",
    "seeded",
    "unpack_single",
]

_KINDS = {1: "a positive int", 0: "a non-negative int", None: "an int"}


def as_int(value: Any) -> int | None:
    """``value`` as a Python int if it is an integer scalar, else ``None``.

    An int, a NumPy integer (``np.int64(1)``, what indexing an array gives) or a 0-d NumPy
    integer array: whatever ``operator.index`` takes, but a bool (``True`` is not meant as 1)
    or a tensor, whose own rules (one entry per example) belong to the caller.
    """
    if isinstance(value, (bool, Tensor)):
        return None
    try:
        return operator.index(value)
    except TypeError:  # a float, a NumPy bool, an array of more than one value, ...
        return None


def check_int(
    name: str,
    value: Any,
    least: int | None = 1,
    *,
    none: bool = False,
    error: type[ValueError] = ValueError,
) -> int | None:
    """``value`` as a Python int, or a clear ``error`` naming ``name``.

    Args:
        name: The argument, as the error names it.
        value: An int or a NumPy integer (see :func:`as_int`; a bool is not one).
        least: The smallest value allowed: 1, 0, or ``None`` for any.
        none: Whether ``None`` is allowed (and returned).
        error: The exception raised, a ``ValueError``.

    Returns:
        ``value`` as a plain ``int`` (so that it prints, compares and serialises as one), or
        ``None`` where ``none`` allows it.
    """
    if value is None and none:
        return None
    number = as_int(value)
    if number is None or (least is not None and number < least):
        expected = _KINDS[least] + " or None" * none
        raise error(f"{name} must be {expected}; got {value!r}")
    return number


def unpack_single(value: Any, name: str) -> tuple[Any, bool]:
    """``(tensor, was_tuple)`` for a tensor or Captum's 1-tuple form ``(tensor,)``."""
    if isinstance(value, tuple):
        if len(value) != 1:
            raise TypeError(
                f"{name} must be a tensor or a 1-tuple holding one (Captum's tuple form); "
                f"got a {len(value)}-tuple: Poly-CAM and its metrics explain one input tensor"
            )
        return value[0], True
    return value, False


# The inputs' layouts by number of spatial dimensions: signals, images and volumes.
_LAYOUTS = {1: "N x C x L", 2: "N x C x H x W", 3: "N x C x D x H x W"}
# What the method takes: signals, images and volumes.
SIGNALS_IMAGES_VOLUMES = (1, 2, 3)


def check_inputs(inputs: Any, *, spatial_dims: tuple[int, ...] = (2,)) -> Tensor:
    """``inputs`` if it is a non-empty, finite float tensor with a batch dimension and, unless
    ``spatial_dims`` is empty, a channel axis and that many spatial dimensions (``(2,)``:
    ``N x C x H x W`` images); otherwise a clear error naming ``inputs``."""
    if not isinstance(inputs, Tensor):
        raise TypeError(f"inputs must be a torch.Tensor; got {type(inputs).__name__}")
    if spatial_dims and (inputs.dim() - 2 not in spatial_dims or not inputs.is_floating_point()):
        forms = [f"{dims + 2}-D float tensor {_LAYOUTS[dims]}" for dims in spatial_dims]
        expected = ", ".join(forms[:-1]) + (" or " if len(forms) > 1 else "") + forms[-1]
        raise ValueError(f"inputs must be a {expected}; got {inputs.dim()}-D {inputs.dtype}")
    if not inputs.is_floating_point():
        raise TypeError(f"inputs must be a float tensor; got dtype {inputs.dtype}")
    if inputs.dim() == 0:
        raise ValueError("inputs must have a batch dimension; got a 0-D tensor")
    if inputs.shape[0] == 0:
        raise ValueError("inputs is an empty batch")
    if not bool(torch.isfinite(inputs).all()):
        raise ValueError("inputs contains NaN or Inf values")
    return inputs


def is_per_example(value: Any, count: int) -> bool:
    """Whether ``value`` holds one row per example of a batch of ``count``, as Captum reads
    ``additional_forward_args``: a tensor of at least one dimension whose first is ``count``.
    Such values are cut, repeated and reordered with their examples; others pass as they are."""
    return isinstance(value, Tensor) and value.dim() > 0 and len(value) == count


def module_of(forward_func: Callable[..., Any]) -> nn.Module | None:
    """The ``nn.Module`` behind ``forward_func`` (itself, or the owner of a bound method)."""
    if isinstance(forward_func, nn.Module):
        return forward_func
    owner = getattr(forward_func, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


# The convolution that reads inputs of each number of dimensions (batch and channels included).
_CONVOLUTIONS: dict[int, type[nn.Module]] = {3: nn.Conv1d, 4: nn.Conv2d, 5: nn.Conv3d}


def _first_convolution(model: nn.Module) -> tuple[str, nn.Module, int] | None:
    """The first 1-D, 2-D or 3-D convolution registered in ``model``, with its name and its
    inputs' number of dimensions, where its input channels are known (a lazy one's are not
    until it has run): where a CNN reads its input."""
    for name, module in model.named_modules():
        for dims, kind in _CONVOLUTIONS.items():
            if isinstance(module, kind) and module.in_channels > 0:
                return name, module, dims
    return None


def _input_mismatch(forward_func: Callable[..., Any], inputs: Tensor) -> Exception | None:
    """A clear error when ``inputs`` cannot be what the model takes (another dtype or device
    than its parameters, other dimensions or channels than its first convolution's), else
    ``None``."""
    model = module_of(forward_func)
    if model is None:
        return None
    parameter = next((p for p in model.parameters() if p.is_floating_point()), None)
    if parameter is not None and parameter.dtype != inputs.dtype:
        return TypeError(
            f"inputs are {inputs.dtype} but the model's parameters are {parameter.dtype}: "
            f"convert the inputs with inputs.to({parameter.dtype}) or the model with "
            f"model.to({inputs.dtype})"
        )
    if parameter is not None and parameter.device != inputs.device:
        return ValueError(
            f"inputs are on {inputs.device} but the model's parameters are on "
            f"{parameter.device}: move the inputs with inputs.to('{parameter.device}')"
        )
    first = _first_convolution(model)
    if first is None:
        return None
    name, convolution, dims = first
    if dims != inputs.dim():
        layout = _LAYOUTS.get(inputs.dim() - 2, "")
        hint = " (one example without its batch axis? add it: inputs[None])" if dims == 4 else ""
        return ValueError(
            f"inputs are {inputs.dim()}-D {layout} but the model's first convolution, "
            f"{name or type(convolution).__name__}, a {type(convolution).__name__}, takes "
            f"{dims}-D {_LAYOUTS[dims - 2]} inputs{hint}"
        )
    if inputs.shape[1] != convolution.in_channels:
        given, expected = inputs.shape[1], convolution.in_channels
        hint = " (convert grayscale or RGBA images to RGB)" if expected == 3 else ""
        return ValueError(
            f"inputs have {given} channels but the model's first convolution, "
            f"{name or type(convolution).__name__}, takes {expected}: give the inputs "
            f"{expected} channels, in dimension 1{hint}"
        )
    return None


@contextmanager
def input_errors_explained(forward_func: Callable[..., Any], inputs: Tensor) -> Iterator[None]:
    """Run a forward pass of ``inputs`` (the clean pass, or the pass that discovers layers),
    turning the error torch raises on inputs the model cannot take into one naming ``inputs``.

    The explanation is looked for only once the pass has failed: a model may well take inputs
    of another dtype than its parameters, or fewer channels than its first convolution, if it
    converts them itself.

    Raises:
        TypeError: The inputs are of another dtype than the model's parameters.
        ValueError: They are on another device, or have other dimensions or channels than the
            model's first convolution takes.
        RuntimeError: Any other failure, as it was. The explained errors keep torch's as their
            cause.
    """
    try:
        yield
    # An image without its batch axis runs through 2-D convolutions as an unbatched one, and
    # fails later, often on an index.
    except (RuntimeError, IndexError) as error:
        mismatch = _input_mismatch(forward_func, inputs)
        if mismatch is not None:
            raise mismatch from error
        raise


# Which thread keeps each model's buffers (buffers_kept), so that two threads never interleave
# their copies and restores of one model.
_KEEPERS: weakref.WeakKeyDictionary[nn.Module, int] = weakref.WeakKeyDictionary()
_KEEPERS_LOCK = threading.Lock()


@contextmanager
def buffers_kept(model: nn.Module | None) -> Iterator[None]:
    """Run forward passes of ``model`` and give every buffer back as it was, bit for bit.

    In training mode a forward pass updates buffers (batch norm's ``running_mean``,
    ``running_var`` and ``num_batches_tracked``): thousands of perturbed passes would move them
    far from what the model learnt. Their values are copied first and written back afterwards,
    into the same tensors, however the passes end; the passes themselves run in the model's
    own mode. A model with no module in training mode is left alone: torch's modules update no
    buffer in evaluation mode, and concurrent calls need no copy.

    Nested uses in one thread copy once. Another thread cannot run a model in training mode
    while its buffers are kept: the restores of two threads would interleave.

    Raises:
        RuntimeError: ``model`` is in training mode and another thread is running it here.
    """
    if model is None or not any(module.training for module in model.modules()):
        yield
        return
    thread = threading.get_ident()
    with _KEEPERS_LOCK:
        keeper = _KEEPERS.get(model)
        if keeper is None:
            _KEEPERS[model] = thread
    if keeper == thread:  # an outer call of this thread keeps them already
        yield
        return
    if keeper is not None:
        raise RuntimeError(
            f"the model ({type(model).__name__}) is in training mode and another thread is "
            "running it through captum-polycam, which gives its buffers back after each call: "
            "concurrent calls would undo each other's. Call model.eval() first, or give each "
            "thread its own copy of the model (copy.deepcopy(model))"
        )
    # A module may also replace a buffer rather than update it in place: put the tensor back.
    saved = [
        (module, name, buffer, buffer.clone())
        for module in model.modules()
        for name, buffer in module._buffers.items()
        if buffer is not None
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for module, name, buffer, copy in saved:
                module._buffers[name] = buffer
                buffer.copy_(copy)
        with _KEEPERS_LOCK:
            del _KEEPERS[model]


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """Run ``model`` in evaluation mode, then give every module back its own training flag.

    A look at the model must not change it: in training mode a forward pass would update
    batch-norm statistics.
    """
    modes = {module: module.training for module in model.modules()}
    try:
        model.eval()
        yield
    finally:
        for module, training in modes.items():
            module.training = training


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the generators that ``device``'s work draws from, restoring them afterwards, so
    that the work is reproducible and leaves the caller's random streams where they were."""
    cuda = []
    if device.type == "cuda":
        cuda = [torch.cuda.current_device() if device.index is None else device.index]
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        for index in cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield
