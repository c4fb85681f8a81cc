"""Poly-CAM beside MONAI's own Grad-CAM on one 3D network and one volume: what the fused stages add.

One network from MONAI (``DenseNet121`` or ``resnet18``, ``spatial_dims=3``, one channel in, two
classes, random weights seeded with 0: no pretrained medical weights are reachable here), one
synthetic volume of ``--size``^3 voxels (seeded noise in ``[0, 0.5]`` plus a bright ellipsoid
off the centre, so that the map has structure to follow), the class the network predicts.
Computed:

- MONAI's ``monai.visualize.GradCAM`` at the deepest layer Poly-CAM reads (DenseNet121's
  ``class_layers.relu``, 3 x 3 x 3 at 96^3), upsampled trilinearly by MONAI's default upsampler.
  Its default postprocessing maps the map's (min, max) to (1, 0), which flips it (its docstring
  says so), so the raw map is taken and divided by its maximum instead;
- Poly-CAM PCAM+ on the discovered layers, under ``--budget`` (``pass_budget``; ``1`` for the
  exact method, which at 96^3 is about 2,600 masked passes), with its stages: stage 1 is the
  deepest layer alone (the same layer as Grad-CAM's), stage k fuses the deepest k layers, the
  last stage is the map ``attribute`` returns.

Printed, for each map: the grid of the finest layer it reads; its **effective detail** (see
:func:`effective_detail`: the smallest grid side ``g`` such that averaging the map into
``g x g x g`` blocks and resampling it back trilinearly reproduces it with Pearson correlation
>= 0.99; the map holds no more detail than a ``g``^3 grid); the correlation of the map with its
block version at the deepest layer's grid (how much of it Grad-CAM's grid can hold); and the
share of its mass inside the ellipsoid (against the ellipsoid's share of the volume, what a
flat map gives). Then the Pearson
correlation of Grad-CAM with stage 1 and with the final map. No timing: the figures do not
depend on the machine's speed.

Grad-CAM and stage 1 read the same activations but weigh the channels differently: Grad-CAM by
the mean gradient of the class logit over the layer's positions, PCAM+ by the class probability
when the input is seen through the channel's upsampled, normalised activation alone. Their
shapes agree only as far as those weights do.

Needs the medical extra (``pip install "captum-polycam[medical]"``).

Run: ``python benchmarks/compare_monai_gradcam.py [--model densenet121] [--size 96]
[--budget 0.05]``
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from monai.networks import nets
from monai.visualize import GradCAM
from torch import Tensor, nn

from captum_polycam import PolyCam, describe_layers, tune_cpu_allocator

# The correlation a coarse version of a map must reach to count as reproducing it.
DETAIL_CORRELATION = 0.99

MODELS = {
    "densenet121": lambda: nets.DenseNet121(spatial_dims=3, in_channels=1, out_channels=2),
    "resnet18": lambda: nets.resnet18(spatial_dims=3, n_input_channels=1, num_classes=2),
}


def pearson(a: Tensor, b: Tensor) -> float:
    """Pearson correlation of two tensors' values, all positions pooled (float64)."""
    x, y = a.flatten().double(), b.flatten().double()
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / (x.norm() * y.norm()).clamp_min(1e-300))


def block_correlation(saliency: Tensor, side: int) -> float:
    """Pearson correlation of a map with its ``side``-a-side block version.

    The map is averaged into a ``side x ... x side`` grid of blocks (``adaptive_avg_pool``,
    blocks of ``size / side`` voxels a side, uneven where ``side`` does not divide the size) and
    resampled back to its size (linearly, bilinearly or trilinearly, ``align_corners=False``, as
    Grad-CAM and Poly-CAM upsample).

    Args:
        saliency: One map, ``1 x 1 x *spatial`` (1 to 3 spatial dimensions), not flat.
        side: The grid's side, at least 1 (capped at each axis's size).
    """
    spatial = tuple(saliency.shape[2:])
    mode = ("linear", "bilinear", "trilinear")[len(spatial) - 1]
    pool = (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)[len(spatial) - 1]
    values = saliency.double()
    grid = pool(values, tuple(min(side, n) for n in spatial))
    return pearson(F.interpolate(grid, size=spatial, mode=mode, align_corners=False), values)


def effective_detail(saliency: Tensor, threshold: float = DETAIL_CORRELATION) -> int:
    """How fine a map really is: the smallest grid side whose blocks reproduce it.

    The first ``g = 1, 2, ...`` whose block version (:func:`block_correlation`: the map averaged
    into ``g x ... x g`` blocks and resampled back) has a Pearson correlation of at least
    ``threshold`` with the map: the map holds no more detail than a ``g``-a-side grid. A map
    upsampled from an ``s``-a-side layer and spread over many of its cells scores about ``s``;
    one with voxel-sharp edges scores up to its size, where the blocks are the voxels. A map
    that is one hot cell of a coarse layer scores more than the layer's side, since averaging
    the interpolated peak over its block flattens it: the correlation at the layer's own grid
    (:func:`block_correlation`) tells the two apart.

    Args:
        saliency: One map, ``1 x 1 x *spatial`` (1 to 3 spatial dimensions).
        threshold: The correlation to reach, in ``(0, 1]``.

    Returns:
        The side ``g``, from 1 (a flat map, which a single block reproduces) to the map's
        largest side.
    """
    if float(saliency.amax() - saliency.amin()) == 0:
        return 1
    largest = max(saliency.shape[2:])
    for side in range(1, largest + 1):
        if block_correlation(saliency, side) >= threshold:
            return side
    return largest


