"""What ``compile=True`` costs once and saves per map: its warm-up and break-even point.

In one process, on the bundled photo: Poly-CAM eagerly (twice, the second timed), then with
``compile=True`` (the first call compiles; the next ones are timed), at the same pass size
and memory layout. Prints the seconds per map of each, the warm-up, and how many maps pay for
it.

Run: ``python benchmarks/compile_check.py [--model efficientnet-lite0] [--variant plus]
[--per-eval 4] [--device cpu]``
"""

from __future__ import annotations

import argparse
import time

import torch

from captum_polycam import PolyCam, tune_cpu_allocator
from captum_polycam.resources import ImageFolder, load_model
from captum_polycam.resources.images import bundled_folder


def timed(polycam: PolyCam, inputs: torch.Tensor, per_eval: int) -> float:
    began = time.perf_counter()
    polycam.attribute(inputs, perturbations_per_eval=per_eval)
    if inputs.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--variant", default="plus", choices=("plus", "minus", "plusminus"))
    parser.add_argument("--per-eval", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    tune_cpu_allocator()  # as the command line does: no page faults on the CPU's passes

    model = load_model(args.model, args.device)[0]
    photos = ImageFolder(bundled_folder())
    inputs = photos[photos.names.index("chelsea.png")].inputs[None].to(args.device)
    inputs = inputs.contiguous(memory_format=torch.channels_last)
    eager = PolyCam(model, variant=args.variant)
    timed(eager, inputs, args.per_eval)
    eager_seconds = timed(eager, inputs, args.per_eval)
    compiled = PolyCam(model, variant=args.variant, compile=True)
    first = timed(compiled, inputs, args.per_eval)
    compiled_seconds = min(timed(compiled, inputs, args.per_eval) for _ in range(2))
    warm_up = first - compiled_seconds
    saving = eager_seconds - compiled_seconds
    print(
        f"{args.model}, PCAM {args.variant}, {args.per_eval} masked inputs a pass, "
        f"{args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print(
        f"eager: {eager_seconds:.1f} s per map | compiled: {compiled_seconds:.1f} s per map "
        f"| first compiled call: {first:.1f} s (warm-up {warm_up:.1f} s)"
    )
    if saving > 0:
        print(f"break-even: {warm_up / saving:.0f} maps")
    else:
        print("break-even: never (compiled maps are not faster here)")


if __name__ == "__main__":
    main()
