"""What every command and the evaluation share: reading images, ground-truth boxes and masks,
NIfTI and NumPy volumes and folders of them, loading models and detectors by name,
``"package.module:callable"`` names, artefact file stems, and the one usage error."""

from captum_polycam.resources.errors import EvaluationError
from captum_polycam.resources.ground_truth import (
    FORMATS,
    IMAGENET_WNIDS,
    Annotation,
    GroundTruth,
    boxes_for_class,
    imagenet_class_index,
    in_input_frame,
    read_ground_truth,
)
from captum_polycam.resources.images import (
    ImageFolder,
    Preprocessing,
    Sample,
    bundled_boxes,
    bundled_image,
    bundled_images,
)
from captum_polycam.resources.models import DEFAULT_MODEL, load_detector, load_model
from captum_polycam.resources.names import file_stem, import_callable, unique_file_stems
from captum_polycam.resources.volumes import (
    Volume,
    VolumeFolder,
    VolumeIntensity,
    percentile_scale,
    read_volume,
    window,
    write_volume,
)

__all__ = [
    "DEFAULT_MODEL",
    "FORMATS",
    "IMAGENET_WNIDS",
    "Annotation",
    "EvaluationError",
    "GroundTruth",
    "ImageFolder",
    "Preprocessing",
    "Sample",
    "Volume",
    "VolumeFolder",
    "VolumeIntensity",
    "boxes_for_class",
    "bundled_boxes",
    "bundled_image",
    "bundled_images",
    "file_stem",
    "imagenet_class_index",
    "import_callable",
    "in_input_frame",
    "load_detector",
    "load_model",
    "percentile_scale",
    "read_ground_truth",
    "read_volume",
    "unique_file_stems",
    "window",
    "write_volume",
]
