"""Poly-CAM against the inference limit and against its peers' Score-CAM, side by side.

One process, the same model (the pretrained EfficientNet-Lite0), photo (the bundled cat),
layer and device. Printed:

- the inference limit: plain fp32 inference at the best of a few batch sizes, contiguous and
  channels-last, in images per second;
- Poly-CAM (every discovered layer, PCAM+) in each precision: masked forward passes per
  second and their ratio to the limit of the same precision;
- a single-layer run on ``_blocks.15``: Poly-CAM PCAM+ (one masked pass per channel, as
  Score-CAM) against torchcam's and pytorch-grad-cam's ``ScoreCAM``, at their default batch
  sizes and at their best, as seconds per map;
- the peak memory of each single-layer run against plain inference at the same batch (the
  growth of the process's peak resident memory, reset before each run, Linux only).

The peers are benchmark-only dependencies: ``pip install torchcam grad-cam``.

Run: ``python benchmarks/compare_peers.py [--layer _blocks.15] [--precisions fp32,bf16]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _common import CountingModel, load_lite0, photo

from captum_polycam import PolyCam
from captum_polycam.perturbation.scoring import _AUTOCAST_DTYPES, _TUNER

SIZES = (1, 2, 4, 8, 16, 32, 64)
_STATUS = Path("/proc/self/status")


def peak_growth(run: Callable[[], object]) -> float:
    """MiB by which the process's peak resident memory exceeds its current one during ``run``."""
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
    before = _status_kib("VmRSS")
    run()
    return (_status_kib("VmHWM") - before) / 1024


def _status_kib(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in {_STATUS}")


def seconds(run: Callable[[], object], repeats: int = 1) -> float:
    run()  # warm-up: kernel set-up, the measured pass shape
    began = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - began) / repeats


def inference(model: torch.nn.Module, x: torch.Tensor, size: int, layout, precision: str):
    batch = x.expand(size, -1, -1, -1).contiguous(memory_format=layout)
    autocast = _AUTOCAST_DTYPES.get(precision)

    def run() -> None:
        with torch.no_grad(), torch.autocast("cpu", autocast or torch.bfloat16,
                                             enabled=autocast is not None):  # fmt: skip
            model(batch)

    return run


def polycam_rate(
    model: torch.nn.Module, x: torch.Tensor, target: int, precision: str
) -> tuple[float, float]:
    """Seconds per map and masked passes per second of PCAM+ on every discovered layer."""
    counting = CountingModel(model).eval()
    polycam = PolyCam(counting, variant="plus", precision=precision)
    polycam.attribute(x, target)  # measures the pass shape
    counting.images = 0
    began = time.perf_counter()
    polycam.attribute(x, target)
    took = time.perf_counter() - began
    return took, counting.images / took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="_blocks.15")
    parser.add_argument("--precisions", default="fp32,bf16")
    args = parser.parse_args()
    from pytorch_grad_cam import ScoreCAM as GradCamScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchcam.methods import ScoreCAM as TorchcamScoreCAM

    model = load_lite0()
    x = photo()
    target = int(model(x).argmax())
    layer = model.get_submodule(args.layer)
    print(f"EfficientNet-Lite0, bundled photo, CPU, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")  # fmt: skip

    limits = {}
    for precision in args.precisions.split(","):
        rates = {
            (size, layout): size
            / seconds(inference(model, x, size, layout, precision), max(3, 64 // size))
            for size in SIZES
            for layout in (torch.contiguous_format, torch.channels_last)
        }
        (size, layout), limits[precision] = max(rates.items(), key=lambda item: item[1])
        print(
            f"inference limit, {precision}: {limits[precision]:.0f} images/s (batch {size}, "
            f"{'channels-last' if layout == torch.channels_last else 'contiguous'})"
        )

    for precision in args.precisions.split(","):
        took, rate = polycam_rate(model, x, target, precision)
        print(
            f"Poly-CAM PCAM+ (all layers), {precision}: {rate:.0f} masked passes/s, "
            f"{rate / limits[precision]:.2f} of the limit, {took:.1f} s per map"
        )

    print(f"\nsingle layer {args.layer}, seconds per map (peak memory growth, MiB)")
    single = PolyCam(model, [args.layer], variant="plus")
    ours = seconds(lambda: single.attribute(x, target))
    ours_memory = peak_growth(lambda: single.attribute(x, target))
    shape = _TUNER.chosen(model, ((3, 224, 224), torch.float32, "cpu", "fp32"))
    print(f"  Poly-CAM PCAM+, measured pass {shape}: {ours:6.2f} s ({ours_memory:.0f} MiB)")
    lowered = PolyCam(model, [args.layer], variant="plus", precision="bf16")
    print(f"  Poly-CAM PCAM+, bf16: {seconds(lambda: lowered.attribute(x, target)):6.2f} s")
    compiled = PolyCam(model, [args.layer], variant="plus", compile=True)
    compiled.attribute(x, target, perturbations_per_eval=shape.size)  # compiles
    took = seconds(lambda: compiled.attribute(x, target, perturbations_per_eval=shape.size))
    print(f"  Poly-CAM PCAM+, compiled, fp32, pass of {shape.size}: {took:6.2f} s")

    def torchcam(batch: int) -> Callable[[], object]:
        def run() -> None:
            with TorchcamScoreCAM(model, args.layer, batch_size=batch) as extractor:
                with torch.no_grad():
                    scores = model(x)
                extractor(class_idx=target, scores=scores)

        return run

    def gradcam(batch: int | None) -> Callable[[], object]:
        def run() -> None:
            with contextlib.redirect_stderr(io.StringIO()):  # its progress bars
                cam = GradCamScoreCAM(model, [layer])
                if batch is not None:
                    cam.batch_size = batch
                cam(x, targets=[ClassifierOutputTarget(target)])

        return run

    peers = {"torchcam ScoreCAM": (torchcam, 32), "pytorch-grad-cam ScoreCAM": (gradcam, 16)}
    for name, (make, default) in peers.items():
        at_default = seconds(make(None if make is gradcam else default))
        timings = {size: seconds(make(size)) for size in (4, 8, 16, 32, 64)}
        best = min(timings, key=timings.get)
        memory = peak_growth(make(best))
        print(
            f"  {name}: default batch {default}: {at_default:6.2f} s "
            f"({at_default / ours:.1f}x Poly-CAM) | best batch {best}: {timings[best]:6.2f} s "
            f"({timings[best] / ours:.1f}x Poly-CAM, {memory:.0f} MiB)"
        )
    plain = {size: peak_growth(inference(model, x, size, torch.channels_last, "fp32"))
             for size in (4, 8, 16, 32)}  # fmt: skip
    print(
        "  plain inference peak memory growth, MiB, by batch: "
        + ", ".join(f"{size}: {mib:.0f}" for size, mib in plain.items())
    )


if __name__ == "__main__":
    main()
