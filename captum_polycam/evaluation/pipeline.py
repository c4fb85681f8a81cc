"""The paper's evaluation at dataset scale: maps, metrics and artefacts, resumable and sharded.

A run cuts the image list into batches of ``batch_size`` consecutive images. For every
method and batch it computes the maps and their metrics and saves them as one *shard*
(``OUT/shards/{method}/{batch}.npz``, written atomically); a shard that exists is never
computed again, so a run killed at any moment and restarted loses at most the batches in
flight. Once every shard exists, they are merged into the final artefacts. Batches, seeds
and merge order depend only on the configuration, never on how many processes ran them or
when, so every way of running ends with the same bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import platform
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import captum
import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

import captum_polycam
from captum_polycam._conventions import evaluation_mode, seeded
from captum_polycam._progress import Progress, progress_mode
from captum_polycam.attr import LayerInfo
from captum_polycam.evaluation import _distributed
from captum_polycam.evaluation.artefacts import (
    read_npz,
    write_npz,
)
from captum_polycam.evaluation.config import DEFAULT_METHODS, EvaluationConfig, check_on_first_input
from captum_polycam.evaluation.datasets import NoReadableImage, as_samples, first_input
from captum_polycam.evaluation.folder import MODEL_DIGEST, OutputFolder, now
from captum_polycam.evaluation.html import write_html_report
from captum_polycam.evaluation.localisation import Localisation, check_folder
from captum_polycam.evaluation.methods import (
    FIDELITY,
    Method,
    Run,
    RunMaps,
    build_methods,
    method_file_stem,
)
from captum_polycam.evaluation.report import Report, write_report
from captum_polycam.metrics import ConfidenceChange, InsertionDeletion, Sensitivity
from captum_polycam.metrics.keys import (
    AVERAGE_DROP,
    DELETION,
    DELETION_CURVE,
    INCREASE_IN_CONFIDENCE,
    INSERTION,
    INSERTION_CURVE,
    SENSITIVITY_MAX,
)
from captum_polycam.normalisation import min_max
from captum_polycam.perturbation.batch import PreparedBatch
from captum_polycam.perturbation.options import ScoringOptions
from captum_polycam.perturbation.scoring import PerturbationScorer
from captum_polycam.resources.errors import EvaluationError
from captum_polycam.resources.images import (
    ImageFolder,
    Preprocessing,
    Sample,
    image_list_digest,
)
from captum_polycam.resources.models import load_model, model_digest, model_file_stem
from captum_polycam.resources.volumes import SUFFIXES, VolumeIntensity

__all__ = ["DEFAULT_METHODS", "EvaluationConfig", "evaluate"]

_T = TypeVar("_T")


class _Batch:
    """One batch of the image list: its readable samples, their inputs on the device, their
    clean pass (shared by the metrics) and the classes to explain (the labels, or the top-1
    of that pass).

    Args:
        shape: The run's input shape (the first readable image's, ``C x *spatial``): a sample
            of another cannot be stacked with the others, and is recorded as an error.
    """

    def __init__(
        self,
        index: int,
        samples: list[Sample],
        target: str,
        device: torch.device,
        scorer: PerturbationScorer,
        shape: torch.Size,
    ) -> None:
        self.index = index
        # Every image of the batch, readable or not, and its content: what a resumed run checks.
        self.image_names = [sample.name for sample in samples]
        self.image_digests = [sample.digest or "" for sample in samples]
        self.errors: list[tuple[str, str]] = []
        self.offsets: list[int] = []  # the usable samples' places within the batch
        for offset, sample in enumerate(samples):
            if sample.error is not None:
                self.errors.append((sample.name, sample.error))
            elif target == "label" and sample.label is None:
                self.errors.append((sample.name, "no label"))
            elif sample.inputs is not None and sample.inputs.shape != shape:
                self.errors.append((sample.name, _other_shape(sample.inputs.shape, shape)))
            else:
                self.offsets.append(offset)
        self.samples = [samples[offset] for offset in self.offsets]
        self.names = [s.name for s in self.samples]
        self.inputs = torch.empty(0)
        self.targets = torch.empty(0, dtype=torch.long)
        self.prepared: PreparedBatch | None = None
        if self.samples:
            inputs = torch.stack([s.inputs for s in self.samples if s.inputs is not None])
            self.inputs = inputs.to(device)
            labels = None
            if target == "label":
                labels = torch.tensor([s.label for s in self.samples], device=device)
            self.prepared = scorer.prepare(self.inputs, labels)
            self.targets = self.prepared.targets.index[:, 0]  # a classifier's: one class each

    def __len__(self) -> int:
        return len(self.samples)


def evaluate(
    images: str | Path | Dataset[Any],
    out: str | Path,
    config: EvaluationConfig | None = None,
    *,
    model: nn.Module | None = None,
    image_list: str | Path | Sequence[str] | None = None,
    labels: str | Path | dict[str, int] | None = None,
    device: str | torch.device | None = None,
    num_workers: int = 1,
    perturbations_per_eval: int | None = None,
    show_progress: bool | None = None,
) -> Report:
    """Evaluate saliency methods on a set of images, writing the paper's artefacts to ``out``.

    For each method and image: the map (``OUT/npz/{model}_{method}.npz``), the insertion
    and deletion curves and areas (``OUT/csv/``), average drop, increase in confidence, on
    the first ``sensitivity_images`` max-sensitivity, and with ``config.boxes`` the pointing
    game, the energy in the ground truth and the box accuracy (with the centre prior's, see
    :mod:`~captum_polycam.evaluation.localisation`); then ``summary.csv``,
    ``summary.md``, ``curves.png``, ``errors.csv`` and ``run.json``. Under ``torchrun`` the
    batches are shared among the processes and the artefacts are the same.

    Args:
        images: A folder of photos (see :class:`~captum_polycam.resources.ImageFolder`), a
            folder of scans (``.nii``, ``.nii.gz``, ``.npy``; see
            :class:`~captum_polycam.resources.VolumeFolder`) when ``config.preprocessing`` is
            a :class:`~captum_polycam.resources.VolumeIntensity`, or a dataset whose items
            are ``(image, name)`` or ``(image, label, name)``, an image being a PIL image or
            a ``3 x H x W`` tensor in ``[0, 1]`` (a ``D x H x W`` scan with a
            ``VolumeIntensity``), preprocessed by ``config.preprocessing`` (or, when that is
            ``None``, a model input as it is). A scan's maps are ``D x H x W``, as the photos'
            are ``H x W``.
        out: The output folder. A rerun with the same configuration (the model's weights
            included) resumes; another configuration is refused, and so is a run while
            another goes on in the folder. A rerun of a finished run leaves its record and
            artefacts as they are.
        config: The protocol (:class:`EvaluationConfig`); the paper's by default.
        model: A model object to evaluate instead of loading ``config.model``. A model that
            ``config.model`` names is built with torch's generator seeded by ``config.seed``,
            so that a factory of random weights builds the same ones each time.
        image_list: With a folder, the file names to use (a file, one name a line).
        labels: With a folder, the classes (a ``file_name class_index`` file or a mapping).
            Under ``target="top1"`` they may leave images out; how many is said on standard
            error (unless ``show_progress`` is ``False``).
        device: ``"cpu"``, ``"cuda"``...; the GPU when there is one by default.
        num_workers: Processes reading images while the model runs (0 reads in this one).
        perturbations_per_eval: Masked inputs per example and forward pass, for Poly-CAM and
            the metrics. ``None`` takes the device's default (about 4 inputs a pass on a CPU,
            64 on a GPU) rather than measuring the fastest, so that every run gives the same
            bits. The results do not depend on it beyond float rounding.
        show_progress: Report the forward passes done out of those expected, with their rate
            and the time left: a bar on a terminal, otherwise a status line every 30 s and a
            final one. ``None`` (the default) reports; ``False`` is silent.

    Returns:
        The summary: per method and metric, the mean, standard deviation, 95% interval and
        the number of images.

    Raises:
        EvaluationError: An argument is invalid, or ``out`` holds a run of another
            configuration.

    Example:
        >>> report = evaluate("val", "results", EvaluationConfig(model="resnet50",
        ...                   methods=("pcam+-", "gradcam")), image_list="images.txt")
        >>> print(report.markdown)
    """
    config = config or EvaluationConfig()
    try:
        # The one value of the scoring options, from the configuration and the pass size.
        scoring = dataclasses.replace(config.scoring, perturbations_per_eval=perturbations_per_eval)
    except (TypeError, ValueError) as error:
        raise EvaluationError(str(error)) from None
    out = Path(out)
    dataset = as_samples(images, image_list, labels, config)
    if config.target == "label" and getattr(dataset, "labels", True) is None:
        raise EvaluationError("target 'label' needs labels: pass a labels file")
    unlabelled: list[str] = getattr(dataset, "unlabelled", [])
    if config.target == "label" and unlabelled:
        raise EvaluationError(
            f"labels: no class for {len(unlabelled)} image(s), such as {unlabelled[0]!r}"
        )
    if (
        model is None
        and isinstance(config.preprocessing, VolumeIntensity)
        and ":" not in config.model
    ):
        raise EvaluationError(
            f"model: {config.model!r} classifies photos, and the images are scans "
            f"({', '.join(SUFFIXES)}): give a 3D classifier as 'package.module:factory'"
        )
    localisation = None
    if config.boxes is not None:
        check_folder(images)
        assert isinstance(dataset, ImageFolder) and isinstance(config.preprocessing, Preprocessing)
        localisation = Localisation(
            config.boxes,
            config.boxes_format,
            Path(str(dataset.root)),
            dataset.names,
            config.preprocessing,
            config.box_classes,
        )
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EvaluationError("device: CUDA is not available on this machine; use 'cpu'")
    ranks, device = _distributed.start(device)
    show_progress = True if show_progress is None else show_progress
    if unlabelled and ranks.is_main and show_progress:
        count = len(dataset)  # type: ignore[arg-type]
        print(
            f"evaluate: labels: {len(unlabelled)} of {count} image(s) have no class, such as "
            f"{unlabelled[0]!r}; target 'top1' needs none",
            file=sys.stderr,
        )
    # A model the caller lends is given back with its own training flags.
    lent = contextlib.nullcontext() if model is None else evaluation_mode(model)
    try:
        with lent:
            if model is None:
                # Seeded: a factory of random weights builds the same ones for a resumed run.
                with seeded(config.seed, device):
                    model = load_model(config.model, device)[0]
            else:
                model = model.to(device)
            try:
                first = first_input(dataset)
            except NoReadableImage as error:
                written = OutputFolder(out, ranks).write_refused_errors(error.errors)
                listed = f" (all of them in {str(written)!r})" if written else ""
                raise EvaluationError(f"{error}{listed}") from None
            # Every usage error is found here, on one image, before run.json claims the
            # folder: a corrected command can then use the same folder.
            described = check_on_first_input(model, first.to(device), dataset, config)
            # A fixed pass size, rather than one measured on the first call, so that a batch
            # gives the same bits whenever and wherever it is computed.
            options = scoring.fixed(device, config.batch_size)
            runs = build_methods(
                config.methods,
                model,
                [layer.name for layer in described],
                options=options,
                reshape=config.reshape,
                spatial_dims=first.dim() - 2,
            )
            run = _Run(out, config, dataset, model, runs, described, device, ranks, localisation)
            with run.folder.claim(run.configuration()):
                run.check_finished_images()
                merged = run.merged()
                run.compute(num_workers, options, show_progress)
                ranks.barrier()
                if ranks.is_main and not merged:
                    run.merge()
                ranks.barrier()
        return Report.read(out)
    finally:
        _distributed.stop(ranks)


def _as_list(samples: list[Sample]) -> list[Sample]:
    return samples


def _other_shape(found: torch.Size, shape: torch.Size) -> str:
    def text(size: torch.Size) -> str:
        return " x ".join(str(side) for side in size)

    return (
        f"its input is {text(found)}, the first image's {text(shape)}: the inputs of a run "
        "share one size; give the preprocessing one (--size)"
    )


def _seed(seed: int, method: str, batch: int) -> int:
    # Per method and batch, so that a batch's maps are the same whoever computes it, when.
    return zlib.crc32(f"{seed}/{method}/{batch}".encode())


class _Run:
    """One evaluation in one output folder: its shards, the share of this process, the merge.

    Args:
        runs: The methods' runs (:func:`build_methods` of ``config.methods``).
        layers: Poly-CAM's layers, described.
    """

    def __init__(
        self,
        out: Path,
        config: EvaluationConfig,
        dataset: Dataset[Sample],
        model: nn.Module,
        runs: list[Run],
        layers: list[LayerInfo],
        device: torch.device,
        ranks: _distributed.Ranks,
        localisation: Localisation | None = None,
    ) -> None:
        self.out = out
        self.localisation = localisation
        self.config = config
        self.dataset = dataset
        self.model = model
        self.runs = runs
        # The methods in the configuration's order, the order of the artefacts.
        by_name = {method.name: method for run in runs for method in run.methods}
        self.methods = [by_name[name] for name in config.methods]
        self.layers = [layer.name for layer in layers]
        self.channels = sum(layer.channels for layer in layers)
        self.device = device
        self.ranks = ranks
        self.count = len(dataset)  # type: ignore[arg-type]
        self.batches = range((self.count + config.batch_size - 1) // config.batch_size)
        self.model_stem = model_file_stem(config.model)
        self.model_digest = model_digest(model)
        self.folder = OutputFolder(out, ranks)

    @functools.cached_property
    def input_shape(self) -> torch.Size:
        """The shape of every input of the run, ``C x *spatial``: the first readable image's,
        whichever batches this process computes."""
        return first_input(self.dataset).shape[1:]

    def shard(self, method: Method, batch: int) -> Path:
        return self.out / "shards" / method_file_stem(method.name) / f"{batch:06d}.npz"

    def configuration(self) -> dict[str, Any]:
        names = getattr(self.dataset, "names", None)
        labels = getattr(self.dataset, "labels", None) or {}
        digest = (
            None
            if names is None
            else image_list_digest(names, [labels.get(name) for name in names])
        )
        return {
            **self.config.as_dict(),
            MODEL_DIGEST: self.model_digest,
            "layers": self.layers,
            "device": self.device.type,
            "dtype": "float32"
            if self.config.precision == "fp32"
            else (f"float32, perturbed passes under {self.config.precision} autocast"),
            "images": {"count": self.count, "sha256": digest},
            "method_parameters": {m.name: m.parameters for m in self.methods},
            "ground_truth": self.localisation and self.localisation.configuration(),
        }

    def check_finished_images(self) -> None:
        """Refuse to resume on images whose content differs from those already computed.

        Names and labels are in the configuration; the content is checked here, against the
        digests the shards recorded, by hashing (not decoding) the images of this process's
        batches that have a shard. The digests of the other images are taken as they are
        read for computing.
        """
        digest = getattr(self.dataset, "digest", None)
        if digest is None:
            return
        changed = []
        for batch in self.mine():
            done = [self.shard(m, batch) for m in self.methods if self.shard(m, batch).exists()]
            if not done:
                continue
            recorded = read_npz(done[0])
            for index, name, before in zip(
                self.images_of(batch),
                recorded["image_names"],
                recorded["image_digests"],
                strict=True,
            ):
                if (digest(index) or "") != before:
                    changed.append(str(name))
        if changed:
            raise EvaluationError(
                f"images: {len(changed)} image(s) differ from those the run in "
                f"{str(self.out)!r} was computed on: {', '.join(changed[:10])}"
                f"{' ...' * (len(changed) > 10)}; use a new folder for other images"
            )

    def merged(self) -> bool:
        """Whether the run was finished and merged before, with every shard still there:
        then nothing is computed, and the record and the artefacts are left as they are."""
        return "finished" in self.folder.record() and all(
            self.shard(method, batch).exists() for method in self.methods for batch in self.batches
        )

    def mine(self) -> range:
        """This process's batches: ``rank``, ``rank + world``, ..."""
        return self.batches[self.ranks.rank :: self.ranks.world]

    def images_of(self, batch: int) -> range:
        size = self.config.batch_size
        return range(batch * size, min((batch + 1) * size, self.count))

    def pending(self) -> list[int]:
        return [b for b in self.mine() if not all(self.shard(m, b).exists() for m in self.methods)]

    def compute(self, num_workers: int, options: ScoringOptions, show_progress: bool) -> None:
        pending = self.pending()
        indices = [list(self.images_of(b)) for b in pending]
        loader = DataLoader(
            self.dataset, batch_sampler=indices, num_workers=num_workers, collate_fn=_as_list
        )
        keywords = dataclasses.asdict(options)
        insertion_deletion = InsertionDeletion(
            self.model, self.config.n_steps, self.config.baseline, **keywords
        )
        confidence = ConfidenceChange(self.model, **keywords)
        # Every forward pass of the job is counted, Poly-CAM's and the metrics', so that the
        # progress moves inside a batch; the time left follows from the passes expected.
        name = f"evaluate (rank {self.ranks.rank})" if self.ranks.world > 1 else "evaluate"
        images = sum(map(len, indices))
        expected = [self.expected_passes(batch) for batch in indices]
        job = Progress(name, sum(expected), mode=progress_mode(show_progress))
        first = 1
        with job.current():
            for index, samples, guess in zip(pending, loader, expected, strict=True):
                job.describe(f"images {first}-{first + len(samples) - 1} of {images}")
                first += len(samples)
                before = job.done
                batch = _Batch(
                    index,
                    samples,
                    self.config.target,
                    self.device,
                    insertion_deletion.scorer,
                    self.input_shape,
                )
                self._compute_batch(batch, insertion_deletion, confidence)
                # Dead channels are never forwarded: the batch may have cost less than guessed.
                job.expect(job.done - before - guess)

    def expected_passes(self, images: Sequence[int]) -> int:
        """At most how many forward passes the methods and metrics make on ``images``: each
        run's masked passes, each map's insertion and deletion steps and masked input, and
        for max-sensitivity 10 noisy runs for each output."""
        per_run = [run.masked_passes_per_image(self.channels) for run in self.runs]
        noisy = [len(run.methods) * masked for run, masked in zip(self.runs, per_run, strict=True)]
        metrics = len(self.methods) * (2 * self.config.n_steps + 1)
        sensitive = sum(1 for i in images if i < self.config.sensitivity_images)
        return len(images) * (sum(per_run) + metrics) + sensitive * 10 * sum(noisy)

    def _compute_batch(
        self, batch: _Batch, insertion_deletion: InsertionDeletion, confidence: ConfidenceChange
    ) -> None:
        todo = [m for m in self.methods if not self.shard(m, batch.index).exists()]
        # Rows of this batch among the first `sensitivity_images` images of the list.
        start = batch.index * self.config.batch_size
        sensitive = [
            row
            for row, offset in enumerate(batch.offsets)
            if start + offset < self.config.sensitivity_images
        ]
        # Each run is asked once for the maps of its outputs that have no shard yet, seeded by
        # the first of them; its time is shared by them.
        maps: dict[str, Tensor] = {}
        fidelity: dict[str, Tensor] = {}
        seconds: dict[str, float] = {}
        run_of: dict[str, Run] = {}
        pending = {method.name for method in todo}
        for run in self.runs:
            asked = [method.name for method in run.methods if method.name in pending]
            if not asked:
                continue
            started = time.perf_counter()
            outputs = (
                self._seeded(asked[0], batch, run.explain, batch.inputs, batch.targets)
                if len(batch)
                else RunMaps(dict.fromkeys(asked, torch.empty(0, 1, 1, 1)))
            )
            elapsed = time.perf_counter() - started
            for name in asked:
                maps[name] = outputs.maps[name]
                if outputs.fidelity is not None:
                    fidelity[name] = outputs.fidelity
                seconds[name] = elapsed / len(asked)
                run_of[name] = run
        rows = torch.tensor(sensitive, dtype=torch.long, device=self.device)
        # The ground truth of the batch's targets, and the centre prior's values on it, are
        # the same for every method: computed once, recorded in each method's shard.
        truth: dict[str, np.ndarray] = {}
        if self.localisation is not None:
            batch_truth = self.localisation.batch(batch.samples, batch.targets)
            truth = batch_truth.arrays() | self.localisation.prior_values(batch_truth)
        for method in todo:
            started = time.perf_counter()
            arrays = self._metrics(batch, maps[method.name], insertion_deletion, confidence)
            if self.localisation is not None:
                arrays |= truth | self.localisation.values(batch_truth, maps[method.name])
            sensitivity = np.full(len(batch), np.nan, dtype=np.float32)
            if sensitive:
                result = self._seeded(
                    method.name,
                    batch,
                    _sensitivity,
                    run_of[method.name],
                    method.name,
                    batch.inputs[rows],
                    batch.targets[rows],
                    maps[method.name][rows],
                )
                sensitivity[sensitive] = result.cpu().numpy()
            arrays[SENSITIVITY_MAX] = sensitivity
            # A budgeted Poly-CAM map's estimated fidelity, per image; NaN for other methods.
            estimate = fidelity.get(method.name)
            arrays[FIDELITY] = (
                np.full(len(batch), np.nan, dtype=np.float32)
                if estimate is None
                else estimate.cpu().numpy().astype(np.float32)
            )
            # Wall times, for planning runs (run.json); the artefacts never include them.
            arrays["map_seconds"] = np.float64(seconds[method.name])
            arrays["metric_seconds"] = np.float64(time.perf_counter() - started)
            write_npz(self.shard(method, batch.index), arrays.items())

    def _seeded(self, method: str, batch: _Batch, compute: Callable[..., _T], *args: Any) -> _T:
        """``compute(*args)`` with the random generators seeded for this method and batch."""
        with seeded(_seed(self.config.seed, method, batch.index), self.device):
            return compute(*args)

    def _metrics(
        self,
        batch: _Batch,
        maps: Tensor,
        insertion_deletion: InsertionDeletion,
        confidence: ConfidenceChange,
    ) -> dict[str, np.ndarray]:
        steps = self.config.n_steps
        arrays: dict[str, Any] = {
            "names": np.array(batch.names, dtype=str),
            "maps": maps.squeeze(1).cpu().numpy().astype(np.float32),
            "targets": batch.targets.cpu().numpy().astype(np.int64),
            "error_names": np.array([name for name, _ in batch.errors], dtype=str),
            "error_messages": np.array([message for _, message in batch.errors], dtype=str),
            "image_names": np.array(batch.image_names, dtype=str),
            "image_digests": np.array(batch.image_digests, dtype=str),
        }
        if not len(batch):
            empty = np.zeros(0, dtype=np.float32)
            arrays |= {
                **dict.fromkeys((INSERTION, DELETION, AVERAGE_DROP, INCREASE_IN_CONFIDENCE), empty),
                "clean_score": empty,
                INSERTION_CURVE: np.zeros((0, steps), np.float32),
                DELETION_CURVE: np.zeros((0, steps), np.float32),
                "fractions": np.zeros(0, np.float32),
            }
            return arrays
        curves = insertion_deletion.curves(
            batch.inputs, maps, batch.targets, prepared=batch.prepared
        )
        change = confidence(batch.inputs, maps, batch.targets, prepared=batch.prepared)
        arrays |= {
            INSERTION: curves[INSERTION].auc,
            DELETION: curves[DELETION].auc,
            INSERTION_CURVE: curves[INSERTION].curve,
            DELETION_CURVE: curves[DELETION].curve,
            "fractions": curves[INSERTION].fractions,
            "clean_score": change.clean,
            **change.as_dict(),  # average drop and increase in confidence, in percent
        }
        return {key: v.cpu().numpy() if isinstance(v, Tensor) else v for key, v in arrays.items()}

    def photos(self, places: Mapping[str, int]) -> Callable[[str], Tensor | None]:
        """``photo(name)`` for the overlays of report.html: the image at ``places[name]`` in
        the list, read once more, as a photo in ``[0, 1]`` (a scan as its ``C x D x H x W``
        input, already there); ``None`` for a name not in ``places`` or an image that cannot
        be read. Asked in any order."""
        preprocessing = self.config.preprocessing

        def photo(name: str) -> Tensor | None:
            if name not in places:
                return None
            sample = self.dataset[places[name]]
            if sample.inputs is None:
                return None
            if preprocessing is None:  # a dataset's own inputs: stretched to be seen
                return min_max(sample.inputs[None])[0]
            if isinstance(preprocessing, VolumeIntensity):  # scaled to [0, 1], not normalised
                return sample.inputs.cpu()
            mean = torch.tensor(preprocessing.mean)[:, None, None]
            std = torch.tensor(preprocessing.std)[:, None, None]
            return (sample.inputs.cpu() * std + mean).clamp(0.0, 1.0)

        return photo

    def recorded_images(self) -> tuple[str, dict[str, int]]:
        """What the shards of the first method recorded of the images, in the list's order:
        the SHA-256 of their contents' digests, and each image's place in the list by name
        (the first, for a name given twice)."""
        contents = hashlib.sha256()
        places: dict[str, int] = {}
        for batch, shard in zip(self.batches, self.shards(self.methods[0]), strict=True):
            for index, name, digest in zip(
                self.images_of(batch),
                shard["image_names"].tolist(),
                shard["image_digests"].tolist(),
                strict=True,
            ):
                contents.update(f"{digest}\n".encode())
                places.setdefault(name, index)
        return contents.hexdigest(), places

    def shards(self, method: Method) -> Iterator[dict[str, np.ndarray]]:
        for batch in self.batches:
            path = self.shard(method, batch)
            if not path.exists():
                raise EvaluationError(f"out: the shard {str(path)!r} is missing; rerun to finish")
            yield read_npz(path)

    def merge(self) -> None:
        """Write the final artefacts from the shards, in the order of the image list, then
        the page from the final record, and the record last: a record that says
        ``finished`` means that every artefact is written."""
        write_report(
            self.out,
            self.model_stem,
            [(m.name, self.shards(m)) for m in self.methods],
            self.config.n_steps,
        )
        timings = {}
        for method in self.methods:
            totals = {"map_seconds": 0.0, "metric_seconds": 0.0, "images": 0}
            for shard in self.shards(method):
                totals["map_seconds"] += float(shard["map_seconds"])
                totals["metric_seconds"] += float(shard["metric_seconds"])
                totals["images"] += len(shard["names"])
            images = max(totals["images"], 1)
            timings[method.name] = {
                "map_seconds_per_image": totals["map_seconds"] / images,
                "metric_seconds_per_image": totals["metric_seconds"] / images,
            }
        contents, places = self.recorded_images()
        record = self.folder.record() | {
            "finished": now(),
            "images_content_sha256": contents,
            "versions": {
                "captum_polycam": captum_polycam.__version__,
                "torch": torch.__version__,
                "captum": captum.__version__,
                "numpy": np.__version__,
                "python": platform.python_version(),
            },
            "device_name": _device_name(self.device),
            "processes": self.ranks.world,
            "timings": timings,
        }
        write_html_report(self.out, self.photos(places), record)
        self.folder.write_record(record)


def _sensitivity(run: Run, method: str, inputs: Tensor, targets: Tensor, maps: Tensor) -> Tensor:
    """The max-sensitivity of ``run``'s output ``method``, whose clean ``maps`` are known: the
    run explains each noisy batch, and this output of it is taken."""

    def explain(noisy: Tensor, target: Tensor) -> Tensor:
        return run.explain(noisy, target).maps[method]

    return Sensitivity(explain, n_perturb_samples=10, perturb_radius=0.02)(
        inputs, target=targets, explanations=maps
    ).max


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()
