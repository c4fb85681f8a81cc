"""What a Poly-CAM map of a volume costs: MONAI's 3D DenseNet121 against its own plain inference.

One process, one network (random weights, seeded: no pretrained medical weights are reachable
here, and the cost does not depend on them), one volume of ``--size``^3 voxels. Printed:

- plain inference at its fastest (batches 1 to 8 timed), in volumes per second: the limit;
- Poly-CAM PCAM+ on the discovered layers, under ``--budget`` (or exact with ``--budget 1``):
  its masked passes, seconds, masked passes per second and their ratio to the limit, and the
  exact map's time at that rate;
- peak memory: the tensor memory the map holds at its peak against one plain pass of the same
  size as Poly-CAM's passes (every CPU allocation and release, as the profiler records them),
  with the layers given (discovered once, as a loop over scans would) and with discovery on
  each call, whose recording pass holds every module's output of one clean pass at once.

Needs the medical extra (``pip install "captum-polycam[medical]"``).

Run: ``python benchmarks/volume_cost.py [--size 96] [--budget 0.05]``
"""

from __future__ import annotations

import argparse
import time

import torch
from compare_peers import peak_allocated
from monai.networks.nets import DenseNet121

from captum_polycam import PolyCam, describe_layers, tune_cpu_allocator
from captum_polycam.perturbation.scoring import _TUNER


def plain_rate(model: torch.nn.Module, volume: torch.Tensor, batch: int, images: int) -> float:
    """Volumes per second of plain inference, ``batch`` at a time, after a warm-up pass."""
    inputs = volume.expand(batch, *volume.shape[1:]).contiguous()
    with torch.no_grad():
        model(inputs)
        began = time.perf_counter()
        for _ in range(0, images, batch):
            model(inputs)
    return -(-images // batch) * batch / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96, help="voxels a side")
    parser.add_argument("--budget", type=float, default=0.05, help="pass_budget; 1 is exact")
    args = parser.parse_args()

    tune_cpu_allocator()
    torch.manual_seed(0)
    model = DenseNet121(spatial_dims=3, in_channels=1, out_channels=2).eval()
    volume = torch.rand(1, 1, args.size, args.size, args.size)
    layers = describe_layers(model, volume)
    print(
        f"MONAI DenseNet121, 3D, {args.size}^3 voxels, PCAM+, pass_budget={args.budget}, "
        f"{torch.get_num_threads()} CPU threads; layers: {', '.join(map(str, layers))}"
    )

    budget = None if args.budget == 1 else args.budget
    polycam = PolyCam(model, [layer.name for layer in layers], "plus", pass_budget=budget)
    polycam.decompose(volume, target=0)  # sets kernels up and measures the passes
    began = time.perf_counter()
    result = polycam.decompose(volume, target=0)
    seconds = time.perf_counter() - began
    rate = result.passes / seconds
    key = (tuple(volume.shape[1:]), volume.dtype, "cpu", "fp32")
    chosen = _TUNER.chosen(model, key)
    pass_size = chosen.size if chosen is not None else 4

    sizes = (1, 2, 4, 8)
    limits = {batch: plain_rate(model, volume, batch, 2 * batch) for batch in sizes}
    best = max(limits, key=limits.__getitem__)
    limit = plain_rate(model, volume, best, result.passes)  # as many volumes as the map
    print(
        f"plain inference: {limit:.2f} volumes/s at its fastest ({best} a pass; "
        + ", ".join(f"{batch}: {rate_:.2f}" for batch, rate_ in limits.items())
        + ")"
    )
    print(
        f"Poly-CAM: {result.passes} of {result.exact_passes} masked passes in {seconds:.1f} s, "
        f"{rate:.2f}/s ({pass_size} a pass), ratio {rate / limit:.3f}; the exact map at this "
        f"rate: {result.exact_passes / rate:.0f} s; estimated fidelity "
        f"{float(result.fidelity[0]):.3f}"
    )

    inputs = volume.expand(pass_size, *volume.shape[1:]).contiguous()

    def plain() -> None:
        with torch.no_grad():
            model(inputs)

    plain_peak = peak_allocated(plain)
    map_peak = peak_allocated(lambda: polycam.decompose(volume, target=0))
    discovering = PolyCam(model, variant="plus", pass_budget=budget)
    discovering_peak = peak_allocated(lambda: discovering.decompose(volume, target=0))
    print(
        f"peak memory: plain pass of {pass_size} {plain_peak:.0f} MiB; Poly-CAM, layers given, "
        f"{map_peak:.0f} MiB (ratio {map_peak / plain_peak:.2f}), discovering them "
        f"{discovering_peak:.0f} MiB (ratio {discovering_peak / plain_peak:.2f})"
    )


if __name__ == "__main__":
    main()
