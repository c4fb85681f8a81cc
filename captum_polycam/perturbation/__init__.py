"""Perturbation scoring: the engine that Poly-CAM and every metric share.

A batch is prepared once (:meth:`PerturbationScorer.prepare`: the clean pass, its scores and
targets), then perturbed copies of its examples are scored in chunks
(:meth:`PerturbationScorer.score` with a :class:`PerturbationPlan`).
"""

from captum_polycam.perturbation.allocator import tune_cpu_allocator
from captum_polycam.perturbation.batch import PreparedBatch
from captum_polycam.perturbation.options import ScoringOptions
from captum_polycam.perturbation.scoring import PerturbationPlan, PerturbationScorer
from captum_polycam.perturbation.targets import ExampleTargets

__all__ = [
    "ExampleTargets",
    "PerturbationPlan",
    "PerturbationScorer",
    "PreparedBatch",
    "ScoringOptions",
    "tune_cpu_allocator",
]
