"""Localisation of Poly-CAM's variants, Grad-CAM, random and the centre prior, against boxes
drawn by hand, and what the localisation metrics cost beside a map, side by side in one run.

On the four bundled photos (``captum_polycam/assets/boxes.csv``) and, where the folder is
there, the 25 ImageNet photos of ``../shared/photos/imagenet-25`` (``benchmarks/data/
imagenet25_boxes.csv``; development data, never copied into the package), with the pretrained
EfficientNet-Lite0 and the paper's preprocessing: each method's map of each photo's top-1
class (four photos per call, as ``evaluate`` explains its batches), then the pointing game
(tolerance 15), the energy in the boxes and the box accuracy (IoU 0.5, each method at its best
threshold over the photos), as ``captum-polycam evaluate --boxes`` computes them. The bundled
CSV names no class, so every box of a bundled photo counts; ImageNet's rows name their wnid, so
a photo whose top-1 class is not its label is left out and counted.

The cost line compares the seconds the three metrics take on all the maps of a method with the
seconds those maps took: the metrics need no forward pass.

Run: ``python benchmarks/localisation.py [--methods pcam+,pcam-,pcam+-,gradcam,random]
[--sets bundled,imagenet-25]``. Run nothing else beside it (on a 2-core machine a second
PyTorch job makes every figure several times slower).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from captum_polycam import describe_layers, tune_cpu_allocator
from captum_polycam.evaluation.localisation import BatchTruth, carry, measure
from captum_polycam.evaluation.methods import build_methods, centre_prior
from captum_polycam.metrics import BoxAccuracy, EnergyPointingGame, PointingGame, best_threshold
from captum_polycam.metrics.keys import BOX_ACCURACY, ENERGY_POINTING_GAME, POINTING_GAME
from captum_polycam.perturbation.options import ScoringOptions
from captum_polycam.resources import ImageFolder, Preprocessing, load_model, read_ground_truth
from captum_polycam.resources.images import bundled_boxes, bundled_folder

ROOT = Path(__file__).resolve().parents[1]
SETS = {
    "bundled": (bundled_folder(), bundled_boxes()),
    "imagenet-25": (
        ROOT.parent / "shared" / "photos" / "imagenet-25",
        ROOT / "benchmarks" / "data" / "imagenet25_boxes.csv",
    ),
}
_Z95 = 1.959963984540054
# Photos explained together: the fastest batch of this model on a 2-core CPU, as evaluate's.
_BATCH = 4


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cell(values: np.ndarray) -> str:
    measured = values[~np.isnan(values)]
    if not len(measured):
        return "n/a"
    half = _Z95 * measured.std(ddof=1) / np.sqrt(len(measured)) if len(measured) > 1 else 0.0
    return f"{measured.mean():.2f} ± {half:.2f}"


def _row(name: str, values: dict[str, np.ndarray], thresholds: np.ndarray) -> str:
    hits = values[BOX_ACCURACY]
    measured = hits[~np.isnan(hits).any(axis=1)]
    best = best_threshold(measured.mean(axis=0), thresholds).index
    return (
        f"| {name} | {_cell(values[POINTING_GAME])} | {_cell(values[ENERGY_POINTING_GAME])} | "
        f"{_cell(hits[:, best])} | {thresholds[best]:.2f} | {len(measured)} |"
    )


def evaluate_set(
    name: str, folder: Path, boxes: Path, methods: list[str], model: torch.nn.Module
) -> None:
    photos = ImageFolder(folder)
    annotations, missing = read_ground_truth(boxes).match(photos.names)
    samples = [photos[index] for index in range(len(photos))]
    inputs = torch.stack([sample.inputs for sample in samples])  # type: ignore[misc]
    with torch.no_grad():
        targets = torch.cat([model(chunk).argmax(dim=1) for chunk in inputs.split(8)])
    truth: BatchTruth = carry(
        [annotations.get(sample.name) for sample in samples],
        [sample.size for sample in samples],
        targets,
        Preprocessing(),
        masks=False,
    )
    layers = [layer.name for layer in describe_layers(model, inputs[:1])]
    options = ScoringOptions().fixed(inputs.device, _BATCH)
    runs = build_methods(methods, model, layers, options=options)
    metrics = (PointingGame(), EnergyPointingGame(), BoxAccuracy())
    thresholds = metrics[2].thresholds.numpy()
    excluded = [note for note in truth.notes if note]
    print(
        f"\n## {name}: {len(samples)} photos, {len(samples) - len(excluded)} with boxes of their "
        f"top-1 class ({len(missing)} without a row, {len(excluded)} left out)"
    )
    print("\n| method | pointing game | energy in boxes | box accuracy | best threshold | photos |")
    print("|---|---|---|---|---|---|")
    costs = []
    for run in runs:
        started = time.perf_counter()
        maps: dict[str, list[torch.Tensor]] = {method.name: [] for method in run.methods}
        for batch, batch_targets in zip(inputs.split(_BATCH), targets.split(_BATCH), strict=True):
            for method, batch_maps in run.explain(batch, batch_targets).maps.items():
                maps[method].append(batch_maps)
        map_seconds = time.perf_counter() - started
        for method, parts in maps.items():
            started = time.perf_counter()
            values = measure(truth, torch.cat(parts), *metrics)
            costs.append((method, time.perf_counter() - started, map_seconds / len(maps)))
            print(_row(method, values, thresholds))
    prior = measure(truth, centre_prior(len(samples), Preprocessing().size), *metrics)
    print(_row("centre (prior)", prior, thresholds))
    print("\nCost of the three metrics on all the photos' maps, beside the maps themselves:")
    for method, metric_seconds, map_seconds in costs:
        print(
            f"  {method}: metrics {metric_seconds:.3f} s, maps {map_seconds:.1f} s, ratio "
            f"{metric_seconds / map_seconds:.4f}"
        )
    if excluded:
        print("\nLeft out: " + "; ".join(sorted(set(excluded))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="pcam+,pcam-,pcam+-,gradcam,random")
    parser.add_argument("--sets", default="bundled,imagenet-25")
    args = parser.parse_args()
    tune_cpu_allocator()
    model = load_model("efficientnet-lite0", "cpu")[0]
    print(
        f"EfficientNet-Lite0, CPU: {_cpu_name()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}"
    )
    for name in args.sets.split(","):
        folder, boxes = SETS[name]
        if not folder.is_dir():
            print(f"\n## {name}: skipped, {folder} is not here")
            continue
        evaluate_set(name, folder, boxes, args.methods.split(","), model)


if __name__ == "__main__":
    main()
