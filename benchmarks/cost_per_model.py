"""What one Poly-CAM map costs, per model and variant, on this machine.

For each model: the layers that ``discover_layers`` picks, their channels, the channels alive on
the photo (a channel that is zero everywhere needs no forward pass), the masked forward passes
each variant runs, and the measured seconds of ``PolyCam.attribute`` for one 224 x 224 image.
``engine_throughput.py`` compares the passes' rate with plain inference, side by side.

EfficientNet-Lite0 is the pretrained network (on the bundled photo); the torchvision models are
built with random weights (no download here), so their count of live channels, and hence their
time, is that of an untrained network: read them as an order of magnitude.

Run: ``python benchmarks/cost_per_model.py [--models efficientnet-lite0,resnet50,vgg16]
[--variants plus,plusminus] [--per-eval 4]`` (needs the ``examples`` extra).
"""

from __future__ import annotations

import argparse
import time

import torch
import torchvision
from _common import CountingModel, load_lite0, photo, plain_inference
from torch import nn

from captum_polycam import PolyCam, describe_layers

# Masked passes per live channel, and whether the black image is scored once (for the dead
# channels of the variants that unveil).
_PASSES_PER_CHANNEL = {"plus": 1, "minus": 1, "plusminus": 2}
_BLACK_IMAGE = {"plus": 1, "minus": 0, "plusminus": 1}
# How the stages of channels-last transformers are read (see docs/layers.rst).
_RESHAPE = {"swin_t": "nhwc", "swin_s": "nhwc", "swin_v2_t": "nhwc", "swin_v2_s": "nhwc"}


def build(name: str) -> nn.Module:
    if name == "efficientnet-lite0":
        return load_lite0()
    model = torchvision.models.get_model(name, weights=None).eval()
    return model.to(memory_format=torch.channels_last)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="efficientnet-lite0,resnet50,vgg16")
    parser.add_argument("--variants", default="plus,plusminus")
    parser.add_argument("--per-eval", type=int, default=4)
    args = parser.parse_args()

    torch.manual_seed(0)
    x = photo()
    print(f"{torch.get_num_threads()} CPU threads, one 224 x 224 image, batch {args.per_eval}")
    header = (
        "model",
        "layers",
        "channels",
        "live",
        "variant",
        "passes",
        "seconds",
        "passes/s",
        "plain/s",
        "ratio",
    )
    print("{:<20} {:>6} {:>8} {:>6} {:>9} {:>7} {:>8} {:>8} {:>8} {:>6}".format(*header))
    for name in args.models.split(","):
        model = build(name)
        counting = CountingModel(model).eval()
        with torch.no_grad():
            model(x)  # warm-up
        reshape = _RESHAPE.get(name)
        layers = describe_layers(model, x, reshape=reshape)
        names = [layer.name for layer in layers]
        channels = sum(layer.channels for layer in layers)
        # Plain inference in passes of the same size, measured beside the maps.
        plain = 64 / plain_inference(model, x, 64, args.per_eval)
        for variant in args.variants.split(","):
            polycam = PolyCam(counting, [f"model.{n}" for n in names], variant, reshape=reshape)
            counting.images = 0
            start = time.perf_counter()
            polycam.attribute(x, perturbations_per_eval=args.per_eval)
            seconds = time.perf_counter() - start
            passes = counting.images - 1  # less the clean pass
            live = (passes - _BLACK_IMAGE[variant]) // _PASSES_PER_CHANNEL[variant]
            print(
                f"{name:<20} {len(layers):>6} {channels:>8} {live:>6} {variant:>9} {passes:>7} "
                f"{seconds:>8.1f} {passes / seconds:>8.1f} {plain:>8.1f} "
                f"{passes / seconds / plain:>6.2f}"
            )


if __name__ == "__main__":
    main()
