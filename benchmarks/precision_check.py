"""Poly-CAM in fp32, bf16 and fp16: speed against the inference limit, and fidelity to fp32.

In one process, on the same images, model and device, for each precision:

- the inference limit: plain batched inference of the model under the same autocast, at the
  best of a few batch sizes in both memory layouts, in images per second;
- Poly-CAM (measured pass size and layout, after a warm-up call that measures them): seconds
  per image, masked forward passes per second, and their ratio to the limit;
- fidelity to the fp32 maps: Spearman's rank correlation (smallest and mean over images), the
  largest absolute difference, and the mean absolute change of the insertion and deletion
  areas (224 steps, scored in fp32 on each precision's maps).

Run: ``python benchmarks/precision_check.py [--model efficientnet-lite0] [--images 4]
[--variant plus] [--device cuda]``; random weights time like trained ones
(``--model torchvision.models:vgg16``), but fidelity needs a trained model.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.stats import spearmanr

from captum_polycam import InsertionDeletion, PolyCam, tune_cpu_allocator
from captum_polycam.perturbation.scoring import _AUTOCAST_DTYPES
from captum_polycam.perturbation.tuning import candidate_sizes
from captum_polycam.resources import ImageFolder, load_model
from captum_polycam.resources.images import bundled_folder


class Counting(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += len(x)
        return self.model(x)


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def inference_limit(model: torch.nn.Module, image: torch.Tensor, precision: str) -> float:
    """The best images per second of plain inference over a few batch sizes and both layouts."""
    device, best = image.device, 0.0
    autocast = _AUTOCAST_DTYPES.get(precision)
    for layout in (torch.contiguous_format, torch.channels_last):
        for size in candidate_sizes(device):
            batch = image.expand(size, -1, -1, -1).contiguous(memory_format=layout)
            repeats = max(2, 64 // size)
            with torch.no_grad(), torch.autocast(device.type, autocast, enabled=bool(autocast)):
                model(batch)
                synchronise(device)
                began = time.perf_counter()
                for _ in range(repeats):
                    model(batch)
                synchronise(device)
            best = max(best, repeats * size / (time.perf_counter() - began))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--images", type=int, default=4, help="bundled photos, repeated")
    parser.add_argument("--variant", default="plus", choices=("plus", "minus", "plusminus"))
    parser.add_argument("--precisions", default="fp32,bf16,fp16")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-fidelity", action="store_true", help="timings only")
    args = parser.parse_args()
    tune_cpu_allocator()  # as the command line does: no page faults on the CPU's passes

    device = torch.device(args.device)
    model = load_model(args.model, device)[0]
    photos = ImageFolder(bundled_folder())
    inputs = torch.stack([photos[i % len(photos)].inputs for i in range(args.images)]).to(device)
    with torch.no_grad():
        targets = model(inputs).argmax(dim=1)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"{args.model}, PCAM {args.variant}, {args.images} images at 224 x 224, {name}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print(
        f"{'precision':<10}{'s/image':>9}{'masked/s':>10}{'limit/s':>9}{'ratio':>7}"
        f"{'spearman min/mean':>19}{'max diff':>10}{'|d ins|':>9}{'|d del|':>9}"
    )
    reference = None
    metric = InsertionDeletion(model)
    for precision in args.precisions.split(","):
        counting = Counting(model).eval()
        polycam = PolyCam(counting, variant=args.variant, precision=precision)
        polycam.attribute(inputs[:1], targets[:1])  # measures the pass shape, warms kernels
        counting.images = 0
        synchronise(device)
        began = time.perf_counter()
        maps = polycam.attribute(inputs, targets)
        synchronise(device)
        seconds = time.perf_counter() - began
        masked_rate = counting.images / seconds
        limit = inference_limit(model, inputs[:1], precision)
        line = (
            f"{precision:<10}{seconds / len(inputs):>9.2f}{masked_rate:>10.0f}{limit:>9.0f}"
            f"{masked_rate / limit:>7.2f}"
        )
        if not args.no_fidelity:
            curves = metric(inputs, maps, targets)
            if reference is None:
                reference = (maps, curves)
            flat, ref_flat = maps.flatten(1).cpu().numpy(), reference[0].flatten(1).cpu().numpy()
            rho = [spearmanr(a, b).statistic for a, b in zip(flat, ref_flat, strict=True)]
            difference = float(np.abs(flat - ref_flat).max())
            d_ins = float((curves.insertion.auc - reference[1].insertion.auc).abs().mean())
            d_del = float((curves.deletion.auc - reference[1].deletion.auc).abs().mean())
            line += (
                f"{min(rho):>9.4f} /{np.mean(rho):>7.4f}{difference:>10.4f}"
                f"{d_ins:>9.4f}{d_del:>9.4f}"
            )
        print(line, flush=True)


if __name__ == "__main__":
    main()
