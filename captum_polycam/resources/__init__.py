"""What every command and the evaluation share: reading images, loading models and detectors
by name, ``"package.module:callable"`` names, artefact file stems, and the one usage error."""

from captum_polycam.resources.errors import EvaluationError
from captum_polycam.resources.images import (
    ImageFolder,
    Preprocessing,
    Sample,
    bundled_image,
    bundled_images,
)
from captum_polycam.resources.models import DEFAULT_MODEL, load_detector, load_model
from captum_polycam.resources.names import file_stem, import_callable, unique_file_stems

__all__ = [
    "DEFAULT_MODEL",
    "EvaluationError",
    "ImageFolder",
    "Preprocessing",
    "Sample",
    "bundled_image",
    "bundled_images",
    "file_stem",
    "import_callable",
    "load_detector",
    "load_model",
    "unique_file_stems",
]
