"""Steps that ``explain`` (of photos and of scans) and ``explain-detection`` share: the timed
Poly-CAM run as the options ask, reported in one line, and the writing of the figure, whose
failure is a usage error."""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from captum_polycam.attr import PolyCam, PolyCamMaps
from captum_polycam.perturbation.targets import ScoreFn
from captum_polycam.resources.errors import EvaluationError

__all__ = ["timed_polycam", "writing_figure"]


def timed_polycam(
    args: argparse.Namespace,
    model: nn.Module,
    layers: Sequence[str],
    inputs: Tensor,
    target: Any,
    explained: str,
    score_fn: ScoreFn = "softmax",
) -> PolyCamMaps:
    """Poly-CAM on ``layers`` as the command's options ask (``--variant``, ``--pass-budget``,
    ``--min-fidelity``, ``--reshape``, ``--perturbations-per-eval``; its passes reported
    unless ``--quiet``), then its time and passes printed for the ``explained`` things, such
    as ``"2 image(s)"``."""
    polycam = PolyCam(
        model,
        layers=list(layers),
        variant=args.variant,
        score_fn=score_fn,
        pass_budget=args.pass_budget,
        min_fidelity=args.min_fidelity,
        reshape=args.reshape,
    )
    start = time.perf_counter()
    result = polycam.decompose(
        inputs,
        target=target,
        perturbations_per_eval=args.perturbations_per_eval,
        show_progress=not args.quiet,
    )
    print(
        f"\nAttribution: {time.perf_counter() - start:.1f} s for {explained}, "
        f"{result.passes} of {result.exact_passes} masked passes"
    )
    if polycam.pass_budget is not None:
        print(f"Estimated fidelity (Spearman with the exact map): {_fidelities(result.fidelity)}")
    return result


def _fidelities(fidelity: Tensor) -> str:
    return ", ".join("not estimated" if math.isnan(f) else f"{f:.3f}" for f in fidelity.tolist())


@contextmanager
def writing_figure(out: Path) -> Iterator[None]:
    """Write the figure ``out`` in the block; a file system's refusal becomes a usage error
    naming ``--out``, and success is printed."""
    try:
        yield
    except OSError as error:
        raise EvaluationError(
            f"--out: cannot write {str(out)!r}: {error.strerror or error}"
        ) from None
    print(f"Figure: {out}")
