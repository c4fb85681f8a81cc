"""The pass budget's rules replayed on exact scores: fidelity and its estimate, photo by photo.

Every budgeted map is a function of the channels' scores, so one exact PCAM+- run per photo
(its unveiled and hidden scores of every channel give PCAM+'s and PCAM+-'s weights) lets any
budget be replayed without a forward pass: the package's own ``spend_budget`` chooses the
channels, reads their scores from the record as the engine would have computed them, and
builds the map with Poly-CAM's formulas. Printed for each variant and budget (and ``auto``):

- passes run over the exact number, mean and largest over the photos;
- Spearman's rank correlation of the map with the exact map: worst photo, median, mean;
- the map's estimated fidelity (``PolyCamMaps.fidelity``) minus the true correlation:
  largest (the most it overstated) and median, and the estimate on the worst photo;
- with ``--insertion``, the change of the insertion and deletion areas (the paper's
  protocol: 224 steps, blurred baseline, softmax), mean of the absolute changes.

The exact scores are collected once per photo into ``--cache`` (about 40 s per photo on 2 CPU
cores for EfficientNet-Lite0; the replay then takes seconds). Run: ``python
benchmarks/pass_budget_replay.py [--photos DIR ...] [--budgets 0.1,0.2,0.33,auto]
[--insertion]``; by default the bundled photos and, where the folder is there,
``../shared/photos/imagenet-25``. Run nothing else beside the collection.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from captum_polycam import InsertionDeletion, PolyCam, tune_cpu_allocator
from captum_polycam.attr.budget import AUTO, spend_budget
from captum_polycam.attr.maps import backward_recursion
from captum_polycam.attr.poly_cam import _features, _layer_maps, _LayerMasks, _stages
from captum_polycam.resources import ImageFolder, load_model
from captum_polycam.resources.images import bundled_folder

ROOT = Path(__file__).resolve().parents[1]
DEVELOPMENT = ROOT.parent / "shared" / "photos" / "imagenet-25"
VARIANTS = {"plus": "PCAM+", "plusminus": "PCAM+-"}


def collect(model: torch.nn.Module, folder: Path, cache: Path) -> list[Path]:
    """One exact PCAM+- run per photo of ``folder`` (top-1 class), its activations and every
    channel's scores saved to ``cache``; photos already there are not run again."""
    photos = ImageFolder(folder)
    paths = []
    for index, name in enumerate(photos.names):
        path = cache / f"{folder.name}-{index:03d}.pt"
        paths.append(path)
        if path.exists():
            continue
        inputs = photos[index].inputs[None].contiguous(memory_format=torch.channels_last)
        began = time.perf_counter()
        torch.save({"name": name, **exact_record(model, inputs)}, path)
        print(f"collected {name}: {time.perf_counter() - began:.0f} s", flush=True)
    return paths


def exact_record(model: torch.nn.Module, inputs: torch.Tensor) -> dict[str, Any]:
    """An exact PCAM+- run on ``inputs`` (one photo, its top-1 class): the engine's own
    activations and scores of every channel, read as they pass."""
    polycam = PolyCam(model, variant="plusminus")
    seen: dict[str, Any] = {}
    maps, score_masks = polycam._maps, polycam._score_masks

    def spy_maps(batch: Any, activations: list[torch.Tensor], *args: Any) -> Any:
        seen["activations"], seen["clean"] = activations, batch.target_scores
        return maps(batch, activations, *args)

    def spy_scores(*args: Any, **kwargs: Any) -> Any:
        seen["scores"] = score_masks(*args, **kwargs)
        return seen["scores"]

    polycam._maps, polycam._score_masks = spy_maps, spy_scores  # type: ignore[method-assign]
    polycam.decompose(inputs)
    scores = seen["scores"]
    return {
        "inputs": inputs,
        "target": _top1(model, inputs),
        "activations": seen["activations"],
        "clean": seen["clean"],
        "black": scores.black,
        "unveiled": scores.unveiled,
        "hidden": scores.hidden,
    }


def _top1(model: torch.nn.Module, inputs: torch.Tensor) -> int:
    with torch.no_grad():
        return int(model(inputs).argmax(dim=1))


