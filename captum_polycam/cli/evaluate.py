"""``captum-polycam evaluate``: the paper's evaluation on a folder of images, from the shell.

Example::

    captum-polycam evaluate --images val --image-list images.txt --model resnet50 \\
        --methods pcam+-,gradcam,ig --out results
    torchrun --nproc_per_node 4 -m captum_polycam evaluate ...   # the same, on 4 processes
    captum-polycam evaluate --images scans --labels labels.txt --model nets:ct_classifier \\
        --window -1000 400 --size 64 64 64 --methods pcam+,gradcam --out ct-results
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from captum_polycam.cli.arguments import (
    MAX_VOLUME_SIDE,
    add_device_option,
    add_intensity_options,
    add_layers_option,
    add_model_option,
    add_perturbations_option,
    add_reshape_option,
    add_run_options,
    check_device,
    check_outputs,
    comma_list,
    image_side,
    layer_names,
    non_negative_int,
    positive_int,
    volume_intensity,
)
from captum_polycam.evaluation.datasets import holds_scans
from captum_polycam.evaluation.methods import BASELINES
from captum_polycam.evaluation.pipeline import DEFAULT_METHODS, EvaluationConfig, evaluate
from captum_polycam.perturbation.options import PRECISIONS
from captum_polycam.resources.errors import EvaluationError
from captum_polycam.resources.ground_truth import FORMATS
from captum_polycam.resources.images import (
    SIZE,
    Preprocessing,
    bundled_boxes,
    bundled_folder,
    check_channel_values,
    read_classes,
)
from captum_polycam.resources.volumes import SUFFIXES, VolumeIntensity

__all__ = ["add_parser", "run"]


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(value) for value in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None


def _statistics(text: str, name: str, positive: bool) -> tuple[float, ...]:
    values = _floats(text)
    try:
        check_channel_values(name, values, positive=positive)
    except EvaluationError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return values


def _mean(text: str) -> tuple[float, ...]:
    """``--mean``: three finite numbers."""
    return _statistics(text, "mean", positive=False)


def _std(text: str) -> tuple[float, ...]:
    """``--std``: three finite numbers above 0."""
    return _statistics(text, "std", positive=True)


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``evaluate`` subcommand."""
    parser = commands.add_parser(
        "evaluate",
        help="evaluate saliency methods on a folder of images or scans (the paper's protocol)",
        description="Compute each method's maps on every image (or scan), their insertion and "
        "deletion "
        "curves, average drop, increase in confidence, (on a subset) max-sensitivity and (with "
        "--boxes) the pointing game, the energy in the boxes and the box accuracy; write "
        "the paper's .npz and .csv artefacts, a summary and the mean curves. A run stopped at "
        "any moment continues when the same command is run again.",
    )
    parser.add_argument(
        "--images",
        type=Path,
        metavar="DIR",
        help="folder of JPEG or PNG images, or of scans (.nii, .nii.gz, .npy), one kind only "
        "(default: the four bundled photographs)",
    )
    parser.add_argument(
        "--image-list",
        type=Path,
        metavar="FILE",
        help="file names to use, one a line (as the paper's images.txt; default: all)",
    )
    parser.add_argument(
        "--labels",
        type=Path,
        metavar="FILE",
        help="'file_name class_index' lines (as the paper's imagenet_validation_imagename_labels"
        ".txt)",
    )
    parser.add_argument(
        "--boxes",
        type=Path,
        metavar="PATH",
        help="ground truth for the localisation metrics: a folder of ImageNet or VOC XML files, "
        "ImageNet's LOC_val_solution.csv, a COCO instances JSON, an image,x1,y1,x2,y2[,class] "
        "CSV, or a folder of binary masks (default: none; with the bundled photographs, their "
        "bundled boxes)",
    )
    parser.add_argument(
        "--boxes-format",
        choices=FORMATS,
        help="the format of --boxes (default: recognised from what the path is)",
    )
    parser.add_argument(
        "--box-classes",
        type=Path,
        metavar="FILE",
        help="'label class_index' lines: the model's class of each label of --boxes, for labels "
        "other than ImageNet wnids and class indices (default: those map by themselves, and "
        "where the labels name no model class every box counts)",
    )
    parser.add_argument(
        "--target",
        choices=("top1", "label"),
        default="top1",
        help="explain the model's top-1 class (the paper's) or the label (default: %(default)s)",
    )
    add_model_option(parser)
    parser.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        metavar="A,B,...",
        help="pcam+, pcam-, pcam+- (options :no-lnorm, :budgetF, :stageK, :layerK), "
        f"{', '.join(BASELINES)}, or package.module:callable (default: "
        f"{','.join(DEFAULT_METHODS)})",
    )
    add_layers_option(parser, "one per resolution, discovered")
    add_reshape_option(parser)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("captum-polycam-evaluation"),
        metavar="DIR",
        help="output folder; rerunning into it resumes (default: %(default)s)",
    )
    parser.add_argument(
        "--steps",
        type=positive_int,
        default=224,
        metavar="N",
        help="insertion and deletion steps (default: the paper's %(default)s)",
    )
    parser.add_argument(
        "--baseline",
        choices=("blur", "zeros", "mean"),
        default="blur",
        help="insertion's start and deletion's end (default: the paper's Gaussian blur)",
    )
    parser.add_argument(
        "--sensitivity-images",
        type=non_negative_int,
        default=0,
        metavar="K",
        help="max-sensitivity on the first K images; each costs 10 more maps (default: 0)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=8,
        metavar="N",
        help="images attributed together, the unit of resuming (default: %(default)s)",
    )
    parser.add_argument(
        "--size",
        type=image_side,
        nargs="+",
        metavar="SIDE",
        help="photos are squashed to H W, not cropped (default: 224 224); scans are resampled "
        "trilinearly to D H W (default: each scan's own size, the same for all)",
    )
    parser.add_argument(
        "--mean",
        type=_mean,
        metavar="R,G,B",
        help="photos' normalisation mean (default: ImageNet's)",
    )
    parser.add_argument(
        "--std",
        type=_std,
        metavar="R,G,B",
        help="photos' normalisation standard deviation (default: ImageNet's)",
    )
    add_intensity_options(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random parts")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="type of the masked and perturbed forward passes, under autocast; fp32 is the "
        "paper's (default: %(default)s)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="run those passes through torch.compile: a warm-up first, faster on long runs",
    )
    add_device_option(parser)
    add_run_options(parser)
    parser.add_argument(
        "--workers",
        type=non_negative_int,
        default=1,
        metavar="N",
        help="processes reading images while the model runs (default: %(default)s)",
    )
    add_perturbations_option(
        parser,
        "image",
        "4 images per pass on the CPU, 64 on a GPU, fixed so that reruns agree",
    )
    return parser


