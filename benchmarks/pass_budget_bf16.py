"""The fast setting against the paper's: ``pass_budget="auto"`` in bf16 against the exact fp32
map, side by side in one process, on each bundled photo (or ``--photos DIR``).

Printed per photo: each map's time, their ratio, the passes spent, the Spearman correlation of
the fast map with the exact one and the fidelity the fast map estimated for itself. bf16 pays
only on a CPU with AVX-512 BF16 or AMX (or a GPU); elsewhere Poly-CAM warns that it is slow.

Run: ``python benchmarks/pass_budget_bf16.py [--variant plus] [--photos DIR]``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _common import load_lite0

from captum_polycam import PolyCam
from captum_polycam.attr.budget import rank_correlation
from captum_polycam.resources.images import bundled_images, load_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="plus", choices=["plus", "minus", "plusminus"])
    parser.add_argument("--photos", type=Path, default=None, help="a folder of photos")
    args = parser.parse_args()

    model = load_lite0()
    paths = (
        sorted(p for p in args.photos.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
        if args.photos
        else bundled_images()
    )
    exact = PolyCam(model, variant=args.variant)
    fast = PolyCam(model, variant=args.variant, pass_budget="auto", precision="bf16")
    warm_up = load_image(paths[0]).contiguous(memory_format=torch.channels_last)
    exact.attribute(warm_up, target=0)  # sets kernels up and measures the passes
    fast.attribute(warm_up, target=0)
    print(f"PCAM {args.variant}, {torch.get_num_threads()} CPU threads")
    for path in paths:
        x = load_image(path).contiguous(memory_format=torch.channels_last)
        began = time.perf_counter()
        reference = exact.decompose(x)
        exact_seconds = time.perf_counter() - began
        began = time.perf_counter()
        result = fast.decompose(x)
        fast_seconds = time.perf_counter() - began
        spearman = float(rank_correlation(result.maps.flatten(1), reference.maps.flatten(1))[0])
        print(
            f"{path.name}: exact fp32 {exact_seconds:.2f} s, auto bf16 {fast_seconds:.2f} s "
            f"({fast_seconds / exact_seconds:.3f} of it), passes {result.passes}/"
            f"{reference.exact_passes} ({result.passes / reference.exact_passes:.2f}), "
            f"Spearman {spearman:.4f}, estimated {float(result.fidelity[0]):.4f}"
        )


if __name__ == "__main__":
    main()
