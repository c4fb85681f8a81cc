"""Perturbation scoring: batched forward passes over perturbed copies of a batch."""

from captum_polycam.perturbation.scoring import PerturbationScorer
from captum_polycam.perturbation.targets import ExampleTargets

__all__ = ["ExampleTargets", "PerturbationScorer"]
