"""Insertion/deletion's batched step scoring against plain batched inference of the same model.

Both run side by side in one process on the same photo, batch size and memory layout, and
alternate for several rounds. Printed per round: plain inference in images per second (the
forward-pass limit), the metric's step images per second (ranking, step building and scoring
included), and their ratio.

Run: ``python benchmarks/metrics_throughput.py [--per-eval 2] [--images 2] [--rounds 3]``
(needs the ``examples`` extra for the pretrained EfficientNet-Lite0).
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import CountingModel, load_lite0, photo, plain_inference

from captum_polycam.metrics import InsertionDeletion


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--per-eval", type=int, default=2, help="step images per image and forward pass"
    )
    parser.add_argument("--images", type=int, default=2, help="copies of the photo per batch")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    model = load_lite0()
    counting = CountingModel(model).eval()
    inputs = photo().expand(args.images, -1, -1, -1).contiguous(memory_format=torch.channels_last)
    saliency = torch.rand(args.images, 1, 224, 224, generator=torch.Generator().manual_seed(0))
    metric = InsertionDeletion(counting, perturbations_per_eval=args.per_eval)
    metric(inputs, saliency)  # warm-up

    threads, batch = torch.get_num_threads(), args.per_eval * args.images
    print(
        f"EfficientNet-Lite0, insertion + deletion, 224 steps, {args.images} images, "
        f"batch {batch}, {threads} CPU threads"
    )
    ratios = []
    for round_ in range(1, args.rounds + 1):
        counting.images = 0
        start = time.perf_counter()
        metric(inputs, saliency)
        metric_seconds = time.perf_counter() - start
        steps = counting.images - args.images  # less the clean pass that picks the targets
        plain_seconds = plain_inference(model, inputs[:1], counting.images, batch)
        metric_rate, plain_rate = counting.images / metric_seconds, counting.images / plain_seconds
        ratios.append(metric_rate / plain_rate)
        print(
            f"round {round_}: plain {plain_rate:6.1f} images/s | metric {metric_rate:6.1f} "
            f"forward passes/s ({steps} step images, {metric_seconds:5.1f} s) "
            f"| ratio {ratios[-1]:.3f}"
        )
    print(
        f"median ratio (metric forwards/s / plain images/s): {sorted(ratios)[len(ratios) // 2]:.3f}"
    )


if __name__ == "__main__":
    main()
