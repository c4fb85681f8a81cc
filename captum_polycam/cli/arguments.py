"""Argument types and options that several subcommands share."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from captum_polycam.attr import VARIANTS
from captum_polycam.attr.capture import reshape_function
from captum_polycam.resources.errors import EvaluationError
from captum_polycam.resources.models import DEFAULT_MODEL
from captum_polycam.resources.volumes import DEFAULT_PERCENTILES, VolumeIntensity

__all__ = [
    "MAX_IMAGE_SIDE",
    "MAX_THREADS",
    "MAX_VOLUME_SIDE",
    "PROG",
    "add_device_option",
    "add_figure_option",
    "add_intensity_options",
    "add_layers_option",
    "add_model_option",
    "add_pass_budget_option",
    "add_perturbations_option",
    "add_reshape_option",
    "add_run_options",
    "add_variant_option",
    "add_volume_options",
    "check_device",
    "check_min_fidelity_option",
    "check_outputs",
    "comma_list",
    "image_side",
    "layer_names",
    "non_negative_int",
    "positive_int",
    "thread_count",
    "volume_intensity",
    "volume_side",
]

PROG = "captum-polycam"

# More threads than cores only slow PyTorch down, and the largest machines have a few hundred
# cores; far beyond that OpenMP cannot create the threads and the process dies of a
# segmentation fault ("libgomp: Thread creation failed" at 100000). A fixed cap, rather than
# one per core, keeps a command valid on every machine.
MAX_THREADS = 1024
# An 8192 x 8192 photo is already 805 MB in float32, before the model's activations and the
# masked copies; much larger sides end in an allocator's traceback instead of a usage error.
MAX_IMAGE_SIDE = 8192
# A 1024^3 volume is already 4 GiB in float32, before the network's activations and the masked
# copies: the largest inputs a 3-D network is run on are a few hundred voxels a side.
MAX_VOLUME_SIDE = 1024


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _int_between(text: str, low: int, high: int, unit: str = "") -> int:
    value = int(text)
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"must be from {low} to {high}{unit}, got {value}")
    return value


def thread_count(text: str) -> int:
    """``--threads``: from 1 to :data:`MAX_THREADS`."""
    return _int_between(text, 1, MAX_THREADS)


def image_side(text: str) -> int:
    """A side of ``--size``, in pixels: from 1 to :data:`MAX_IMAGE_SIDE`."""
    return _int_between(text, 1, MAX_IMAGE_SIDE, " pixels")


def volume_side(text: str) -> int:
    """A side of a volume's ``--size``, in voxels: from 1 to :data:`MAX_VOLUME_SIDE`."""
    return _int_between(text, 1, MAX_VOLUME_SIDE, " voxels")


def add_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        metavar="NAME",
        help=f"{DEFAULT_MODEL} (offline), a torchvision classifier such as vgg16 or resnet50 "
        "(ImageNet weights downloaded or cached), or package.module:callable returning a model "
        "(default: %(default)s)",
    )


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """``--threads`` and ``--quiet``, which every command takes."""
    parser.add_argument(
        "--threads",
        type=thread_count,
        metavar="N",
        help=f"CPU threads of PyTorch's operations, at most {MAX_THREADS} (default: PyTorch's "
        "choice, one per core); on a shared or busy machine 1 can be faster, see the "
        "troubleshooting page",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress: neither the bar on a terminal nor the status lines of a log",
    )


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="where to run the model (default: %(default)s)",
    )


def pass_budget(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        value = math.nan  # refused below, in the same words
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be 'auto' or a number in (0, 1], got {text}")
    return value


def min_fidelity(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text}")
    return value


def add_pass_budget_option(parser: argparse.ArgumentParser) -> None:
    """``--pass-budget F|auto`` and ``--min-fidelity R``: Poly-CAM's ``pass_budget`` and
    ``min_fidelity``."""
    parser.add_argument(
        "--pass-budget",
        type=pass_budget,
        metavar="F|auto",
        help="spend at most this fraction (in (0, 1]) of Poly-CAM's masked forward passes and "
        "estimate the other channels' weights: faster, approximate maps, each with its "
        "estimated fidelity; 'auto' spends as many as --min-fidelity asks (default: the "
        "exact method)",
    )
    parser.add_argument(
        "--min-fidelity",
        type=min_fidelity,
        metavar="R",
        help="with --pass-budget auto, the estimated Spearman correlation with the exact map "
        "to reach (default: 0.99)",
    )


def check_min_fidelity_option(args: argparse.Namespace) -> None:
    """A usage error for ``--min-fidelity`` without ``--pass-budget auto``, where it would do
    nothing."""
    if args.min_fidelity is not None and args.pass_budget != "auto":
        raise EvaluationError("--min-fidelity: only with --pass-budget auto, whose rounds it stops")


def add_perturbations_option(parser: argparse.ArgumentParser, per: str, default: str) -> None:
    """``--perturbations-per-eval``: masked images per ``per`` (image, detection) and pass."""
    parser.add_argument(
        "--perturbations-per-eval",
        type=positive_int,
        metavar="N",
        help=f"masked images per {per} and forward pass, as Captum's perturbations_per_eval "
        f"(default: {default}); the results do not depend on it",
    )


def reshape_name(text: str) -> str:
    try:
        reshape_function(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("reshape: ")) from None
    return text


def add_reshape_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reshape",
        type=reshape_name,
        metavar="{nhwc,tokens,package.module:callable}",
        help="how the layers' outputs become N x C x h x w maps: nhwc for channels-last stages "
        "(Swin), tokens for a square grid of tokens after the class and register tokens, or a "
        "function as pytorch-grad-cam's reshape_transform (default: they already are, as in "
        "CNNs)",
    )


