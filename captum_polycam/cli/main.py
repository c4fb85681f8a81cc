"""The ``captum-polycam`` command line: ``explain``, ``explain-detection``, ``evaluate`` and
``sanity``.

Each subcommand lives in its own module, a thin layer over the Python API, and registers
itself with ``add_parser``; this module parses and reports errors in one line.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

import captum_polycam
from captum_polycam.cli import evaluate, explain, explain_detection, sanity
from captum_polycam.cli.arguments import PROG
from captum_polycam.perturbation import tune_cpu_allocator
from captum_polycam.resources.errors import EvaluationError

__all__ = ["PROG", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with every subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Poly-CAM high-resolution class activation maps."
    )
    parser.add_argument("--version", action="version", version=captum_polycam.__version__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (explain, explain_detection, evaluate, sanity):
        command.add_parser(commands).set_defaults(run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return 0 on success, 2 for a usage error, 130 if interrupted."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and argparse's own usage errors
        return exit_.code if isinstance(exit_.code, int) else 1
    # The command line owns its process: keep freed memory for the next forward pass.
    tune_cpu_allocator()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        return args.run(args)
    except EvaluationError as error:
        # One line, however the underlying library formatted its message.
        print(f"{PROG}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # An evaluation keeps every finished batch; say how to go on.
        resume = "; run the same command again to continue" * (args.command == "evaluate")
        print(f"{PROG}: interrupted{resume}", file=sys.stderr)
        return 130


def console() -> int:
    """The ``captum-polycam`` script. As ``python -m captum_polycam`` does, it imports the
    ``package.module:callable`` names of ``--model``, ``--methods`` and ``--reshape`` from the
    working directory too: a factory in ``./mynets.py`` is ``--model mynets:classifier``."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return main()


if __name__ == "__main__":
    raise SystemExit(main())
