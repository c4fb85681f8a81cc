"""``captum-polycam sanity``: the cascading-randomisation sanity check, from the shell.

Example::

    captum-polycam sanity cat.jpg --methods pcam+,gradcam --steps 1,2,5,21 --out sanity
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from captum_polycam.cli.arguments import (
    add_device_option,
    add_layers_option,
    add_model_option,
    add_reshape_option,
    add_run_options,
    check_device,
    check_outputs,
    comma_list,
    layer_names,
)
from captum_polycam.evaluation.sanity import sanity_check
from captum_polycam.resources.errors import EvaluationError
from captum_polycam.resources.images import bundled_images, normalise, read_image
from captum_polycam.resources.models import load_model

__all__ = ["add_parser", "run"]

_OUTPUTS = ("sanity.csv", "sanity.md", "sanity.png")


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``sanity`` subcommand."""
    sanity = commands.add_parser(
        "sanity",
        help="check that saliency maps change when the model's weights are randomised",
        description="Re-initialise the model's blocks from the output backwards, one at a "
        "time, and measure how similar each method's maps stay to the original ones "
        "(Adebayo et al., 2018). Writes sanity.csv, sanity.md and sanity.png.",
    )
    sanity.add_argument(
        "images",
        nargs="*",
        type=Path,
        metavar="IMAGE",
        help="JPEG, PNG, WebP or GIF files (default: the four bundled photos)",
    )
    add_model_option(sanity)
    add_layers_option(sanity, "one per resolution, discovered")
    add_reshape_option(sanity)
    sanity.add_argument(
        "--methods",
        default="pcam+,gradcam",
        metavar="A,B",
        help="comma-separated saliency methods, as for evaluate (default: %(default)s)",
    )
    sanity.add_argument(
        "--blocks",
        "--steps",  # its first name, kept; evaluate's --steps are insertion steps
        dest="steps",
        metavar="K,L",
        help="comma-separated numbers of blocks to randomise, from the output, at which to "
        "explain, such as 1,2,4,8 (default: every block; the original model is always shown)",
    )
    sanity.add_argument(
        "--out",
        type=Path,
        default=Path("sanity"),
        metavar="DIR",
        help="folder for sanity.csv, sanity.md and sanity.png, created if missing "
        "(default: %(default)s)",
    )
    add_device_option(sanity)
    add_run_options(sanity)
    sanity.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="seed of the re-initialisation and of random methods (default: %(default)s)",
    )
    return sanity


def _steps(text: str | None) -> list[int] | None:
    if text is None:
        return None
    items = comma_list(text, "--blocks")
    if not all(item.isdigit() for item in items):
        raise EvaluationError(f"--blocks: expected comma-separated whole numbers; got {text!r}")
    return [int(item) for item in items]


def run(args: argparse.Namespace) -> int:
    """Run the sanity check of ``args``, write its table and figure; return the exit status."""
    # Every check that needs no model first, so that mistakes fail in a second.
    check_device(args.device)
    methods = comma_list(args.methods, "--methods")
    steps = _steps(args.steps)
    if args.out.exists() and not args.out.is_dir():
        raise EvaluationError(f"--out: {str(args.out)!r} exists and is not a folder")
    sources = args.images or bundled_images()
    check_outputs(
        [args.out / name for name in _OUTPUTS], [("the image", source) for source in sources]
    )
    pixels = torch.cat([read_image(source) for source in sources])

    device = torch.device(args.device)
    model, _ = load_model(args.model, device)
    inputs = normalise(pixels).to(device).contiguous(memory_format=torch.channels_last)
    result = sanity_check(
        model,
        inputs,
        methods,
        layers=layer_names(args.layers),
        reshape=args.reshape,
        steps=steps,
        seed=args.seed,
        show_progress=not args.quiet,
    )
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        result.to_csv(args.out / _OUTPUTS[0])
        (args.out / _OUTPUTS[1]).write_text(result.to_markdown(), encoding="utf-8")
        result.plot(args.out / _OUTPUTS[2])
    except OSError as error:
        raise EvaluationError(
            f"--out: cannot write to {str(args.out)!r}: {error.strerror or error}"
        ) from None
    print(
        f"Sanity check of {args.model} on {len(sources)} image(s), blocks randomised from "
        f"the output: {', '.join(result.blocks)}\n"
    )
    print(result.to_markdown())
    print("Written: " + ", ".join(str(args.out / name) for name in _OUTPUTS))
    return 0