def add_variant_option(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--variant",
        choices=tuple(VARIANTS),
        default=default,
        help="Poly-CAM channel weights: plus (PCAM+), minus (PCAM-) or plusminus (PCAM+-) "
        "(default: %(default)s)",
    )


def add_intensity_options(parser: argparse.ArgumentParser) -> None:
    """``--window`` or ``--percentiles`` (one of them): how scans are scaled to ``[0, 1]``, read
    by :func:`volume_intensity`."""
    intensity = parser.add_mutually_exclusive_group()
    intensity.add_argument(
        "--window",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="scans: clip the voxels to [LOW, HIGH] and scale that to [0, 1], a CT window in "
        "Hounsfield units (such as -1000 400 for a chest, 0 80 for a brain)",
    )
    intensity.add_argument(
        "--percentiles",
        type=float,
        nargs=2,
        metavar=("P_LOW", "P_HIGH"),
        help="scans: scale the P_LOW-th percentile of each scan's voxels to 0 and the P_HIGH-th "
        "to 1, clipped, for MRI and other scans without absolute units (default, without "
        f"--window: {DEFAULT_PERCENTILES[0]:g} {DEFAULT_PERCENTILES[1]:g})",
    )


def add_volume_options(parser: argparse.ArgumentParser) -> None:
    """How a scan becomes a network's input: :func:`add_intensity_options`, then ``--size``."""
    add_intensity_options(parser)
    parser.add_argument(
        "--size",
        type=volume_side,
        nargs=3,
        metavar=("D", "H", "W"),
        help="scans: resample each scan trilinearly to this size, the network's input size, "
        "after the intensity scaling; the map is resampled back to the scan's grid "
        f"(default: the scan's own size; at most {MAX_VOLUME_SIDE} voxels a side)",
    )


def volume_intensity(
    args: argparse.Namespace, size: Sequence[int] | None = None
) -> VolumeIntensity:
    """The scaling that ``--window`` or ``--percentiles`` asks for, then resampling to
    ``size``; errors name the option."""
    window = None if args.window is None else tuple(args.window)
    percentiles = None if args.percentiles is None else tuple(args.percentiles)
    try:
        return VolumeIntensity(window, percentiles, None if size is None else tuple(size))
    except EvaluationError as error:  # its messages start with the field: the option's name
        raise EvaluationError(f"--{error}") from None


def add_figure_option(parser: argparse.ArgumentParser, default: str, maps: str = "") -> None:
    """``--out``: the figure to write; ``maps`` says what other suffixes write instead."""
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(default),
        metavar="PATH",
        help="figure to write, in the format of its suffix: png, jpg, pdf, svg..."
        + (f"; {maps}" if maps else "")
        + " (default: %(default)s)",
    )


def add_layers_option(parser: argparse.ArgumentParser, default: str) -> None:
    """``--layers``, as every command takes it: names separated by commas or spaces."""
    parser.add_argument(
        "--layers",
        nargs="+",
        metavar="A,B",
        help=f"Poly-CAM's layers, shallow to deep, separated by commas or spaces (default: "
        f"{default})",
    )


def layer_names(values: list[str] | None) -> tuple[str, ...] | None:
    """The names given to ``--layers`` (``a,b``, ``a b`` or both), ``None`` when not given."""
    if values is None:
        return None
    return tuple(comma_list(",".join(values), "--layers"))


def check_device(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise EvaluationError(
            "--device cuda: CUDA is not available on this machine; use --device cpu"
        )


def comma_list(text: str, option: str) -> list[str]:
    """The names of a comma-separated option, such as ``--methods pcam+,gradcam``."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise EvaluationError(f"{option}: give a comma-separated list; got {text!r}")
    return items


def check_outputs(outputs: Sequence[Path], inputs: Iterable[tuple[str, Path | None]]) -> None:
    """The rule of every command's ``--out``, checked before any work: never write over an
    input; replace an output that exists, saying so on standard error.

    Args:
        outputs: The paths the command will write: the figure, or the files and folder it
            writes in its ``--out`` folder.
        inputs: What the command reads, each with the words that name it in an error, such
            as ``("the image", path)``; ``None`` for an optional input not given.

    Raises:
        EvaluationError: An output is one of the inputs: the same path, or the same file
            through a symbolic link, a hard link or another spelling of its path.
    """
    given = [(what, path) for what, path in inputs if path is not None]
    for output in outputs:
        for what, source in given:
            if _same_file(output, source):
                raise EvaluationError(
                    f"--out: {str(output)!r} is {what} {str(source)!r}; the command never "
                    "writes over its inputs: give another --out"
                )
    # An output that exists is the user's to replace, as with any tool's output (--out names
    # it, or the default the help shows), but never silently: said before the work, while
    # the command can still be stopped.
    replaced = [output for output in outputs if output.is_file()]
    if replaced:
        names = ", ".join(repr(str(path)) for path in replaced)
        exist = "exists" if len(replaced) == 1 else "exist"
        print(f"{PROG}: --out: {names} {exist} and will be replaced", file=sys.stderr)


def _same_file(first: Path, second: Path) -> bool:
    """Whether two paths name one file or folder, however they are spelt or linked."""
    try:
        return os.path.samefile(first, second)  # the same device and inode
    except OSError:  # one does not exist (yet): compare the paths they lead to
        return os.path.realpath(first) == os.path.realpath(second)
