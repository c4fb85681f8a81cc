"""The evaluation pipeline against the same work done with the metric classes alone.

Both run side by side in one process on the same images (the four bundled photos), model,
methods, batches and protocol, alternating for several rounds. The loop by hand holds the
preprocessed images in memory and calls each method and ``InsertionDeletion`` and
``ConfidenceChange`` on every batch; the pipeline (``evaluate``) also reads and decodes the
images, finds the layers, checks the folder, writes every shard and merges the artefacts
(npz, csv, summary, curves.png). Printed per round: both times and their ratio (the pipeline's
overhead is the ratio less 1).

Run: ``python benchmarks/evaluation_overhead.py [--methods pcam+,gradcam,random] [--rounds 2]``
(needs the ``examples`` extra for the pretrained EfficientNet-Lite0).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from _common import load_lite0

from captum_polycam import ConfidenceChange, InsertionDeletion, describe_layers
from captum_polycam.evaluation import EvaluationConfig, build_methods, evaluate
from captum_polycam.resources import ImageFolder
from captum_polycam.resources.images import bundled_folder


def by_hand(model: torch.nn.Module, folder: ImageFolder, config: EvaluationConfig) -> float:
    """Seconds for the maps and metrics of every batch, the images already in memory."""
    inputs = torch.stack([sample.inputs for sample in folder])
    start = time.perf_counter()
    layers = [layer.name for layer in describe_layers(model, inputs[:1])]
    runs = build_methods(config.methods, model, layers)
    insertion_deletion = InsertionDeletion(model, config.n_steps)
    confidence = ConfidenceChange(model)
    for batch in inputs.split(config.batch_size):
        with torch.no_grad():
            targets = model(batch).argmax(dim=1)
        for run in runs:
            for maps in run.explain(batch, targets).maps.values():
                insertion_deletion(batch, maps, targets)
                confidence(batch, maps, targets)
    return time.perf_counter() - start


def pipeline(model: torch.nn.Module, config: EvaluationConfig) -> float:
    """Seconds for ``evaluate`` on the bundled folder, into a new output folder."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        evaluate(bundled_folder(), Path(out) / "run", config, model=model, device="cpu")
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="pcam+,gradcam,random")
    parser.add_argument("--steps", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    model = load_lite0()
    config = EvaluationConfig(
        methods=tuple(args.methods.split(",")), n_steps=args.steps, batch_size=args.batch_size
    )
    folder = ImageFolder(bundled_folder(), preprocessing=config.preprocessing)
    print(
        f"EfficientNet-Lite0, {len(folder)} bundled photos, methods {args.methods}, "
        f"{args.steps} steps, batch {args.batch_size}, {torch.get_num_threads()} CPU threads"
    )
    ratios = []
    for round_ in range(1, args.rounds + 1):
        hand = by_hand(model, folder, config)
        whole = pipeline(model, config)
        ratios.append(whole / hand)
        print(
            f"round {round_}: metric classes alone {hand:6.1f} s | pipeline {whole:6.1f} s "
            f"| ratio {ratios[-1]:.3f}"
        )
    print(f"median ratio (pipeline / metric classes): {sorted(ratios)[len(ratios) // 2]:.3f}")


if __name__ == "__main__":
    main()
