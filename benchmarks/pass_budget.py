"""Poly-CAM under a pass budget: passes, time and fidelity to the exact maps, side by side.

In one process, on the bundled photos (or those of ``--photos``), for PCAM+ and PCAM+- and each
budget (1 is exact; ``auto`` chooses it per photo):

- masked forward passes run per map, against the exact number;
- seconds per map (one photo per call, as a user explains an image), and the ratio to the
  exact map's time measured in the same run;
- fidelity to the exact map: Spearman's rank correlation (smallest, median and mean over the
  photos), the largest absolute difference, and the change of the insertion and deletion
  areas (the paper's protocol: 224 steps, blurred baseline, softmax), mean of the signed and
  of the absolute changes;
- the maps' own estimate of that correlation (``PolyCamMaps.fidelity``): the most it
  overstated the true value, and its value on the worst photo.

Run: ``python benchmarks/pass_budget.py [--photos DIR] [--model efficientnet-lite0]
[--device cuda] [--budgets 1,0.5,0.33,0.25,0.1,auto] [--variants plus,plusminus]
[--precision fp32] [--figure FILE.png]``. Fidelity needs a trained model;
run nothing else beside it (on a 2-core machine a second PyTorch job makes every figure several
times slower).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from captum_polycam import InsertionDeletion, PolyCam, tune_cpu_allocator
from captum_polycam.resources import ImageFolder, load_model
from captum_polycam.resources.images import bundled_folder

_NAMES = {"plus": "PCAM+", "minus": "PCAM-", "plusminus": "PCAM+-"}


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_maps(
    polycam: PolyCam, inputs: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, list[float], int, int, torch.Tensor]:
    """Each photo's map in a call of its own: maps, seconds per call, passes, exact passes and
    the estimated fidelities."""
    maps, seconds, passes, exact, fidelity = [], [], 0, 0, []
    for image, target in zip(inputs, targets, strict=True):
        synchronise(image.device)
        began = time.perf_counter()
        result = polycam.decompose(image[None], target[None])
        synchronise(image.device)
        seconds.append(time.perf_counter() - began)
        maps.append(result.maps)
        fidelity.append(result.fidelity.cpu())
        passes, exact = passes + result.passes, exact + result.exact_passes
    return torch.cat(maps), seconds, passes, exact, torch.cat(fidelity)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, help="a folder of photos (default: the bundled)")
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--budgets", default="1,0.5,0.33,0.25,0.1")
    parser.add_argument("--variants", default="plus,plusminus")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--figure", help="save fidelity against passes to this PNG")
    args = parser.parse_args()
    tune_cpu_allocator()  # as the command line does: no page faults on the CPU's passes

    device = torch.device(args.device)
    model = load_model(args.model, device)[0]
    photos = ImageFolder(args.photos or bundled_folder())
    inputs = torch.stack([photos[i].inputs for i in range(len(photos))]).to(device)
    with torch.no_grad():
        targets = model(inputs).argmax(dim=1)
    budgets: list[float | str] = [b if b == "auto" else float(b) for b in args.budgets.split(",")]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"{args.model}, discovered layers, {len(inputs)} photos of "
        f"{(args.photos or bundled_folder()).name} at 224 x 224, "
        f"{name}, {torch.get_num_threads()} threads, {args.precision}, "
        f"torch {torch.__version__}"
    )
    header = (
        f"{'variant':<8}{'budget':>7}{'passes':>8}{'of':>6}{'s/map':>8}{'x exact':>8}"
        f"{'spearman min/med/mean':>23}{'max diff':>9}{'d ins':>8}{'|d ins|':>8}"
        f"{'d del':>8}{'|d del|':>8}{'est-true max':>13}{'est worst':>10}"
    )
    print(header)
    metric = InsertionDeletion(model)
    frontier: dict[str, list[tuple[float, float, float]]] = {}
    for variant in args.variants.split(","):
        # Warm-up: measures the pass shape and warms the kernels, outside every timing.
        PolyCam(model, variant=variant, precision=args.precision, pass_budget=0.05).attribute(
            inputs[:1], targets[:1]
        )
        exact_maps, exact_seconds, exact_curves = None, None, None
        for budget in budgets:
            polycam = PolyCam(
                model,
                variant=variant,
                precision=args.precision,
                pass_budget=None if budget == 1 else budget,
            )
            maps, seconds, passes, exact, fidelity = timed_maps(polycam, inputs, targets)
            curves = metric(inputs, maps, targets)
            if exact_maps is None:
                if budget != 1:
                    raise SystemExit("--budgets must start with 1, the exact maps")
                exact_maps, exact_seconds, exact_curves = maps, seconds, curves
            flat, ref = maps.flatten(1).cpu().numpy(), exact_maps.flatten(1).cpu().numpy()
            rho = [float(spearmanr(a, b).statistic) for a, b in zip(flat, ref, strict=True)]
            d_ins = (curves.insertion.auc - exact_curves.insertion.auc).cpu()
            d_del = (curves.deletion.auc - exact_curves.deletion.auc).cpu()
            ratio = sum(seconds) / sum(exact_seconds)
            over = fidelity.double().numpy() - np.array(rho)
            print(
                f"{_NAMES[variant]:<8}{budget!s:>7}{passes / len(inputs):>8.0f}"
                f"{exact / len(inputs):>6.0f}{np.mean(seconds):>8.2f}{ratio:>8.2f}"
                f"{min(rho):>9.4f} /{np.median(rho):>6.4f} /{np.mean(rho):>6.4f}"
                f"{np.abs(flat - ref).max():>9.3f}"
                f"{float(d_ins.mean()):>+8.4f}{float(d_ins.abs().mean()):>8.4f}"
                f"{float(d_del.mean()):>+8.4f}{float(d_del.abs().mean()):>8.4f}"
                f"{np.nanmax(over) if not np.isnan(over).all() else np.nan:>+13.4f}"
                f"{float(fidelity[int(np.argmin(rho))]):>10.4f}",
                flush=True,
            )
            frontier.setdefault(variant, []).append((passes / exact, min(rho), float(np.mean(rho))))
    if args.figure:
        save_frontier(frontier, args.figure, f"{args.model}, {len(inputs)} photos, {name}")


def save_frontier(
    frontier: dict[str, list[tuple[float, float, float]]], path: str, title: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5.5, 3.6), dpi=120)
    for variant, points in frontier.items():
        fraction, low, mean = zip(*sorted(points), strict=True)
        line = axes.plot(fraction, mean, marker="o", label=f"{_NAMES[variant]} mean")[0]
        axes.plot(
            fraction,
            low,
            marker="v",
            linestyle="--",
            color=line.get_color(),
            label=f"{_NAMES[variant]} worst photo",
        )
    axes.set_xlabel("masked passes run / exact passes")
    axes.set_ylabel("Spearman with the exact map")
    axes.set_title(title, fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    print(f"figure: {path}")


if __name__ == "__main__":
    main()
