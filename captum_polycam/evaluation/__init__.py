"""The paper's evaluation at dataset scale: saliency methods by name, their maps and metrics
on a folder or dataset of images, resumable and sharded, and the randomisation sanity check.
The images, models and usage error it shares with the commands are in
:mod:`captum_polycam.resources`.

Example:
    >>> from captum_polycam.evaluation import EvaluationConfig, evaluate
    >>> report = evaluate("photos", "results", EvaluationConfig(methods=("pcam+", "gradcam")))
    >>> print(report.markdown)
"""

from captum_polycam.evaluation.methods import BASELINES, Method, Run, RunMaps, build_methods
from captum_polycam.evaluation.pipeline import DEFAULT_METHODS, EvaluationConfig, evaluate
from captum_polycam.evaluation.report import Report
from captum_polycam.evaluation.sanity import SanityResult, randomisation_blocks, sanity_check

__all__ = [
    "BASELINES",
    "DEFAULT_METHODS",
    "EvaluationConfig",
    "Method",
    "Report",
    "Run",
    "RunMaps",
    "SanityResult",
    "build_methods",
    "evaluate",
    "randomisation_blocks",
    "sanity_check",
]
