"""The cascading-randomisation sanity check of Adebayo et al. (2018), "Sanity Checks for
Saliency Maps".

A saliency method that explains the model should produce different maps once the model's
learned parameters are destroyed. The check re-initialises the model's parameterised blocks
one at a time, from the output backwards and cumulatively, and measures how similar each
method's maps stay to the maps of the original model: a trustworthy method's similarity decays,
while a method blind to the parameters (an edge detector, say) keeps its maps.

Example:
    >>> result = sanity_check(model, inputs, ["pcam+", "gradcam"], steps=[1, 5, 21])
    >>> print(result.to_markdown())
"""

from __future__ import annotations

import copy
import csv
import importlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from captum_polycam._conventions import check_inputs, evaluation_mode, seeded
from captum_polycam._progress import Progress, progress_mode
from captum_polycam.attr.capture import Reshape, reshape_function
from captum_polycam.evaluation.config import checked_layers
from captum_polycam.evaluation.methods import build_methods
from captum_polycam.perturbation.options import ScoringOptions
from captum_polycam.resources.errors import EvaluationError

__all__ = ["MEASURES", "SanityResult", "map_similarity", "randomisation_blocks", "sanity_check"]

MEASURES = ("spearman", "ssim", "hog")
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
# Histograms of oriented gradients: Dalal and Triggs' 9 unsigned orientations, 8 x 8-pixel cells
# and 2 x 2-cell blocks, with cells shrunk for maps under 16 pixels so that one block fits.
_HOG_ORIENTATIONS = 9
_HOG_CELL = 8
_HOG_BLOCK = 2


