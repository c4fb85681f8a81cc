"""Poly-CAM against the inference limit and against its peers' Score-CAM, side by side.

One process, the same model (the pretrained EfficientNet-Lite0), photo (the bundled cat, a
contiguous tensor as a user's transforms give it), layer and device. Printed:

- the inference limit per precision: plain inference at the best of batches 1 to 32 in both
  memory layouts, in images per second, and compiled fp32 inference at the pass size that
  ``compile=True`` uses;
- Poly-CAM (every discovered layer, PCAM+) in each precision and compiled: masked forward passes
  per second and their ratio to the limit of the same configuration;
- a single-layer run on ``_blocks.15``: Poly-CAM PCAM+ (one masked pass per channel, as
  Score-CAM) against torchcam's and pytorch-grad-cam's ``ScoreCAM``, at their default batch
  sizes and at their best, as seconds per map;
- peak memory: the tensor memory each map holds at its peak (every CPU allocation and release,
  as the profiler records them), against plain inference of one batch of the same size, for
  one and five layers and one and four images.

The allocator is tuned first (:func:`captum_polycam.tune_cpu_allocator`, as the command line
does) so that no configuration pays page faults; ``--default-allocator`` leaves glibc's default.
The peers are benchmark-only dependencies: ``pip install torchcam grad-cam``.

Run: ``python benchmarks/compare_peers.py [--layer _blocks.15] [--precisions fp32,bf16]
[--default-allocator] [--no-compile]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
from collections.abc import Callable

import torch
from _common import CountingModel, load_lite0
from torch.profiler import ProfilerActivity

from captum_polycam import PolyCam, tune_cpu_allocator
from captum_polycam.perturbation.scoring import _AUTOCAST_DTYPES, _TUNER
from captum_polycam.resources.images import bundled_image, load_image

SIZES = (1, 2, 4, 8, 16, 32)
LAYOUTS = {"contiguous": torch.contiguous_format, "channels-last": torch.channels_last}
COMPILED_PASS = 4  # the CPU's default pass size, which ``compile=True`` uses
MEMORY_PASS = 16


def seconds(
    run: Callable[[], object], repeats: int = 1, warm_up: int = 1, rounds: int = 2
) -> float:
    """Seconds per call of ``run``: the mean over ``repeats`` calls, best of ``rounds`` (this
    machine is shared; the best round is the one least disturbed)."""
    for _ in range(warm_up):  # kernel set-up, the measured pass shape, compilation
        run()
    best = float("inf")
    for _ in range(rounds):
        began = time.perf_counter()
        for _ in range(repeats):
            run()
        best = min(best, (time.perf_counter() - began) / repeats)
    return best


def interleaved(candidates: dict[str, Callable[[], object]], rounds: int = 3) -> dict[str, float]:
    """Seconds per call of each candidate, best of ``rounds``: each round times every candidate
    once, in turn, so that a slow spell of this shared machine falls on all of them alike."""
    for run in candidates.values():  # warm-up: kernel set-up, the measured pass shape
        run()
    best = dict.fromkeys(candidates, float("inf"))
    for _ in range(rounds):
        for name, run in candidates.items():
            began = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - began)
    return best


def inference(
    model: Callable[..., object],
    x: torch.Tensor,
    size: int,
    layout: torch.memory_format,
    precision: str,
) -> Callable[[], None]:
    batch = x.expand(size, -1, -1, -1).contiguous(memory_format=layout)
    autocast = _AUTOCAST_DTYPES.get(precision)

    def run() -> None:
        with (
            torch.no_grad(),
            torch.autocast("cpu", autocast or torch.bfloat16, enabled=autocast is not None),
        ):
            model(batch)

    return run


def best_inference(
    model: torch.nn.Module, x: torch.Tensor, precision: str
) -> tuple[int, torch.memory_format]:
    """The batch size and memory layout of the fastest plain inference."""
    rates = {
        (size, layout): size
        / seconds(inference(model, x, size, layout, precision), max(3, 64 // size), warm_up=2)
        for size in SIZES
        for layout in LAYOUTS.values()
    }
    return max(rates, key=rates.__getitem__)


def images(run: Callable[[], None], count: int) -> Callable[[], None]:
    """``run`` called ``count`` times."""

    def repeated() -> None:
        for _ in range(count):
            run()

    return repeated


def masked_passes(polycam: PolyCam, x: torch.Tensor, target: int) -> int:
    """How many masked inputs one map of ``polycam`` scores (its clean pass excluded)."""
    counting = CountingModel(polycam.model).eval()
    PolyCam(counting, variant=polycam.variant).attribute(x, target)
    return counting.images - len(x)


def peak_allocated(run: Callable[[], object]) -> float:
    """MiB of tensor memory that ``run`` holds at its peak, from the profiler's record of every
    CPU allocation and release (unlike the resident set, independent of the C allocator)."""
    with torch.profiler.profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    held = peak = 0
    for event in sorted(prof.events(), key=lambda event: event.time_range.start):
        held += event.self_cpu_memory_usage
        peak = max(peak, held)
    return peak / 2**20


def peer(
    name: str, model: torch.nn.Module, x: torch.Tensor, layer: str, target: int, batch: int | None
) -> Callable[[], None]:
    """One Score-CAM map of torchcam or pytorch-grad-cam; ``batch=None`` for its default."""
    if name == "torchcam":
        from torchcam.methods import ScoreCAM

        def run() -> None:
            options = {} if batch is None else {"batch_size": batch}
            with ScoreCAM(model, layer, **options) as extractor, torch.no_grad():
                extractor(class_idx=target, scores=model(x))

        return run
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    def run() -> None:
        with contextlib.redirect_stderr(io.StringIO()):  # its progress bars
            cam = ScoreCAM(model, [model.get_submodule(layer)])
            if batch is not None:
                cam.batch_size = batch
            cam(x, targets=[ClassifierOutputTarget(target)])

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="_blocks.15")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--default-allocator", action="store_true")
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    tuned = not args.default_allocator
    if tuned:
        tune_cpu_allocator()
    model = load_lite0()
    x = load_image(bundled_image())
    target = int(model(x).argmax())
    precisions = args.precisions.split(",")
    print(
        f"EfficientNet-Lite0, bundled photo, CPU, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, allocator {'tuned' if tuned else 'default'}"
    )

    print("\ninference limit and Poly-CAM PCAM+ on every discovered layer")
    polycams = {
        precision: PolyCam(model, variant="plus", precision=precision) for precision in precisions
    }
    passes = masked_passes(polycams["fp32"], x, target)
    for precision, polycam in polycams.items():
        size, layout = best_inference(model, x, precision)
        limit_run = images(inference(model, x, size, layout, precision), 64 // size)
        timings = interleaved(
            {"limit": limit_run, "ours": lambda p=polycam: p.attribute(x, target)}
        )
        limit, rate = 64 // size * size / timings["limit"], passes / timings["ours"]
        shape = _TUNER.chosen(model, ((3, 224, 224), torch.float32, "cpu", precision))
        print(
            f"  {precision}: limit {limit:.0f} images/s (batch {size}, "
            f"{'channels-last' if layout == torch.channels_last else 'contiguous'}) | Poly-CAM "
            f"{rate:.0f} masked passes/s = {rate / limit:.2f} of the limit, "
            f"{timings['ours']:.1f} s per map (measured pass: {shape})"
        )
    print(f"\nsingle layer {args.layer}, seconds per map")
    single = {
        "fp32": PolyCam(model, [args.layer], variant="plus"),
        "bf16": PolyCam(model, [args.layer], variant="plus", precision="bf16"),
    }
    candidates = {
        f"Poly-CAM PCAM+, {name}": lambda p=p: p.attribute(x, target) for name, p in single.items()
    }
    for name, default in (("torchcam", 32), ("pytorch-grad-cam", 16)):
        candidates[f"{name} ScoreCAM, default batch {default}"] = peer(
            name, model, x, args.layer, target, None
        )
        for size in (4, 8, 16, 32):
            candidates[f"{name} ScoreCAM, batch {size}"] = peer(
                name, model, x, args.layer, target, size
            )
    timings = interleaved(candidates)
    ours = {name: timings[f"Poly-CAM PCAM+, {name}"] for name in single}
    for name, took in ours.items():
        print(f"  Poly-CAM PCAM+, {name}, measured pass: {took:6.2f} s")
    for name, default in (("torchcam", 32), ("pytorch-grad-cam", 16)):
        at_default = timings[f"{name} ScoreCAM, default batch {default}"]
        best = min(
            (key for key in timings if key.startswith(f"{name} ScoreCAM, batch")),
            key=timings.__getitem__,
        )
        print(
            f"  {name} ScoreCAM: default batch {default}: {at_default:6.2f} s "
            f"(Poly-CAM fp32 {at_default / ours['fp32']:.2f}x, bf16 "
            f"{at_default / ours['bf16']:.2f}x faster) | best, {best.split(', ')[1]}: "
            f"{timings[best]:6.2f} s (Poly-CAM fp32 {timings[best] / ours['fp32']:.2f}x, bf16 "
            f"{timings[best] / ours['bf16']:.2f}x faster)"
        )

    print("\npeak tensor memory of one map (one batch for plain inference), MiB")
    inputs = x.expand(4, -1, -1, -1).contiguous()
    one_layer, every_layer = single["fp32"], PolyCam(model, variant="plus")

    def plain() -> None:
        with torch.no_grad():
            model(x.expand(MEMORY_PASS, -1, -1, -1).contiguous())

    runs = {
        f"plain inference, batch {MEMORY_PASS}": plain,
        "Poly-CAM, 1 layer, 1 image": lambda: one_layer.attribute(
            x, target, perturbations_per_eval=MEMORY_PASS
        ),
        "Poly-CAM, 5 layers, 1 image": lambda: every_layer.attribute(
            x, target, perturbations_per_eval=MEMORY_PASS
        ),
        "Poly-CAM, 5 layers, 4 images": lambda: every_layer.attribute(
            inputs, target, perturbations_per_eval=MEMORY_PASS // len(inputs)
        ),
        f"torchcam ScoreCAM, batch {MEMORY_PASS}": peer(
            "torchcam", model, x, args.layer, target, MEMORY_PASS
        ),
        f"pytorch-grad-cam ScoreCAM, batch {MEMORY_PASS}": peer(
            "pytorch-grad-cam", model, x, args.layer, target, MEMORY_PASS
        ),
    }
    plain_mib = None
    for name, run in runs.items():
        mib = peak_allocated(run)
        plain_mib = plain_mib or mib
        print(f"  {name}: {mib:6.0f} MiB ({mib / plain_mib:.2f} of plain inference)")

    if not args.no_compile:  # last: compiling leaves worker processes behind
        print("\ncompiled, every discovered layer")
        compiled = PolyCam(model, variant="plus", compile=True)
        began = time.perf_counter()
        compiled.attribute(x, target)
        first = time.perf_counter() - began
        limit_run = images(
            inference(torch.compile(model), x, COMPILED_PASS, torch.contiguous_format, "fp32"),
            64 // COMPILED_PASS,
        )
        timings = interleaved({"limit": limit_run, "ours": lambda: compiled.attribute(x, target)})
        # The masked inputs are those of the eager run; padding the last pass adds at most 3.
        limit, rate = 64 / timings["limit"], passes / timings["ours"]
        print(
            f"  fp32 compiled, pass of {COMPILED_PASS}: limit {limit:.0f} images/s | Poly-CAM "
            f"{rate:.0f} masked passes/s = {rate / limit:.2f} of the limit, "
            f"{timings['ours']:.1f} s per map (first map, compiling: {first:.0f} s)"
        )


if __name__ == "__main__":
    main()
