"""The paper's evaluation at dataset scale: saliency methods by name, their maps and metrics
on a folder or dataset of images, resumable and sharded, and the randomisation sanity check.

Example:
    >>> from captum_polycam.evaluation import EvaluationConfig, evaluate
    >>> report = evaluate("photos", "results", EvaluationConfig(methods=("pcam+", "gradcam")))
    >>> print(report.markdown)
"""

from captum_polycam.evaluation.methods import BASELINES, Method, build_methods
from captum_polycam.evaluation.pipeline import DEFAULT_METHODS, EvaluationConfig, evaluate
from captum_polycam.evaluation.report import Report
from captum_polycam.evaluation.sanity import SanityResult, randomisation_blocks, sanity_check
from captum_polycam.resources.errors import EvaluationError
from captum_polycam.resources.images import ImageFolder, Preprocessing, Sample, bundled_images
from captum_polycam.resources.models import DEFAULT_MODEL, load_model

__all__ = [
    "BASELINES",
    "DEFAULT_METHODS",
    "DEFAULT_MODEL",
    "EvaluationConfig",
    "EvaluationError",
    "ImageFolder",
    "Method",
    "Preprocessing",
    "Report",
    "Sample",
    "SanityResult",
    "build_methods",
    "bundled_images",
    "evaluate",
    "load_model",
    "randomisation_blocks",
    "sanity_check",
]
