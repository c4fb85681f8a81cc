"""``captum-polycam explain``: Poly-CAM maps of pretrained ImageNet classifiers, from the shell,
and of 3-D networks on scans (:mod:`captum_polycam.cli.explain_volume`), by the inputs' suffixes.

Example::

    captum-polycam explain cat.jpg dog.png --variant plus --out maps.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from captum_polycam.attr import VARIANTS
from captum_polycam.cli import explain_volume
from captum_polycam.cli.arguments import (
    add_device_option,
    add_figure_option,
    add_layers_option,
    add_model_option,
    add_pass_budget_option,
    add_perturbations_option,
    add_reshape_option,
    add_run_options,
    add_variant_option,
    add_volume_options,
    check_device,
    check_min_fidelity_option,
    layer_names,
)
from captum_polycam.cli.classes import class_scores, print_classes
from captum_polycam.cli.figure import check_figure_path, save_figure
from captum_polycam.cli.steps import timed_polycam, writing_figure
from captum_polycam.evaluation.config import checked_layers
from captum_polycam.evaluation.localisation import BatchTruth, carry, measure
from captum_polycam.metrics import BoxAccuracy, EnergyPointingGame, PointingGame
from captum_polycam.metrics.keys import BOX_ACCURACY, ENERGY_POINTING_GAME, POINTING_GAME
from captum_polycam.resources.errors import EvaluationError
from captum_polycam.resources.ground_truth import FORMATS, read_ground_truth
from captum_polycam.resources.images import Preprocessing, bundled_image, normalise, read_image
from captum_polycam.resources.models import load_model
from captum_polycam.resources.volumes import SUFFIXES

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``explain`` subcommand."""
    explain = commands.add_parser(
        "explain",
        help="explain images with a pretrained ImageNet classifier, or scans with a 3-D network",
        description="Explain each image's class with Poly-CAM and save a figure of the maps; "
        "or each scan's (.nii, .nii.gz, .npy) with a 3-D network, and save its map as a volume "
        "in the scan's space or a figure of slices.",
    )
    explain.add_argument(
        "images",
        nargs="*",
        type=Path,
        metavar="IMAGE",
        help="JPEG, PNG, WebP or GIF files (default: a bundled photo of a cat); or scans, "
        f"{', '.join(SUFFIXES)} volumes explained with a 3-D --model package.module:callable "
        "(images or scans, not both)",
    )
    add_model_option(explain)
    # PCAM+ by default: one masked pass per channel, where PCAM+- (the library's default)
    # takes twice as long.
    add_variant_option(explain, "plus")
    explain.add_argument(
        "--target",
        type=int,
        nargs="+",
        metavar="CLASS",
        help="class index to explain (ImageNet's for images, the network's output for scans): "
        "one per image or scan, or one for all (default: each one's top-1 class)",
    )
    explain.add_argument(
        "--boxes",
        type=Path,
        metavar="PATH",
        help="ground truth to draw on the figure and measure the maps against (pointing game, "
        "energy in the boxes, box accuracy), matched by file name: a folder of ImageNet or VOC "
        "XML files, LOC_val_solution.csv, a COCO JSON, an image,x1,y1,x2,y2[,class] CSV or a "
        "folder of binary masks",
    )
    explain.add_argument(
        "--boxes-format",
        choices=FORMATS,
        help="the format of --boxes (default: recognised from what the path is)",
    )
    add_figure_option(
        explain,
        "polycam.png",
        maps="for one scan, .nii.gz, .nii or .npy writes its map, in the scan's space, with "
        "a JSON record of the run beside it (map.nii.gz: map.json)",
    )
    add_device_option(explain)
    add_run_options(explain)
    add_pass_budget_option(explain)
    add_layers_option(explain, "one per resolution, discovered")
    add_reshape_option(explain)
    add_perturbations_option(explain, "image", "the fastest, measured on the first passes")
    add_volume_options(explain)
    return explain


def _check_arguments(args: argparse.Namespace, sources: list[Path]) -> None:
    """The checks that need no model, run first so that mistakes fail in a second."""
    check_device(args.device)
    if args.target is not None and len(args.target) not in (1, len(sources)):
        raise EvaluationError(
            f"--target: give one class for all images or one per image; got {len(args.target)} "
            f"classes for {len(sources)} images"
        )
    if args.boxes_format is not None and args.boxes is None:
        raise EvaluationError("--boxes-format: give --boxes too")
    check_figure_path(
        args.out,
        [("the image", source) for source in sources] + [("the --boxes file", args.boxes)],
    )