def _require(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise EvaluationError(
            f'the sanity check needs {package}: pip install "captum-polycam[examples]"'
        ) from None


def randomisation_blocks(model: nn.Module, inputs: Tensor) -> list[str]:
    r"""The model's parameterised blocks, in the order they first run in a forward pass.

    A block is a child of the model, or of a block container (``nn.Sequential``,
    ``nn.ModuleList``, ``nn.ModuleDict``), that holds parameters; containers are expanded into
    their children rather than being blocks themselves. The model runs once on the first example
    of ``inputs``, in evaluation mode and without gradients; its training flags are restored.
    Blocks that do not run are left out.

    Args:
        model: The network.
        inputs: A batch shaped like the ones to explain, ``N x C x H x W``.

    Returns:
        The blocks' dotted names, input side first.

    Raises:
        EvaluationError: No parameterised block runs in the forward pass.

    Example:
        >>> randomisation_blocks(torchvision.models.resnet18(), torch.rand(1, 3, 64, 64))
        ['conv1', 'bn1', 'layer1.0', 'layer1.1', 'layer2.0', ..., 'layer4.1', 'fc']
    """
    candidates = dict(_parameterised_children(model, ""))
    first_calls: list[str] = []

    def record(name: str) -> Callable[[nn.Module, Any], None]:
        def hook(module: nn.Module, args: Any) -> None:
            if name not in first_calls:
                first_calls.append(name)

        return hook

    handles = [
        module.register_forward_pre_hook(record(name)) for name, module in candidates.items()
    ]
    try:
        with evaluation_mode(model), torch.no_grad():
            model(inputs[:1])
    finally:
        for handle in handles:
            handle.remove()
    if not first_calls:
        raise EvaluationError("model: no module with parameters runs in its forward pass")
    return first_calls


def _parameterised_children(module: nn.Module, prefix: str) -> Iterator[tuple[str, nn.Module]]:
    for name, child in module.named_children():
        if isinstance(child, _CONTAINERS):
            yield from _parameterised_children(child, f"{prefix}{name}.")
        elif next(child.parameters(), None) is not None:
            yield f"{prefix}{name}", child


def _reinitialise(block: nn.Module, seed: int, device: torch.device) -> None:
    """Redraw every parameter of ``block``: ``reset_parameters()`` of each submodule that has it
    (PyTorch's own initialisation; batch norm also resets its running statistics), then the
    parameters left, from ``N(0, std)`` of their current values (zero for single values)."""
    with seeded(seed, device), torch.no_grad():
        redrawn: set[int] = set()
        for module in block.modules():
            if callable(getattr(module, "reset_parameters", None)):
                module.reset_parameters()
                redrawn.update(id(parameter) for parameter in module.parameters(recurse=False))
        for parameter in block.parameters():
            if id(parameter) in redrawn:
                continue
            if parameter.numel() > 1:
                nn.init.normal_(parameter, 0.0, float(parameter.std()))
            else:
                nn.init.zeros_(parameter)


def map_similarity(reference: Tensor, maps: Tensor) -> dict[str, Tensor]:
    r"""How similar each map is to its reference, by the three measures of Adebayo et al.

    - ``spearman``: Spearman's rank correlation of the pixels;
    - ``ssim``: the structural similarity index (scikit-image, 7 x 7 windows, data range 1);
    - ``hog``: Pearson's correlation of the maps' histograms of oriented gradients (9
      orientations, 8 x 8-pixel cells, 2 x 2-cell blocks).

    A correlation is undefined when either side is constant (a blank map, say): it is then 1 if
    the two maps are identical and 0 otherwise. Identical maps score 1 on every measure.

    Args:
        reference: ``N x 1 x H x W`` (or ``N x H x W``) maps in ``[0, 1]``.
        maps: Maps of the same shape.

    Returns:
        Each measure's ``(N,)`` float64 similarities, on the CPU.

    Raises:
        EvaluationError: The shapes differ, or scipy or scikit-image is missing.

    Example:
        >>> ramp = torch.linspace(0, 1, 256).view(1, 1, 16, 16)
        >>> map_similarity(ramp, 1 - ramp)["spearman"]
        tensor([-1.0000], dtype=torch.float64)
    """
    if reference.shape != maps.shape or reference.dim() not in (3, 4):
        raise EvaluationError(
            f"maps: expected two N x 1 x H x W batches of the same shape; got "
            f"{tuple(reference.shape)} and {tuple(maps.shape)}"
        )
    stats = _require("scipy.stats")
    metrics = _require("skimage.metrics")
    feature = _require("skimage.feature")

    def correlation(first: np.ndarray, second: np.ndarray, *, rank: bool) -> float:
        if first.min() == first.max() or second.min() == second.max():
            return 0.0  # identical maps were handled before
        if rank:
            return float(stats.spearmanr(first, second).statistic)
        return float(np.corrcoef(first, second)[0, 1])

    def hog(image: np.ndarray) -> np.ndarray:
        cell = max(1, min(_HOG_CELL, min(image.shape) // _HOG_BLOCK))
        return feature.hog(
            image,
            orientations=_HOG_ORIENTATIONS,
            pixels_per_cell=(cell, cell),
            cells_per_block=(_HOG_BLOCK, _HOG_BLOCK),
        )

    scores: dict[str, list[float]] = {measure: [] for measure in MEASURES}
    height, width = reference.shape[-2:]
    as_images = (
        batch.detach().cpu().double().reshape(-1, height, width).numpy()
        for batch in (reference, maps)
    )
    for first, second in zip(*as_images, strict=True):
        if np.array_equal(first, second):
            values = dict.fromkeys(MEASURES, 1.0)
        else:
            values = {
                "spearman": correlation(first.ravel(), second.ravel(), rank=True),
                "ssim": float(metrics.structural_similarity(first, second, data_range=1.0)),
                "hog": correlation(hog(first), hog(second), rank=False),
            }
        for measure in MEASURES:
            scores[measure].append(values[measure])
    return {
        measure: torch.tensor(values, dtype=torch.float64) for measure, values in scores.items()
    }


@dataclass(frozen=True)
class SanityResult:
    """The maps and similarities of a cascading-randomisation check.

    Attributes:
        blocks: Every parameterised block, in the order the cascade randomises them (output
            first).
        steps: The checkpoints: how many blocks were randomised, from 0 (the original model).
        maps: Each method's ``len(steps) x N x 1 x H x W`` maps, on the CPU.
        similarity: For each method and measure (``"spearman"``, ``"ssim"``, ``"hog"``), the
            ``len(steps) x N`` similarity of each map to the original model's (1 at step 0).
    """

    blocks: list[str]
    steps: list[int]
    maps: dict[str, Tensor]
    similarity: dict[str, dict[str, Tensor]]

    def table(self) -> list[dict[str, Any]]:
        """One row per method and checkpoint: ``method``, ``step``, ``randomised`` (the last
        block randomised, ``""`` at step 0) and each measure's mean over the images."""
        return [
            {
                "method": method,
                "step": step,
                "randomised": self.blocks[step - 1] if step else "",
                **{measure: float(values[index].mean()) for measure, values in measures.items()},
            }
            for method, measures in self.similarity.items()
            for index, step in enumerate(self.steps)
        ]

    def to_csv(self, path: str | Path) -> None:
        """Write :meth:`table` as a CSV file with a header row."""
        with open(path, "w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, fieldnames=["method", "step", "randomised", *MEASURES])
            writer.writeheader()
            writer.writerows(self.table())

    def to_markdown(self) -> str:
        """:meth:`table` as a Markdown table, similarities to three decimals."""
        header = ["method", "step", "randomised", *MEASURES]
        lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for row in self.table():
            cells = [row["method"], str(row["step"]), row["randomised"] or "(none)"]
            cells += [f"{row[measure]:.3f}" for measure in MEASURES]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def plot(self, path: str | Path) -> None:
        """Save a figure, in the format of ``path``'s suffix (PNG without one): one panel per
        measure with each method's mean similarity against the number of blocks randomised,
        and below, each method's map of the first image at every checkpoint (one row per
        method)."""
        _require("matplotlib")
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        methods = list(self.maps)
        # Thumbnails shrink so that every checkpoint fits a page-wide figure (22 for Lite0).
        width = 4.0 * len(MEASURES)
        thumbnail = min(1.2, (width - 1.0) / len(self.steps))
        heights = [3.4, thumbnail * len(methods) + 0.3]
        figure = Figure(figsize=(width, sum(heights)), layout="constrained")
        FigureCanvasAgg(figure)  # no pyplot: no global state, works without a display
        curves, thumbnails = figure.subfigures(2, 1, height_ratios=heights)
        for axes, measure in zip(curves.subplots(1, len(MEASURES)), MEASURES, strict=True):
            for method in methods:
                means = self.similarity[method][measure].mean(dim=1)
                axes.plot(self.steps, means.numpy(), marker="o", label=method)
            axes.set(
                title=measure,
                xlabel="blocks randomised, from the output",
                ylabel="similarity to the original maps",
            )
            axes.axhline(0.0, color="grey", linewidth=0.5)
        axes.legend()
        grid = thumbnails.subplots(len(methods), len(self.steps), squeeze=False)
        for row, method in enumerate(methods):
            for column, step in enumerate(self.steps):
                axes = grid[row, column]
                axes.imshow(self.maps[method][column, 0, 0].numpy(), cmap="jet", vmin=0, vmax=1)
                axes.set(xticks=[], yticks=[])
                if row == 0:
                    axes.set_title(str(step), fontsize="small")
            grid[row, 0].set_ylabel(method, rotation=0, horizontalalignment="right")
        figure.savefig(path)  # in the format of the suffix, as matplotlib reads it


def _checked_steps(steps: Sequence[int] | None, block_count: int) -> list[int]:
    if steps is None:
        return list(range(1, block_count + 1))
    wrong = [
        step
        for step in steps
        if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= block_count
    ]
    if wrong or not steps:
        raise EvaluationError(
            f"steps: numbers of blocks to randomise, integers from 1 to {block_count} (the model "
            f"has {block_count} parameterised blocks; 0, the original model, is always "
            f"included); got {list(steps)!r}"
        )
    return sorted(set(steps))


def _checked_targets(logits: Tensor, targets: Tensor | Sequence[int] | None) -> Tensor:
    if targets is None:
        return logits.argmax(dim=1)
    chosen = torch.as_tensor(targets, device=logits.device)
    if chosen.shape != (len(logits),) or chosen.is_floating_point() or chosen.is_complex():
        raise EvaluationError(
            f"targets: expected one class index per example, {len(logits)} integers; got "
            f"shape {tuple(chosen.shape)} of {chosen.dtype}"
        )
    if chosen.min() < 0 or chosen.max() >= logits.shape[1]:
        raise EvaluationError(f"targets: classes run from 0 to {logits.shape[1] - 1}")
    return chosen.long()


def sanity_check(
    model: nn.Module,
    inputs: Tensor,
    methods: Sequence[str],
    *,
    targets: Tensor | Sequence[int] | None = None,
    layers: Sequence[str] | None = None,
    reshape: Reshape | None = None,
    steps: Sequence[int] | None = None,
    seed: int = 0,
    perturbations_per_eval: int | None = None,
    show_progress: bool = False,
) -> SanityResult:
    r"""Randomise the model block by block from the output and compare each method's maps.

    The check works on a deep copy of ``model`` in evaluation mode; ``model`` itself is never
    changed. Its parameterised blocks (:func:`randomisation_blocks`) are re-initialised in
    reverse forward order, cumulatively: block ``k`` of the cascade (``k = 1`` is the one
    nearest the output) with the seed ``seed + k``, by ``reset_parameters()`` on each of its
    submodules that has it, then, for parameters no such method covers, a draw from
    ``N(0, std)`` of their current values (zeros when single values). At step 0 and at each of
    ``steps``, every method explains the same ``targets``, its random draws seeded with
    ``seed``, and its maps are compared with step 0's by :func:`map_similarity`.

    Args:
        model: The classifier, returning ``N x classes`` scores.
        inputs: The images, ``N x C x H x W``, on the model's device; explained in one batch.
        methods: Method names, as :func:`~captum_polycam.evaluation.methods.build_methods`
            takes them (``"pcam+"``, ``"gradcam"``, ``"random"``, ...).
        targets: One class per example; ``None`` for each example's top-1 class on the
            original model.
        layers: Poly-CAM's layers, shallow to deep (Grad-CAM uses the deepest); ``None`` for
            those :func:`~captum_polycam.describe_layers` finds on the original model.
        reshape: How the layers' outputs become ``N x C x h x w``, as
            ``PolyCam(reshape=...)`` takes it: ``"nhwc"`` for channels-last stages (Swin),
            ``"tokens"`` for tokens; Poly-CAM, Grad-CAM and discovery read the layers so.
        steps: The numbers of blocks randomised at which to explain, from 1 to the number of
            blocks (sorted, repeats ignored); ``None`` for every one.
        seed: The seed of the re-initialisation and of the methods' random draws. The caller's
            random generators are left as they were.
        perturbations_per_eval: Masked inputs per example and forward pass for Poly-CAM and
            occlusion; ``None`` for their defaults.
        show_progress: Report Poly-CAM's masked passes done out of those expected, with the
            rate and the time left: a bar on a terminal, otherwise a status line every 30 s
            and a final one.

    Returns:
        The blocks, checkpoints, maps and similarities.

    Raises:
        EvaluationError: ``inputs``, ``steps``, ``targets``, ``reshape``,
            ``perturbations_per_eval`` or a method name is invalid, or scipy or scikit-image
            is missing.

    Example:
        >>> result = sanity_check(model, inputs, ["pcam+", "gradcam"], steps=[1, 5, 21])
        >>> result.similarity["gradcam"]["spearman"].mean(dim=1)  # one value per checkpoint
        >>> result.plot("sanity.png")
    """
    try:
        check_inputs(inputs)
    except (TypeError, ValueError) as error:
        raise EvaluationError(
            f"inputs: expected a non-empty N x C x H x W tensor ({error})"
        ) from None
    try:
        reshape_function(reshape)
        options = ScoringOptions(perturbations_per_eval=perturbations_per_eval)
    except (TypeError, ValueError) as error:
        raise EvaluationError(str(error)) from None
    network = copy.deepcopy(model).eval()
    cascade = randomisation_blocks(network, inputs)[::-1]
    checkpoints = [0, *_checked_steps(steps, len(cascade))]
    with torch.no_grad():
        explained = _checked_targets(network(inputs), targets)
    described = checked_layers(network, inputs, layers, reshape)
    layers = [layer.name for layer in described]
    runs = build_methods(methods, network, layers, options=options, reshape=reshape)
    _require("scipy")  # fail before the long part, not after it
    _require("skimage")

    maps: dict[str, list[Tensor]] = {name: [] for name in methods}
    # Poly-CAM's masked passes are what takes the time: count them, guessed from the channels
    # (dead ones are skipped) and corrected after each checkpoint.
    channels = sum(layer.channels for layer in described)
    guess = len(inputs) * sum(run.masked_passes_per_image(channels) for run in runs)
    job = Progress("sanity", guess * len(checkpoints), mode=progress_mode(show_progress))
    randomised = 0
    with job.current():
        for number, step in enumerate(checkpoints, 1):
            job.describe(f"{step} block(s) randomised, checkpoint {number} of {len(checkpoints)}")
            while randomised < step:
                randomised += 1
                block = network.get_submodule(cascade[randomised - 1])
                _reinitialise(block, seed + randomised, inputs.device)
            before = job.done
            for run in runs:  # each asked once per checkpoint, for all its outputs
                with seeded(seed, inputs.device):
                    for name, output in run.explain(inputs, explained).maps.items():
                        maps[name].append(output.cpu())
            job.expect(job.done - before - guess)

    stacked = {name: torch.stack(per_step) for name, per_step in maps.items()}
    similarity = {}
    for name, per_step in stacked.items():
        scores = [map_similarity(per_step[0], at_step) for at_step in per_step]
        similarity[name] = {
            measure: torch.stack([score[measure] for score in scores]) for measure in MEASURES
        }
    return SanityResult(cascade, checkpoints, stacked, similarity)
