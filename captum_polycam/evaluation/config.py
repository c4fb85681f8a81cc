"""What an evaluation's artefacts depend on, the protocol, checked when it is built, and
checked again on the first image, before anything is written."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from captum_polycam._conventions import check_int
from captum_polycam.attr import LayerInfo, describe_layers
from captum_polycam.attr.capture import Reshape, check_shallow_to_deep, reshape_function
from captum_polycam.perturbation.options import Precision, ScoringOptions
from captum_polycam.resources.errors import EvaluationError
from captum_polycam.resources.images import Preprocessing, Sample
from captum_polycam.resources.models import DEFAULT_MODEL
from captum_polycam.resources.volumes import VolumeIntensity

__all__ = ["DEFAULT_METHODS", "EvaluationConfig", "check_on_first_input", "checked_layers"]

DEFAULT_METHODS = ("pcam+", "gradcam", "random")


@dataclass(frozen=True)
class EvaluationConfig:
    """Everything the artefacts depend on. A rerun into the same folder must match it.

    Attributes:
        model: ``"efficientnet-lite0"`` (pretrained, offline), a torchvision classifier name
            (ImageNet weights downloaded or cached) or ``"package.module:callable"``; with a
            model object passed to :func:`evaluate`, the name its artefacts carry.
        methods: Method names (:mod:`captum_polycam.evaluation.methods`).
        target: ``"top1"``, the model's top-1 class on the clean image (the paper's), or
            ``"label"``, the image's label.
        n_steps: Insertion and deletion steps (the paper's 224).
        baseline: The image that insertion starts from and deletion ends at: ``"blur"`` (the
            paper's Gaussian blur), ``"zeros"`` or ``"mean"``.
        batch_size: Images attributed together, and the unit of resuming and sharding.
        sensitivity_images: Max-sensitivity on the first this many images (10 more maps
            each).
        layers: Poly-CAM's layers, shallow to deep; ``None`` discovers them.
        reshape: How those layers' outputs become ``N x C x h x w`` maps: ``None`` (they
            are, as in CNNs), ``"nhwc"`` (channels-last stages, as Swin's), ``"tokens"`` (a
            square grid of tokens after any class and register tokens) or
            ``"package.module:callable"``
            (:func:`~captum_polycam.attr.capture.reshape_function`). Poly-CAM, Grad-CAM and
            layer discovery read the layers through it.
        preprocessing: How photos become inputs (the paper's by default); a
            :class:`~captum_polycam.resources.VolumeIntensity` for a folder of scans (a CT
            window or percentiles, and a size); ``None`` takes a dataset's images as model
            inputs as they are (its own transform prepared them).
        seed: Seed of the random parts (the random floor, SmoothGrad, sensitivity's noise).
        precision: ``"fp32"`` (the paper's), ``"bf16"`` or ``"fp16"``: the type Poly-CAM's
            masked passes and the metrics' perturbed passes run in, under autocast.
        compile: Run those passes through ``torch.compile``: a warm-up on the first batch,
            then faster passes for the rest of a long run.
        boxes: Ground truth for the localisation metrics (pointing game, energy in the
            ground truth, box accuracy): a file or folder of boxes or masks
            (:func:`~captum_polycam.resources.ground_truth.read_ground_truth`); ``None``
            measures no localisation; photos only (scans have none yet). ``run.json``
            records its format and SHA-256, not its path, so a resume with other ground truth
            is refused.
        boxes_format: Its format (``"xml"``, ``"imagenet-csv"``, ``"coco"``, ``"csv"`` or
            ``"masks"``); ``None`` recognises it from what the path is.
        box_classes: How the ground truth's labels map to the model's classes, ``label ->
            class index``, for label sets other than ImageNet's wnids and plain class indices
            (:func:`~captum_polycam.resources.boxes_for_class`): only the boxes of the class
            explained count. ``None``: wnids and indices map by themselves, and where the
            labels name no model class (VOC's or COCO's names) every box counts.
    """

    model: str = DEFAULT_MODEL
    methods: tuple[str, ...] = DEFAULT_METHODS
    target: Literal["top1", "label"] = "top1"
    n_steps: int = 224
    baseline: Literal["blur", "zeros", "mean"] = "blur"
    batch_size: int = 8
    sensitivity_images: int = 0
    layers: tuple[str, ...] | None = None
    reshape: str | None = None
    preprocessing: Preprocessing | VolumeIntensity | None = field(default_factory=Preprocessing)
    seed: int = 0
    precision: Precision = "fp32"
    compile: bool = False
    boxes: str | Path | None = None
    boxes_format: str | None = None
    box_classes: Mapping[str, int] | None = None

    def __post_init__(self) -> None:
        for name, least in (
            ("n_steps", 1),
            ("batch_size", 1),
            ("sensitivity_images", 0),
            ("seed", None),
        ):
            # Kept as a plain int, which run.json serialises (a NumPy integer it cannot).
            checked = check_int(name, getattr(self, name), least, error=EvaluationError)
            object.__setattr__(self, name, checked)
        for name in ("methods", "layers"):
            names = getattr(self, name)
            # A lone string would otherwise be read as one name per character.
            if name == "layers" and names is None:
                continue
            if (
                isinstance(names, str)
                or not isinstance(names, Sequence)
                or not all(isinstance(n, str) for n in names)
            ):
                raise EvaluationError(
                    f"{name} must be a list of names, such as ('pcam+', 'gradcam'); got {names!r}"
                )
        if self.reshape is not None:
            if not isinstance(self.reshape, str):
                raise EvaluationError(
                    "reshape must be 'nhwc', 'tokens' or 'package.module:callable', a name a "
                    f"run can record; got {self.reshape!r}"
                )
            try:
                reshape_function(self.reshape)
            except ValueError as error:
                raise EvaluationError(str(error)) from None
        if self.target not in ("top1", "label"):
            raise EvaluationError(f"target must be 'top1' or 'label'; got {self.target!r}")
        try:
            self.scoring  # noqa: B018 (checks precision and compile)
        except (TypeError, ValueError) as error:
            raise EvaluationError(str(error)) from None
        if self.boxes is not None and not isinstance(self.boxes, (str, Path)):
            raise EvaluationError(f"boxes must be a path to a file or folder; got {self.boxes!r}")
        if self.boxes is not None and isinstance(self.preprocessing, VolumeIntensity):
            raise EvaluationError(
                "boxes: localisation is measured on photos; ground truth for scans (3D boxes or "
                "masks) is not supported yet: leave boxes out"
            )
        for name in ("boxes_format", "box_classes"):
            if getattr(self, name) is not None and self.boxes is None:
                raise EvaluationError(f"{name} applies to boxes; give boxes too")
        if self.box_classes is not None and not (
            isinstance(self.box_classes, Mapping)
            and all(
                isinstance(label, str) and isinstance(index, int)
                for label, index in self.box_classes.items()
            )
        ):
            raise EvaluationError(
                f"box_classes must map labels to class indices; got {self.box_classes!r}"
            )
        if self.baseline not in ("blur", "zeros", "mean"):
            raise EvaluationError(
                f"baseline must be 'blur', 'zeros' or 'mean'; got {self.baseline!r}"
            )

    @property
    def scoring(self) -> ScoringOptions:
        """How the perturbed passes run: ``precision`` and ``compile``, with the pass size
        left to :func:`~captum_polycam.evaluation.evaluate`."""
        return ScoringOptions(precision=self.precision, compile=self.compile)

    def as_dict(self) -> dict[str, Any]:
        settings = asdict(self)
        settings["methods"] = list(self.methods)
        settings["layers"] = None if self.layers is None else list(self.layers)
        settings["preprocessing"] = self.preprocessing and self.preprocessing.as_dict()
        # The ground truth is recorded by its content (the run's "ground_truth"), not by a
        # path that another spelling of the same file would change.
        del settings["boxes"], settings["boxes_format"]
        settings["box_classes"] = self.box_classes and dict(self.box_classes)
        return settings


def check_on_first_input(
    model: nn.Module, first: Tensor, dataset: Dataset[Sample], config: EvaluationConfig
) -> list[LayerInfo]:
    """Poly-CAM's layers, described, after checking on one input that the run can go
    through: the model takes inputs of this size, the layers exist and go shallow to deep, the
    steps fit in the image and the labels in the model's outputs."""
    spatial = first.shape[2:]
    size = " x ".join(str(side) for side in spatial)
    units = {1: "samples", 2: "pixels", 3: "voxels"}.get(len(spatial), "elements")
    try:
        with torch.no_grad():
            output = model(first)
    except Exception as error:  # whatever the user's model raises, say where it came from
        raise EvaluationError(
            f"model {config.model!r} fails on an input of {size} {units} (the "
            f"preprocessing's size): {type(error).__name__}: {error}"
        ) from None
    if not isinstance(output, Tensor) or output.dim() != 2:
        shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise EvaluationError(
            f"model {config.model!r} must be a classifier giving N x classes logits; got {shape}"
            " (Captum's baselines index the output by class: for a Hugging Face model, wrap it "
            "in a module that returns its .logits)"
        )
    if config.n_steps > spatial.numel():
        raise EvaluationError(
            f"n_steps: {config.n_steps} insertion and deletion steps need as many {units}; the "
            f"inputs have {size} = {spatial.numel()}"
        )
    described = checked_layers(model, first, config.layers, config.reshape)
    classes = output.shape[1]
    labels = getattr(dataset, "labels", None) or {}
    outside = sorted(name for name, label in labels.items() if not 0 <= label < classes)
    if config.target == "label" and outside:
        raise EvaluationError(
            f"labels: the model has {classes} classes (0 to {classes - 1}); "
            f"{len(outside)} image(s) have another, such as {outside[0]!r} "
            f"({labels[outside[0]]})"
        )
    return described


def checked_layers(
    model: nn.Module,
    inputs: Tensor,
    layers: Sequence[str] | None,
    reshape: Reshape | None,
    *,
    argument: str = "layers",
) -> list[LayerInfo]:
    """Poly-CAM's layers, described on ``inputs``: the ones given, once checked to exist, to
    give ``N x C x h x w`` maps through ``reshape`` and to go shallow to deep, or, with
    ``layers=None``, the ones discovery finds.

    Every command and evaluation reads its layers here, so that their mistakes are told alike.

    Raises:
        EvaluationError: Naming ``argument``: ``"layers"`` in Python, ``"--layers"`` on the
            command line.
    """
    try:
        described = describe_layers(model, inputs, layers, reshape=reshape)
        if layers is not None:
            check_shallow_to_deep(described)
    except (TypeError, ValueError) as error:
        told = str(error).removeprefix("layers: ")
        if layers is None:  # no stack of maps at several resolutions to discover
            told = f"none given, and none discovered: {told}"
        raise EvaluationError(f"{argument}: {told}") from None
    return described
