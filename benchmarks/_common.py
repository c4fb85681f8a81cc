"""What the benchmarks share: the pretrained model, the photo, and plain batched inference."""

from __future__ import annotations

import time

import torch
from torch import Tensor, nn

from captum_polycam.resources.images import bundled_image, load_image
from captum_polycam.resources.models import DEFAULT_MODEL, load_model


def load_lite0() -> nn.Module:
    """The pretrained EfficientNet-Lite0 of the command line: eval mode, channels-last, CPU."""
    return load_model(DEFAULT_MODEL, "cpu")[0]


def photo() -> Tensor:
    """The bundled photo, as the command line reads it, in channels-last layout."""
    return load_image(bundled_image()).contiguous(memory_format=torch.channels_last)


class CountingModel(nn.Module):
    """Counts the inputs the wrapped model is run on."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.images = 0

    def forward(self, x: Tensor) -> Tensor:
        self.images += len(x)
        return self.model(x)


def plain_inference(model: nn.Module, x: Tensor, images: int, batch: int) -> float:
    """Seconds to run ``images`` copies of ``x`` through the model, ``batch`` at a time."""
    batch_input = x.expand(batch, -1, -1, -1).contiguous(memory_format=torch.channels_last)
    start = time.perf_counter()
    with torch.no_grad():
        for done in range(0, images, batch):
            model(batch_input[: min(batch, images - done)])
    return time.perf_counter() - start
