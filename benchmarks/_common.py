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


def plain_inference(
    model: nn.Module,
    x: Tensor,
    images: int,
    batch: int,
    *,
    channels_last: bool = True,
    precision: str = "fp32",
) -> float:
    """Seconds to run ``images`` copies of ``x`` through the model, ``batch`` at a time."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    batch_input = x.expand(batch, -1, -1, -1).contiguous(memory_format=layout)
    lowered = precision != "fp32"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    start = time.perf_counter()
    with torch.no_grad(), torch.autocast(x.device.type, dtype=dtype, enabled=lowered):
        for done in range(0, images, batch):
            model(batch_input[: min(batch, images - done)])
    return time.perf_counter() - start


def fastest_plain_inference(
    model: nn.Module, x: Tensor, precision: str = "fp32", images: int = 64
) -> tuple[int, bool]:
    """The batch size (1 to 32) and layout (channels-last or not) in which plain inference of
    ``x`` runs fastest, each timed on ``images`` images after a warm-up pass."""
    rates = {}
    for channels_last in (False, True):
        for batch in (1, 2, 4, 8, 16, 32):
            plain_inference(
                model, x, batch, batch, channels_last=channels_last, precision=precision
            )
            seconds = plain_inference(
                model, x, images, batch, channels_last=channels_last, precision=precision
            )
            rates[batch, channels_last] = images / seconds
    return max(rates, key=rates.__getitem__)
