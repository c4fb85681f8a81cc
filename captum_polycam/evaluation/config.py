"""What an evaluation's artefacts depend on: the protocol, checked when it is built."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from captum_polycam.evaluation.errors import EvaluationError
from captum_polycam.evaluation.images import Preprocessing
from captum_polycam.evaluation.models import DEFAULT_MODEL
from captum_polycam.perturbation.scoring import PRECISIONS, Precision

__all__ = ["DEFAULT_METHODS", "EvaluationConfig"]

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
        preprocessing: How photos become inputs (the paper's by default); ``None`` takes a
            dataset's images as model inputs as they are (its own transform prepared them).
        seed: Seed of the random parts (the random floor, SmoothGrad, sensitivity's noise).
        precision: ``"fp32"`` (the paper's), ``"bf16"`` or ``"fp16"``: the type Poly-CAM's
            masked passes and the metrics' perturbed passes run in, under autocast.
        compile: Run those passes through ``torch.compile``: a warm-up on the first batch,
            then faster passes for the rest of a long run.
    """

    model: str = DEFAULT_MODEL
    methods: tuple[str, ...] = DEFAULT_METHODS
    target: Literal["top1", "label"] = "top1"
    n_steps: int = 224
    baseline: Literal["blur", "zeros", "mean"] = "blur"
    batch_size: int = 8
    sensitivity_images: int = 0
    layers: tuple[str, ...] | None = None
    preprocessing: Preprocessing | None = field(default_factory=Preprocessing)
    seed: int = 0
    precision: Precision = "fp32"
    compile: bool = False

    def __post_init__(self) -> None:
        for name, least in (
            ("n_steps", 1),
            ("batch_size", 1),
            ("sensitivity_images", 0),
            ("seed", None),
        ):
            value = getattr(self, name)
            bad_type = isinstance(value, bool) or not isinstance(value, int)
            if bad_type or (least is not None and value < least):
                expected = {1: "a positive int", 0: "an int, 0 or more", None: "an int"}[least]
                raise EvaluationError(f"{name} must be {expected}; got {value!r}")
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
        if self.target not in ("top1", "label"):
            raise EvaluationError(f"target must be 'top1' or 'label'; got {self.target!r}")
        if self.precision not in PRECISIONS:
            raise EvaluationError(f"precision must be one of {PRECISIONS}; got {self.precision!r}")
        if self.baseline not in ("blur", "zeros", "mean"):
            raise EvaluationError(
                f"baseline must be 'blur', 'zeros' or 'mean'; got {self.baseline!r}"
            )

    def as_dict(self) -> dict[str, Any]:
        settings = asdict(self)
        settings["methods"] = list(self.methods)
        settings["layers"] = None if self.layers is None else list(self.layers)
        settings["preprocessing"] = self.preprocessing and self.preprocessing.as_dict()
        return settings