class Record:
    """One photo's exact scores, and the maps any choice of scored channels gives."""

    def __init__(self, path: Path) -> None:
        data = torch.load(path, weights_only=False)
        self.name, self.inputs, self.target = data["name"], data["inputs"], data["target"]
        self.activations = data["activations"]
        self.clean, self.black = data["clean"], data["black"]
        self.unveiled, self.hidden = data["unveiled"], data["hidden"]
        self.layers = [_LayerMasks.of(activation) for activation in self.activations]
        self.live = [layer.live for layer in self.layers]
        self.masses = [activation.relu().sum(dim=(2, 3)) for activation in self.activations]

    def weights_of(self, variant: str, scored: torch.Tensor) -> torch.Tensor:
        """The weights the engine gives when it scores ``scored``: the others as dead ones."""
        unveiled = torch.where(scored, self.unveiled, self.black[:, None])
        hidden = torch.where(scored, self.hidden, self.clean[:, None])
        if variant == "plus":
            return unveiled
        return (unveiled + self.clean[:, None] - hidden).relu()

    def composite(self, weights: torch.Tensor) -> torch.Tensor:
        return backward_recursion(_layer_maps(weights, self.activations), True)[-1].flatten(1)

    def map_of(self, weights: torch.Tensor) -> torch.Tensor:
        size = tuple(self.inputs.shape[-2:])
        return _stages(_layer_maps(weights, self.activations), True, size)[-1]

    def replay(self, variant: str, budget: float | str) -> tuple[torch.Tensor, float, float]:
        """The budgeted map, its estimated fidelity and the fraction of the passes run."""
        spent = spend_budget(
            budget,
            self.masses,
            self.live,
            lambda scored: self.weights_of(variant, scored),
            self.composite,
            (lambda: _features(self.layers)) if variant == "plusminus" else None,
        )
        live = torch.cat(self.live, dim=1)
        return (
            self.map_of(spent.weights),
            float(spent.fidelity[0]),
            float(spent.scored.sum() / live.sum()),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, action="append")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "pass-budget")
    parser.add_argument("--budgets", default="0.1,0.2,0.33,0.5,auto")
    parser.add_argument("--variants", default="plus,plusminus")
    parser.add_argument("--insertion", action="store_true")
    args = parser.parse_args()
    tune_cpu_allocator()
    folders = args.photos or [bundled_folder(), *[DEVELOPMENT] * DEVELOPMENT.is_dir()]
    args.cache.mkdir(parents=True, exist_ok=True)
    model = load_model("efficientnet-lite0", "cpu")[0]
    paths = [path for folder in folders for path in collect(model, folder, args.cache)]
    records = [Record(path) for path in paths]
    print(
        f"EfficientNet-Lite0, discovered layers, top-1 classes, {len(records)} photos from "
        f"{', '.join(folder.name for folder in folders)}, torch {torch.__version__}"
    )
    metric = InsertionDeletion(model) if args.insertion else None
    print(
        f"{'variant':<8}{'budget':>7}{'passes mean/max':>17}{'spearman worst/med/mean':>26}"
        f"{'est-true max/med':>18}{'est on worst':>13}" + ("  |d ins|  |d del|" if metric else "")
    )
    for variant in args.variants.split(","):
        exact = [
            record.map_of(record.weights_of(variant, torch.cat(record.live, 1)))
            for record in records
        ]
        exact_curves = _curves(metric, records, exact) if metric else None
        for text in args.budgets.split(","):
            budget: float | str = text if text == AUTO else float(text)
            replayed = [record.replay(variant, budget) for record in records]
            maps = [map_ for map_, _, _ in replayed]
            estimate = np.array([fidelity for _, fidelity, _ in replayed])
            fraction = np.array([spent for _, _, spent in replayed])
            true = np.array(
                [
                    spearmanr(a.flatten().numpy(), b.flatten().numpy()).statistic
                    for a, b in zip(maps, exact, strict=True)
                ]
            )
            over = estimate - true
            line = (
                f"{VARIANTS[variant]:<8}{text:>7}{fraction.mean():>9.3f} /{fraction.max():>6.3f}"
                f"{true.min():>11.4f} /{np.median(true):>6.4f} /{true.mean():>6.4f}"
                f"{np.nanmax(over):>+10.4f} /{np.nanmedian(over):>+7.4f}"
                f"{estimate[true.argmin()]:>13.4f}"
            )
            if metric is not None and exact_curves is not None:
                curves = _curves(metric, records, maps)
                line += "".join(
                    f"{float((curves[kind] - exact_curves[kind]).abs().mean()):>9.4f}"
                    for kind in ("insertion", "deletion")
                )
            print(line, flush=True)


def _curves(
    metric: InsertionDeletion, records: list[Record], maps: list[torch.Tensor]
) -> dict[str, torch.Tensor]:
    inputs = torch.cat([record.inputs for record in records])
    targets = torch.tensor([record.target for record in records])
    result = metric.curves(inputs, torch.cat(maps), targets)
    return {kind: result[kind].auc for kind in ("insertion", "deletion")}


if __name__ == "__main__":
    main()
