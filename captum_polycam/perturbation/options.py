"""How perturbed inputs are scored, as one value that Poly-CAM, every metric and the
evaluation pipeline take: how many inputs share a forward pass, the arithmetic's precision,
and whether the passes are compiled.

None of these changes what is scored. The pass size and compiling change only the speed;
a lowered precision changes the scores by rounding, a cost measured on the performance page.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch

from captum_polycam._conventions import check_int

__all__ = ["PRECISIONS", "Precision", "ScoringOptions", "default_perturbations_per_eval"]

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16", "fp16")

# Inputs per forward pass that keep a device busy, when the pass cannot be measured. On a
# 2-core CPU, EfficientNet-Lite0 runs fastest at 4 images per forward and slows down past 8;
# a GPU needs far larger batches.
_INPUTS_PER_PASS = {"cpu": 4, "cuda": 64}


def default_perturbations_per_eval(device: torch.device, examples: int) -> int:
    """Perturbations per example and forward pass where the pass is not measured (calls too
    short to measure, compiled passes, and :func:`~captum_polycam.evaluation.evaluate`, whose
    batches must give the same bits wherever they run): about 4 inputs per pass on a CPU and
    64 on a GPU, shared by the ``examples`` of the batch, and at least one per example."""
    return max(1, _INPUTS_PER_PASS.get(device.type, _INPUTS_PER_PASS["cuda"]) // examples)


@dataclass(frozen=True)
class ScoringOptions:
    """How the perturbation engine runs its forward passes, validated once.

    The public classes (:class:`~captum_polycam.PolyCam` and the metrics) take Captum's
    keywords, ``perturbations_per_eval``, ``precision`` and ``compile``, and build this value
    from them once; the engine (:class:`~captum_polycam.perturbation.PerturbationScorer`) and
    the evaluation pass it around. A caller holding one gives it to a public class as its
    keywords: ``Insertion(model, **dataclasses.asdict(options))``.

    Attributes:
        perturbations_per_eval: Perturbed inputs **per example** in one forward pass, as in
            Captum: a pass holds at most ``perturbations_per_eval * N`` inputs for a batch of
            ``N`` examples, possibly of several examples. ``None`` (the default) is *measured
            unless fixed*: the fastest pass size and memory layout are measured on the first
            call long enough to tell, once per model, input shape, device and precision, and
            remembered for the process; shorter calls and compiled passes use
            :func:`default_perturbations_per_eval`.
        precision: ``"fp32"`` (the default, the paper's arithmetic), or ``"bf16"`` or
            ``"fp16"`` to run the perturbed passes under ``torch.autocast`` with that type.
            The clean pass, the targets and everything built from the inputs stay float32;
            the scores come back as float32. Faster on hardware with half-precision units; a
            CPU without them emulates the type, many times slower, and a ``UserWarning`` says
            so after one input is timed in each precision.
        compile: Run the perturbed passes through ``torch.compile`` (the clean pass runs
            eagerly): a warm-up on the first call, then faster passes, so it pays off on long
            runs. Every pass then holds the same number of inputs (the last is padded), so
            that the model is compiled once.

    Raises:
        ValueError: If ``perturbations_per_eval`` is not a positive int or ``None``, or
            ``precision`` is not one of :data:`PRECISIONS`.
        TypeError: If ``compile`` is not a bool.
    """

    perturbations_per_eval: int | None = None
    precision: Precision = "fp32"
    compile: bool = False

    def __post_init__(self) -> None:
        # A NumPy integer is kept as a plain int, which prints and serialises as one.
        size = check_int("perturbations_per_eval", self.perturbations_per_eval, none=True)
        object.__setattr__(self, "perturbations_per_eval", size)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}; got {self.precision!r}")
        if not isinstance(self.compile, bool):
            raise TypeError(f"compile must be True or False; got {self.compile!r}")

    def fixed(self, device: torch.device, examples: int) -> ScoringOptions:
        """This value with a fixed pass size: its own, or the device's default for batches of
        ``examples``. A fixed size gives the same bits whenever a batch is recomputed."""
        if self.perturbations_per_eval is not None:
            return self
        default = default_perturbations_per_eval(device, examples)
        return dataclasses.replace(self, perturbations_per_eval=default)