def synthetic_volume(size: int) -> tuple[Tensor, Tensor]:
    """A ``1 x 1 x size^3`` volume in ``[0, 1]``: seeded uniform noise in ``[0, 0.5]`` plus 0.5
    inside an ellipsoid (semi-axes 0.22, 0.15 and 0.12 of the side, centred at 0.40, 0.58 and
    0.62 of it); and the ellipsoid's mask, of the same shape."""
    noise = torch.rand(1, 1, size, size, size, generator=torch.Generator().manual_seed(1)) * 0.5
    axis = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    d, h, w = torch.meshgrid(axis, axis, axis, indexing="ij")
    inside = ((d - 0.40) / 0.22) ** 2 + ((h - 0.58) / 0.15) ** 2 + ((w - 0.62) / 0.12) ** 2 <= 1
    mask = inside[None, None]
    return noise + 0.5 * mask, mask


def monai_grad_cam(model: nn.Module, layer: str, volume: Tensor, target: int) -> Tensor:
    """MONAI's Grad-CAM of ``target`` at ``layer``, upsampled trilinearly, divided by its max."""
    # The default postprocessing maps (min, max) to (1, 0), flipping the map: keep it raw.
    cam = GradCAM(nn_module=model, target_layers=layer, postprocessing=lambda raw: raw)
    raw = cam(volume, class_idx=target).detach()
    return raw / raw.amax().clamp_min(1e-12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="densenet121", choices=sorted(MODELS))
    parser.add_argument("--size", type=int, default=96, help="voxels a side")
    parser.add_argument("--budget", type=float, default=0.05, help="pass_budget; 1 is exact")
    args = parser.parse_args()

    tune_cpu_allocator()
    torch.manual_seed(0)
    model = MODELS[args.model]().eval()
    volume, mask = synthetic_volume(args.size)
    layers = describe_layers(model, volume)
    deepest = layers[-1].name
    if ":" in deepest:
        raise SystemExit(f"the deepest layer {deepest} is a module called several times in a pass")
    with torch.no_grad():
        target = int(model(volume).argmax(dim=1))

    grad_cam = monai_grad_cam(model, deepest, volume, target)
    budget = None if args.budget == 1 else args.budget
    polycam = PolyCam(model, [layer.name for layer in layers], "plus", pass_budget=budget)
    result = polycam.decompose(volume, target=target)

    print(
        f"MONAI {args.model}, 3D, random weights (seed 0), {args.size}^3 synthetic volume, "
        f"target {target}; PCAM+, pass_budget={budget}: {result.passes} of "
        f"{result.exact_passes} masked passes, estimated fidelity "
        f"{float(result.fidelity[0]):.3f}; effective detail at Pearson >= {DETAIL_CORRELATION}"
    )
    print(f"layers: {', '.join(map(str, layers))}")
    share = float(mask.float().mean())
    rows = [(f"MONAI GradCAM ({deepest})", layers[-1].size, grad_cam)]
    for k, stage in enumerate(result.stages, start=1):
        what = "its layer alone" if k == 1 else f"deepest {k} layers"
        if k == len(result.stages):
            what = f"all {k} layers: the map"
        rows.append((f"Poly-CAM stage {k} ({what})", layers[-k].size, stage))
    coarsest = layers[-1].size[0]
    header = "map", "finest grid", "detail g", f"r, {coarsest}^3 blocks", "mass in ellipsoid"
    print("{:<44} {:>11} {:>8} {:>14} {:>17}".format(*header))
    for name, grid, saliency in rows:
        inside = float((saliency * mask).sum() / saliency.sum().clamp_min(1e-12))
        print(
            f"{name:<44} {'x'.join(map(str, grid)):>11} {effective_detail(saliency):>8} "
            f"{block_correlation(saliency, coarsest):>14.3f} {inside:>17.3f}"
        )
    print(
        f"{'a flat map (the ellipsoid share of the volume)':<44} {'':>11} {1:>8} {'':>14} "
        f"{share:>17.3f}"
    )
    print(
        f"Pearson correlation of MONAI GradCAM with Poly-CAM stage 1: "
        f"{pearson(grad_cam, result.stages[0]):.3f}; with the final map: "
        f"{pearson(grad_cam, result.maps):.3f}"
    )


if __name__ == "__main__":
    main()
