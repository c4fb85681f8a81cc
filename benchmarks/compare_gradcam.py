"""Poly-CAM next to Captum's LayerGradCam on the real pretrained network, by the paper's metrics.

For the bundled cat photo and scikit-image's ``coffee`` (both CC0), with the pretrained
EfficientNet-Lite0 and each photo's top-1 class, prints insertion, deletion, their difference
(224 steps, blurred baseline, softmax), max-sensitivity (Captum's defaults) and average drop of
each method's map, and the seconds each took.

Run: ``python benchmarks/compare_gradcam.py [--variant plus] [--sensitivity-samples 10]``
(needs the ``examples`` extra and scikit-image).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from _common import load_lite0, photo
from captum.attr import LayerAttribution, LayerGradCam
from torch import Tensor

from captum_polycam import ConfidenceChange, InsertionDeletion, PolyCam, Sensitivity
from captum_polycam.resources.images import normalise


def coffee() -> Tensor:
    from skimage import data

    image = torch.from_numpy(data.coffee()).permute(2, 0, 1)[None].float() / 255
    image = F.interpolate(image, size=(224, 224), mode="bilinear", antialias=True)
    return normalise(image.clamp(0, 1)).contiguous(memory_format=torch.channels_last)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="plus", choices=["plus", "minus", "plusminus"])
    parser.add_argument("--sensitivity-samples", type=int, default=10)
    args = parser.parse_args()

    model = load_lite0()
    inputs = torch.cat([photo(), coffee()]).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        targets = model(inputs).argmax(dim=1)
    size = tuple(inputs.shape[-2:])

    gradcam = LayerGradCam(model, model._conv_head)

    def grad_cam(x: Tensor, target: Tensor | list[int]) -> Tensor:
        maps = gradcam.attribute(x, target, relu_attributions=True)
        return LayerAttribution.interpolate(maps, size, "bilinear")

    polycam = PolyCam(model, variant=args.variant)
    methods = {f"Poly-CAM ({args.variant})": polycam.attribute, "LayerGradCam": grad_cam}
    faithfulness = InsertionDeletion(model)
    confidence = ConfidenceChange(model)
    torch.manual_seed(0)
    print(f"EfficientNet-Lite0, targets {targets.tolist()}, {torch.get_num_threads()} CPU threads")
    header = "method", "image", "insertion", "deletion", "ins-del", "sens. max", "avg drop %"
    print("{:<20} {:<8} {:>9} {:>9} {:>8} {:>10} {:>11}".format(*header))
    for name, explain in methods.items():
        start = time.perf_counter()
        maps = explain(inputs, target=targets)
        seconds = time.perf_counter() - start
        curves = faithfulness(inputs, maps, targets)
        drops = confidence(inputs, maps, targets).drop
        torch.manual_seed(0)
        sensitivity = Sensitivity(explain, n_perturb_samples=args.sensitivity_samples)
        sens = sensitivity(inputs, target=targets).max
        for i, image in enumerate(("chelsea", "coffee")):
            print(
                f"{name:<20} {image:<8} {float(curves.insertion.auc[i]):9.4f} "
                f"{float(curves.deletion.auc[i]):9.4f} {float(curves.difference[i]):8.4f} "
                f"{float(sens[i]):10.4f} {float(drops[i]):11.2f}"
            )
        print(f"{name}: maps of 2 images in {seconds:.1f} s")


if __name__ == "__main__":
    main()
