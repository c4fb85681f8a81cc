"""What a Poly-CAM map of a volume costs: MONAI's 3D DenseNet121 against its own plain inference.

One process, one network (random weights, seeded: no pretrained medical weights are reachable
here, and the cost does not depend on them), one volume of ``--size``^3 voxels. Printed:

- plain inference at 1, 2, 4 and 8 volumes a pass (and at the measured pass), in volumes per
  second: the limit is the fastest (every rate, plain or Poly-CAM, is the best of three
  timings);
- Poly-CAM PCAM+ on the discovered layers, under ``--budget`` (or exact with ``--budget 1``),
  with the pass its probe measured: its masked passes, seconds, masked passes per second and
  their ratio to plain inference at the same pass size and at the fastest, and the exact map's
  time at that rate; then the same ratios with each pass size given
  (``perturbations_per_eval``), which separate the engine's own overhead from the probe's
  choice; with ``--exact``, one exact map at the measured pass too;
- peak memory: the tensor memory the map holds at its peak against one plain pass of the same
  size as Poly-CAM's passes, its inputs included (every CPU allocation and release, as the
  profiler records them), with the layers given (discovered once, as a loop over scans would)
  and with discovery on each call. The difference is mostly the chosen layers' activations of
  one clean pass, which the masks and the layers' maps are made from, printed beside, plus one
  pass of masks.

Needs the medical extra (``pip install "captum-polycam[medical]"``).

Run: ``python benchmarks/volume_cost.py [--size 96] [--budget 0.05] [--exact]``
"""

from __future__ import annotations

import argparse
import time

import torch
from compare_peers import peak_allocated
from monai.networks.nets import DenseNet121

from captum_polycam import PolyCam, describe_layers, tune_cpu_allocator
from captum_polycam.attr import PolyCamMaps
from captum_polycam.attr.budget import rank_correlation
from captum_polycam.perturbation.scoring import _TUNER

# Each rate is the best of this many timings, plain and Poly-CAM alike: a shared 2-core machine
# slows single runs by a few percent at random, as much as the differences measured.
REPEATS = 3