def run(args: argparse.Namespace) -> int:
    """Explain the images or scans of ``args`` and save the figure or the map; return the exit
    status."""
    check_min_fidelity_option(args)
    scans = [path for path in args.images if explain_volume.is_scan(path)]
    if scans and len(scans) < len(args.images):
        images = [str(path) for path in args.images if path not in scans]
        raise EvaluationError(
            f"IMAGE: give images or scans, not both; got the scan {str(scans[0])!r} and the "
            f"image {images[0]!r}: explain them with two commands, a 3-D --model for the scans"
        )
    if scans:
        return explain_volume.run(args)
    for option, value in (
        ("--window", args.window),
        ("--percentiles", args.percentiles),
        ("--size", args.size),
    ):
        if value is not None:
            raise EvaluationError(
                f"{option}: only for scans ({', '.join(SUFFIXES)}); images are squashed to "
                "224 x 224 and normalised with ImageNet's mean and standard deviation"
            )
    sources = args.images or [bundled_image()]
    _check_arguments(args, sources)
    pixels = torch.cat([read_image(source) for source in sources])
    names = [str(path) for path in args.images] or [f"{sources[0].name} (bundled)"]
    # The ground truth is read and matched first: its faults show before the model loads.
    annotations = None
    if args.boxes is not None:
        ground_truth = read_ground_truth(args.boxes, args.boxes_format)
        annotations, _ = ground_truth.match([source.name for source in sources])

    device = torch.device(args.device)
    model, categories = load_model(args.model, device)
    if categories is None:  # a user's model: its outputs have no names
        with torch.no_grad():
            classes = class_scores(model(normalise(pixels[:1]).to(device)), args.model).shape[-1]
        categories = [f"class {index}" for index in range(classes)]
    for target in args.target or ():
        if not 0 <= target < len(categories):
            raise EvaluationError(f"--target {target}: classes run from 0 to {len(categories) - 1}")
    inputs = normalise(pixels).to(device).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        probabilities = class_scores(model(inputs), args.model).softmax(dim=-1)
    if args.target is None:
        explained = probabilities.argmax(dim=-1).tolist()
    else:
        explained = args.target * len(sources) if len(args.target) == 1 else args.target

    found = checked_layers(
        model, inputs, layer_names(args.layers), args.reshape, argument="--layers"
    )
    layers = [layer.name for layer in found]
    sizes = ["x".join(map(str, layer.size)) for layer in found]

    # Report the classes before the attribution, which takes a while on a CPU.
    method = VARIANTS[args.variant]
    print(f"Model: {args.model} on {device}, method: {method}")
    print("Layers, shallow to deep: " + ", ".join(str(layer) for layer in found))
    for name, probs, target in zip(names, probabilities, explained, strict=True):
        print_classes(name, probs, target, categories)
    sys.stdout.flush()

    result = timed_polycam(args, model, layers, inputs, explained, f"{len(sources)} image(s)")
    maps, stages = result.maps, result.stages
    boxes = None
    if annotations is not None:
        truth = carry(
            [annotations.get(source.name) for source in sources],
            [tuple(read_image(source, size=None).shape[-2:]) for source in sources],
            torch.tensor(explained),
            Preprocessing(),
            masks=ground_truth.format == "masks",
        )
        _print_localisation(names, truth, maps)
        boxes = truth.boxes

    # Stage k fuses the k deepest layers, at the resolution of the shallowest of them.
    stage_titles = [
        f"deepest {k} layer{'s' * (k > 1)} ({sizes[-k]})" for k in range(1, len(stages) + 1)
    ]
    with writing_figure(args.out):
        save_figure(
            args.out,
            pixels,
            maps,
            stages,
            image_names=[source.name for source in sources],
            class_names=[categories[t] for t in explained],
            stage_titles=stage_titles,
            method=method,
            boxes=boxes,
        )
    return 0


def _print_localisation(names: list[str], truth: BatchTruth, maps: Tensor) -> None:
    """Each image's pointing game, energy in the ground truth and box accuracy."""
    box_accuracy = BoxAccuracy()
    values = measure(truth, maps, PointingGame(), EnergyPointingGame(), box_accuracy)
    thresholds = box_accuracy.thresholds.tolist()
    print("\nLocalisation against --boxes (in the 224 x 224 input):")
    for row, name in enumerate(names):
        if truth.notes[row]:
            print(f"  {name}: left out: {truth.notes[row]}")
            continue
        hit = values[POINTING_GAME][row]
        pointing = "undefined (a flat map)" if np.isnan(hit) else ("hit" if hit else "miss")
        energy = values[ENERGY_POINTING_GAME][row]
        hits = values[BOX_ACCURACY][row]
        at = [t for t, h in zip(thresholds, hits.tolist(), strict=True) if h == 1]
        accuracy = f"IoU >= 0.5 at {len(at)} of {len(thresholds)} thresholds" + (
            f" ({at[0]:.2f} to {at[-1]:.2f} of the maximum)" if at else ""
        )
        print(
            f"  {name}: pointing game {pointing}, energy in boxes {energy:.4f}, "
            f"box accuracy: {accuracy}"
        )
