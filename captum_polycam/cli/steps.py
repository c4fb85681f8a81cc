"""Steps that ``explain`` and ``explain-detection`` share: the timed Poly-CAM run, reported
in one line, and the writing of the figure, whose failure is a usage error."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import Tensor

from captum_polycam.attr import PolyCam, PolyCamMaps
from captum_polycam.resources.errors import EvaluationError

__all__ = ["timed_polycam", "writing_figure"]


def timed_polycam(
    polycam: PolyCam,
    inputs: Tensor,
    target: Any,
    perturbations_per_eval: int | None,
    explained: str,
    show_progress: bool = True,
) -> PolyCamMaps:
    """Run ``polycam`` (reporting its passes unless not ``show_progress``), then print its
    time and passes for the ``explained`` things, such as ``"2 image(s)"``."""
    start = time.perf_counter()
    result = polycam.decompose(
        inputs,
        target=target,
        perturbations_per_eval=perturbations_per_eval,
        show_progress=show_progress,
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