def _preprocessing(args: argparse.Namespace, scans: bool) -> Preprocessing | VolumeIntensity:
    """How the --images become inputs: photos by --size, --mean and --std; scans by --window
    or --percentiles and --size. The options of the other kind are refused."""
    if not scans:
        for option, value in (("--window", args.window), ("--percentiles", args.percentiles)):
            if value is not None:
                raise EvaluationError(
                    f"{option}: scales scans ({', '.join(SUFFIXES)}), and the --images are photos"
                )
        size = tuple(args.size or SIZE)
        if len(size) != 2:
            raise EvaluationError(f"--size: photos take two sides, H W; got {len(size)}")
        default = Preprocessing()
        return Preprocessing(size, args.mean or default.mean, args.std or default.std)
    for option, value in (("--mean", args.mean), ("--std", args.std)):
        if value is not None:
            raise EvaluationError(
                f"{option}: normalises photos, and the --images are scans: scale them with "
                "--window or --percentiles"
            )
    if args.size is not None:
        if len(args.size) != 3:
            raise EvaluationError(f"--size: scans take three sides, D H W; got {len(args.size)}")
        if max(args.size) > MAX_VOLUME_SIDE:
            raise EvaluationError(
                f"--size: scans take at most {MAX_VOLUME_SIDE} voxels a side; got "
                f"{' '.join(map(str, args.size))}"
            )
    return volume_intensity(args, args.size)


def run(args: argparse.Namespace) -> int:
    """Run the evaluation of ``args``, print its summary; return the exit status."""
    check_device(args.device)
    given = {"--boxes-format": args.boxes_format, "--box-classes": args.box_classes}
    for option, value in given.items():
        if value is not None and args.boxes is None:
            raise EvaluationError(f"{option}: give --boxes too")
    images, boxes = args.images, args.boxes
    if images is None:  # the embedded default: the bundled photographs, with their boxes
        images = bundled_folder()
        boxes = boxes or bundled_boxes()
        print("Images: the four bundled photographs (no --images given)")
    check_outputs(
        [args.out],
        [
            ("the --images folder", images),
            ("the --image-list file", args.image_list),
            ("the --labels file", args.labels),
            ("the --boxes file", boxes),
            ("the --box-classes file", args.box_classes),
        ],
    )
    scans = holds_scans(images, args.image_list)
    preprocessing = _preprocessing(args, scans)
    if scans and ":" not in args.model:
        raise EvaluationError(
            f"--model: {args.model!r} classifies photos, and the --images are scans: give a 3D "
            "classifier as package.module:factory"
        )
    methods = tuple(comma_list(args.methods, "--methods"))
    layers = layer_names(args.layers)
    config = EvaluationConfig(
        model=args.model,
        methods=methods,
        target=args.target,
        n_steps=args.steps,
        baseline=args.baseline,
        batch_size=args.batch_size,
        sensitivity_images=args.sensitivity_images,
        layers=layers,
        reshape=args.reshape,
        preprocessing=preprocessing,
        seed=args.seed,
        precision=args.precision,
        compile=args.compile,
        boxes=boxes,
        boxes_format=args.boxes_format,
        box_classes=None
        if args.box_classes is None
        else read_classes(args.box_classes, "--box-classes", "label"),
    )
    started = time.perf_counter()
    report = evaluate(
        images,
        args.out,
        config,
        image_list=args.image_list,
        labels=args.labels,
        device=args.device,
        num_workers=args.workers,
        perturbations_per_eval=args.perturbations_per_eval,
        show_progress=not args.quiet,
    )
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one process reports
        print(f"\n{report.markdown}")
        print(f"Artefacts: {args.out}/ ({time.perf_counter() - started:.0f} s)")
    return 0
