"""``captum-polycam explain-detection``: a Poly-CAM map for each box an object detector finds.

Example::

    captum-polycam explain-detection street.jpg --model fasterrcnn_resnet50_fpn_v2
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from captum_polycam import DetectionBoxScore
from captum_polycam.cli.arguments import (
    add_device_option,
    add_figure_option,
    add_layers_option,
    add_pass_budget_option,
    add_perturbations_option,
    add_reshape_option,
    add_run_options,
    add_variant_option,
    check_device,
    check_min_fidelity_option,
    layer_names,
    positive_int,
)
from captum_polycam.cli.figure import check_figure_path, save_detection_figure
from captum_polycam.cli.steps import timed_polycam, writing_figure
from captum_polycam.evaluation.config import checked_layers
from captum_polycam.resources.errors import EvaluationError
from captum_polycam.resources.images import read_image
from captum_polycam.resources.models import load_detector

__all__ = ["add_parser", "run"]

DEFAULT_DETECTOR = "fasterrcnn_mobilenet_v3_large_320_fpn"


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``explain-detection`` subcommand."""
    parser = commands.add_parser(
        "explain-detection",
        help="explain the boxes an object detector finds in an image",
        description="Find objects with a torchvision detector, explain each box above a score "
        "threshold with Poly-CAM, and save a figure of the boxes and their maps.",
    )
    parser.add_argument("image", type=Path, metavar="IMAGE", help="JPEG, PNG, WebP or GIF file")
    parser.add_argument(
        "--model",
        default=DEFAULT_DETECTOR,
        metavar="NAME",
        help="a torchvision detector such as fasterrcnn_resnet50_fpn_v2 (COCO weights "
        "downloaded or cached) or package.module:callable returning one (default: %(default)s)",
    )
    parser.add_argument(
        "--score-threshold",
        type=float,
        default=0.5,
        metavar="S",
        help="explain the detections at least this confident (default: %(default)s)",
    )
    parser.add_argument(
        "--max-detections",
        type=positive_int,
        default=5,
        metavar="N",
        help="explain at most the N most confident detections (default: %(default)s)",
    )
    # PCAM- by default: hiding a region is what a detector notices; unveiling a single
    # channel's region rarely lets it find the object at all.
    add_variant_option(parser, "minus")
    add_layers_option(parser, "discovered in the backbone")
    add_figure_option(parser, "detections.png")
    add_device_option(parser)
    add_run_options(parser)
    add_pass_budget_option(parser)
    add_reshape_option(parser)
    add_perturbations_option(parser, "detection", "the fastest, measured on the first passes")
    return parser


def run(args: argparse.Namespace) -> int:
    """Detect, explain each detection and save the figure; return the exit status."""
    check_device(args.device)
    check_min_fidelity_option(args)
    if not 0.0 <= args.score_threshold <= 1.0:
        raise EvaluationError(f"--score-threshold must be in [0, 1]; got {args.score_threshold}")
    check_figure_path(args.out, [("the image", args.image)])
    pixels = read_image(args.image, size=None)
    device = torch.device(args.device)
    model, categories = load_detector(args.model, device)
    pixels = pixels.to(device)
    with torch.no_grad():
        found = _detections(model(pixels), args.model)
    # Before the detections are printed, so that a mistake in --layers fails at once.
    described = checked_layers(
        model, pixels, layer_names(args.layers), args.reshape, argument="--layers"
    )
    layers = [layer.name for layer in described]
    order = found["scores"].argsort(descending=True)[: args.max_detections]
    found = {key: found[key][order] for key in ("boxes", "labels", "scores")}
    print(f"Model: {args.model} on {device}, method: PCAM {args.variant}")
    score = DetectionBoxScore.from_detections(found, args.score_threshold)
    if len(score) == 0:
        best = f"{float(found['scores'][0]):.2f}" if len(found["scores"]) else "none"
        print(
            f"{args.image}: no detection reaches --score-threshold {args.score_threshold} "
            f"(most confident: {best}); nothing to explain",
            file=sys.stderr,
        )
        return 1
    names = [_label_name(int(label), categories) for label in score.labels]
    for name, box, confidence in zip(names, score.boxes, found["scores"], strict=False):
        corners = ", ".join(f"{value:.0f}" for value in box.tolist())
        print(f"  {name} {float(confidence):.2f} at ({corners})")

    inputs = pixels.expand(len(score), -1, -1, -1)
    print("Layers, shallow to deep: " + ", ".join(map(str, described)))
    sys.stdout.flush()
    maps = timed_polycam(
        args, model, layers, inputs, score.targets, f"{len(score)} detection(s)", score_fn=score
    ).maps
    titles = [f"{name} {float(c):.2f}" for name, c in zip(names, found["scores"], strict=False)]
    with writing_figure(args.out):
        save_detection_figure(args.out, pixels.cpu(), maps.cpu(), score.boxes.cpu(), titles)
    return 0


def _detections(output: object, model_name: str) -> Mapping[str, Tensor]:
    """The first image's detections, or a usage error saying what the model returned."""
    if (
        isinstance(output, Sequence)
        and len(output) > 0
        and isinstance(output[0], Mapping)
        and all(key in output[0] for key in ("boxes", "labels", "scores"))
    ):
        return output[0]
    if isinstance(output, Tensor):
        returned = f"a tensor of shape {tuple(output.shape)}"
    elif isinstance(output, Sequence) and output and isinstance(output[0], Mapping):
        returned = f"a list of dicts with {', '.join(map(str, output[0])) or 'no keys'}"
    else:
        returned = f"a {type(output).__name__}"
    raise EvaluationError(
        f"--model {model_name}: not an object detector: it returned {returned}; expected a "
        "list of dicts with boxes, labels and scores, one per image (explain a classifier with "
        "explain)"
    )


def _label_name(label: int, categories: list[str] | None) -> str:
    if categories is not None and 0 <= label < len(categories):
        return categories[label]
    return f"label {label}"