def plain_rate(model: torch.nn.Module, volume: torch.Tensor, batch: int, images: int) -> float:
    """Volumes per second of plain inference, ``batch`` at a time, after a warm-up pass."""
    inputs = volume.expand(batch, *volume.shape[1:]).contiguous()
    with torch.no_grad():
        model(inputs)
        began = time.perf_counter()
        for _ in range(0, images, batch):
            model(inputs)
    return -(-images // batch) * batch / (time.perf_counter() - began)


def activation_mib(model: torch.nn.Module, volume: torch.Tensor, layers: list[str]) -> float:
    """MiB of the ``layers``' outputs of one clean pass: what Poly-CAM holds beside its passes."""
    sizes: list[int] = []
    handles = [
        model.get_submodule(name).register_forward_hook(
            lambda _module, _inputs, output: sizes.append(output.numel() * output.element_size())
        )
        for name in layers
    ]
    with torch.no_grad():
        model(volume)
    for handle in handles:
        handle.remove()
    return sum(sizes) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96, help="voxels a side")
    parser.add_argument("--budget", type=float, default=0.05, help="pass_budget; 1 is exact")
    parser.add_argument(
        "--exact",
        action="store_true",
        help="also time one exact map at the measured pass (about ten minutes at 96^3 on 2 cores)",
    )
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

    def timed_map(per_eval: int | None) -> tuple[PolyCamMaps, float]:
        """The map and its seconds, the best of ``REPEATS`` after a warm call."""
        polycam.decompose(volume, target=0, perturbations_per_eval=per_eval)
        best = float("inf")
        for _ in range(REPEATS):
            began = time.perf_counter()
            result = polycam.decompose(volume, target=0, perturbations_per_eval=per_eval)
            best = min(best, time.perf_counter() - began)
        return result, best

    # The measured pass first: the probe of the first call chooses it, the second reuses it.
    result, seconds = timed_map(None)
    key = (tuple(volume.shape[1:]), volume.dtype, "cpu", "fp32")
    chosen = _TUNER.chosen(model, key)
    measured = chosen.size if chosen is not None else 4
    sizes = tuple(sorted({1, 2, 4, 8, measured}))  # the probe may choose up to 32
    plain = {
        batch: max(plain_rate(model, volume, batch, result.passes) for _ in range(REPEATS))
        for batch in sizes
    }
    fastest = max(plain, key=plain.__getitem__)
    print(
        "plain inference, volumes/s: "
        + ", ".join(f"{batch} a pass {rate:.2f}" for batch, rate in plain.items())
        + f"; fastest {fastest} a pass"
    )
    rate = result.passes / seconds
    print(
        f"Poly-CAM, measured pass ({measured}): {result.passes} of {result.exact_passes} masked "
        f"passes in {seconds:.1f} s, {rate:.2f}/s, {rate / plain[measured]:.3f} of plain at "
        f"{measured} a pass, {rate / plain[fastest]:.3f} of the fastest; the exact map at this "
        f"rate: {result.exact_passes / rate:.0f} s; estimated fidelity "
        f"{float(result.fidelity[0]):.3f}"
    )
    if args.exact and budget is not None:
        exact = PolyCam(model, [layer.name for layer in layers], "plus")
        began = time.perf_counter()
        exact_result = exact.decompose(volume, target=0)
        exact_seconds = time.perf_counter() - began
        exact_rate = exact_result.passes / exact_seconds
        spearman = rank_correlation(result.maps.flatten(1), exact_result.maps.flatten(1))
        print(
            f"Poly-CAM exact, measured pass: {exact_result.passes} masked passes in "
            f"{exact_seconds:.0f} s, {exact_rate:.2f}/s, "
            f"{exact_rate / plain[measured]:.3f} of plain at {measured} a pass, "
            f"{exact_rate / plain[fastest]:.3f} of the fastest (one timing); the budget map's "
            f"Spearman correlation with it {float(spearman[0]):.4f}"
        )
    for per_eval in sizes:
        given, given_seconds = timed_map(per_eval)
        given_rate = given.passes / given_seconds
        print(
            f"Poly-CAM, {per_eval} a pass given: {given_rate:.2f}/s, "
            f"{given_rate / plain[per_eval]:.3f} of plain at {per_eval} a pass, "
            f"{given_rate / plain[fastest]:.3f} of the fastest"
        )

    held = activation_mib(model, volume, [layer.name for layer in layers])
    print(
        "peak tensor memory, MiB (Poly-CAM's passes against plain passes of their size, each "
        f"with its inputs; the layers' activations of one clean pass are {held:.0f}):"
    )
    for per_eval in sorted({1, measured, fastest}):

        def plain_pass(per_eval: int = per_eval) -> None:
            # A plain pass of n volumes holds them: counted, as Poly-CAM's pass buffer is.
            inputs = volume.expand(per_eval, *volume.shape[1:]).contiguous()
            with torch.no_grad():
                model(inputs)

        def given(per_eval: int = per_eval) -> None:
            polycam.decompose(volume, target=0, perturbations_per_eval=per_eval)

        def discovering(per_eval: int = per_eval) -> None:
            PolyCam(model, variant="plus", pass_budget=budget).decompose(
                volume, target=0, perturbations_per_eval=per_eval
            )

        plain_peak, given_peak = peak_allocated(plain_pass), peak_allocated(given)
        discovering_peak = peak_allocated(discovering)
        print(
            f"  {per_eval} a pass: plain {plain_peak:.0f}; Poly-CAM, layers given, "
            f"{given_peak:.0f} ({given_peak / plain_peak:.2f}x, {given_peak - plain_peak:+.0f}), "
            f"discovering them each call {discovering_peak:.0f} "
            f"({discovering_peak / plain_peak:.2f}x)"
        )


if __name__ == "__main__":
    main()
