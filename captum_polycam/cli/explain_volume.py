"""``captum-polycam explain SCAN``: Poly-CAM maps of a 3-D network's classes on scans, written
where a radiologist opens them.

Each scan (``.nii``, ``.nii.gz``, ``.npy``, read by
:func:`~captum_polycam.resources.volumes.read_volume`) is scaled to ``[0, 1]`` as asked
(``--window`` or ``--percentiles``), resampled to ``--size`` if given, and explained as one
``1 x 1 x D x H x W`` input; its map, back on the scan's grid, goes where ``--out``'s suffix
says: a NIfTI volume in the scan's space with a JSON record of the run beside it, a ``.npy``
array, or a figure of slices. ``explain`` sends scans here by their suffixes.

Example::

    captum-polycam explain chest_ct.nii.gz --model my_models:classifier_3d \\
        --window -1000 400 --out map.nii.gz
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import captum_polycam
from captum_polycam._conventions import input_errors_explained
from captum_polycam.attr import VARIANTS, LayerInfo, PolyCamMaps
from captum_polycam.cli.arguments import (
    check_device,
    check_outputs,
    layer_names,
    volume_intensity,
)
from captum_polycam.cli.classes import class_scores, print_classes
from captum_polycam.cli.figure import (
    FIGURE_FORMATS,
    check_figure_path,
    check_file_path,
    save_volume_figure,
)
from captum_polycam.cli.steps import timed_polycam, writing_figure
from captum_polycam.evaluation.config import checked_layers
from captum_polycam.normalisation import upsample
from captum_polycam.resources.errors import EvaluationError
from captum_polycam.resources.models import load_model
from captum_polycam.resources.volumes import (
    SUFFIXES,
    Volume,
    VolumeIntensity,
    read_volume,
    write_volume,
)

__all__ = ["is_scan", "record_path", "run"]


def is_scan(path: Path) -> bool:
    """Whether ``path`` names a scan by its suffix (``.nii``, ``.nii.gz``, ``.npy``, any case)."""
    return path.name.lower().endswith(SUFFIXES)


def record_path(out: Path) -> Path:
    """The JSON record beside the map ``out``, as BIDS names sidecars: ``map.nii.gz`` gives
    ``map.json``."""
    name = out.name.lower()
    suffix = max((s for s in SUFFIXES if name.endswith(s)), key=len)
    return out.with_name(out.name[: -len(suffix)] + ".json")


@dataclass(frozen=True, eq=False)
class _Explained:
    """One scan explained: what was run on it, and what came out, on the scan's grid."""

    scan: Volume
    scaled: Tensor  # D x H x W in [0, 1]: the scan as scaled for the network, drawn under the map
    values: tuple[float, float]  # the voxel values the scaling mapped to 0 and 1
    inputs_shape: tuple[int, ...]
    layers: list[LayerInfo]
    target: int
    logits: Tensor
    probabilities: Tensor
    result: PolyCamMaps
    map: Tensor  # D x H x W in [0, 1], on the scan's grid


def run(args: argparse.Namespace) -> int:
    """Explain the scans of ``args`` and write the map or the figure; return the exit status.

    The checks that need neither the scans nor the model come first, then those that need the
    scans (a ``.npy`` map of a scan placed in space), then the model's, on each scan's clean
    pass; nothing is written before every scan is explained.
    """
    scans = list(args.images)
    intensity = _check_arguments(args, scans)
    record = record_path(args.out) if is_scan(args.out) else None
    volumes = [read_volume(path) for path in scans]
    if args.out.name.lower().endswith(".npy") and not np.array_equal(volumes[0].affine, np.eye(4)):
        raise EvaluationError(
            f"--out {str(args.out)!r}: a .npy file has no affine, and the scan "
            f"{str(scans[0])!r} has one other than the identity, so the map would lose where it "
            "lies: write .nii.gz or .nii"
        )

    device = torch.device(args.device)
    model, _ = load_model(args.model, device)  # a 3-D network keeps its own layout
    method = VARIANTS[args.variant]
    print(f"Model: {args.model} on {device}, method: {method}")
    explained = [
        _explain(args, model, volume, index, intensity, device)
        for index, volume in enumerate(volumes)
    ]
    if record is None:
        with writing_figure(args.out):
            save_volume_figure(
                args.out,
                [one.scaled for one in explained],
                [one.map for one in explained],
                titles=[
                    f"{one.scan.path.name}: class {one.target} "
                    f"({float(one.probabilities[one.target]):.1%}), {method}"
                    for one in explained
                ],
                montage_axes=[_montage_axis(one.scan) for one in explained],
            )
        return 0
    _write_map(args, explained[0], intensity, record)
    return 0


def _check_arguments(args: argparse.Namespace, scans: list[Path]) -> VolumeIntensity:
    """The checks that need neither the scans nor the model, run first so that mistakes fail in
    a second; the intensity scaling asked for."""
    check_device(args.device)
    if ":" not in args.model:
        raise EvaluationError(
            f"--model {args.model}: a 2-D ImageNet classifier cannot explain the scan "
            f"{str(scans[0])!r}: pass a 3-D network as --model package.module:callable, a "
            "function of no arguments returning it (such as MONAI's DenseNet121 built with "
            "spatial_dims=3 and your weights loaded)"
        )
    if args.boxes is not None or args.boxes_format is not None:
        option = "--boxes" if args.boxes is not None else "--boxes-format"
        raise EvaluationError(f"{option}: only for images, not for scans")
    if args.target is not None and len(args.target) not in (1, len(scans)):
        raise EvaluationError(
            f"--target: give one class for all scans or one per scan; got {len(args.target)} "
            f"classes for {len(scans)} scans"
        )
    # Scaled at the scan's own size, which the figure draws under the map; --size resamples
    # after, and the map is resampled back.
    intensity = volume_intensity(args)
    inputs = [("the scan", scan) for scan in scans]
    if is_scan(args.out):
        if len(scans) > 1:
            raise EvaluationError(
                f"--out {str(args.out)!r}: a map file holds one scan's map; got {len(scans)} "
                "scans: explain them one at a time, or give a figure such as maps.png"
            )
        check_file_path(args.out, "map", "map.nii.gz")
        check_outputs([args.out, record_path(args.out)], inputs)
    elif args.out.suffix and args.out.suffix.lower()[1:] not in FIGURE_FORMATS:
        raise EvaluationError(
            f"--out: cannot write {str(args.out)!r}: for scans, give a map file "
            f"({', '.join(SUFFIXES)}) or a figure ({', '.join(FIGURE_FORMATS)}), by the file "
            "name's suffix"
        )
    else:
        check_figure_path(args.out, inputs)
    return intensity


def _explain(
    args: argparse.Namespace,
    model: nn.Module,
    scan: Volume,
    index: int,
    intensity: VolumeIntensity,
    device: torch.device,
) -> _Explained:
    """Scale, resample and explain one scan, printing what it does as it goes."""
    name = str(scan.path)
    scaled = intensity(scan.data)[0]
    values = intensity.value_range(scan.data)
    inputs = scaled[None, None]  # 1 x 1 x D x H x W: one scan, one channel
    if args.size is not None:
        inputs = upsample(inputs, tuple(args.size))
    inputs = inputs.to(device)
    logits = _clean_pass(model, inputs, args.model, name)
    probabilities = logits[0].softmax(dim=-1)
    classes = len(probabilities)
    if args.target is None:
        target = int(probabilities.argmax())
    else:
        target = args.target[0] if len(args.target) == 1 else args.target[index]
        if not 0 <= target < classes:
            raise EvaluationError(f"--target {target}: classes run from 0 to {classes - 1}")

    layers = checked_layers(
        model, inputs, layer_names(args.layers), args.reshape, argument="--layers"
    )
    # Report the preprocessing and the classes before the attribution, which takes a while.
    print_classes(name, probabilities.cpu(), target, [f"class {k}" for k in range(classes)])
    print(
        f"Preprocessing: {'x'.join(map(str, scan.data.shape))} voxels; intensities: "
        f"{_describe(intensity, values)}; {_resampling(args, scan)}"
    )
    print("Layers, shallow to deep: " + ", ".join(str(layer) for layer in layers))
    sys.stdout.flush()
    result = timed_polycam(
        args, model, [layer.name for layer in layers], inputs, target, f"the scan {name}"
    )
    # Back on the scan's grid, trilinear as the way there: the map lies voxel for voxel on the
    # scan, whose affine places it.
    on_grid = upsample(result.maps.cpu(), tuple(scan.data.shape))[0, 0]
    return _Explained(
        scan=scan,
        scaled=scaled,
        values=values,
        inputs_shape=tuple(inputs.shape),
        layers=layers,
        target=target,
        logits=logits[0].cpu(),
        probabilities=probabilities.cpu(),
        result=result,
        map=on_grid,
    )


def _clean_pass(model: nn.Module, inputs: Tensor, model_name: str, scan: str) -> Tensor:
    """The network's ``1 x classes`` logits for one scan, or a usage error naming ``--model``
    and the scan where the network cannot take it."""
    shape = " x ".join(map(str, inputs.shape))
    try:
        with torch.no_grad(), input_errors_explained(model, inputs):
            output = model(inputs)
    # Explained: another number of dimensions or channels than the first convolution's.
    except (TypeError, ValueError) as error:
        raise EvaluationError(
            f"--model {model_name} cannot take the scan {scan!r} as {shape} (a scan needs a "
            f"3-D network of one input channel): {error}"
        ) from None
    # The user's network failing otherwise: often one built for a fixed input size.
    except RuntimeError as error:
        raise EvaluationError(
            f"--model {model_name} failed on the scan {scan!r} as {shape}: {error}; if it "
            "takes one input size only, give it with --size D H W"
        ) from None
    return class_scores(output, model_name, "a classifier of scans")


def _describe(intensity: VolumeIntensity, values: tuple[float, float]) -> str:
    """The scaling in words, with the voxel ``values`` it mapped to 0 and 1 on one scan."""
    if intensity.window is not None:
        return f"window {values[0]:g} to {values[1]:g} scaled to [0, 1]"
    low, high = intensity.percentiles or ()
    return (
        f"percentiles {low:g} to {high:g} (voxel values {values[0]:.6g} to {values[1]:.6g}) "
        "scaled to [0, 1]"
    )


def _resampling(args: argparse.Namespace, scan: Volume) -> str:
    if args.size is None:
        return "not resampled"
    size, shape = ("x".join(map(str, sides)) for sides in (args.size, scan.data.shape))
    return f"resampled trilinearly to {size} (--size), the map back to {shape}"


def _montage_axis(scan: Volume) -> int:
    """The axis along which the file stacks its slices: ``k`` (axis 2) in NIfTI, as scanners'
    converters write it; ``D`` (axis 0) in a ``D x H x W`` array."""
    return 0 if scan.header is None else 2


def _write_map(
    args: argparse.Namespace, explained: _Explained, intensity: VolumeIntensity, record: Path
) -> None:
    """The map at ``--out`` in the scan's space, then its record beside it."""
    facts = _record(args, explained, intensity)
    scan = explained.scan
    if scan.header is not None:
        # The header's one free line (80 bytes of ASCII): what a viewer shows of the file.
        header = scan.header.copy()
        summary = (
            f"Poly-CAM {facts['method']} class {explained.target} "
            f"p={facts['target']['probability']:.3f} {facts['passes']}/"
            f"{facts['exact_passes']} passes {args.model}"
        )
        header["descrip"] = summary.encode("ascii", "replace")[:80]
        scan = dataclasses.replace(scan, header=header)
    try:
        write_volume(args.out, explained.map, like=scan)
    except EvaluationError as error:
        raise EvaluationError(f"--out: {error}") from None
    try:
        record.write_text(json.dumps(facts, indent=2) + "\n")
    except OSError as error:
        raise EvaluationError(
            f"--out: cannot write the record {str(record)!r}: {error.strerror or error}"
        ) from None
    print(f"Map: {args.out} (record: {record})")


def _record(
    args: argparse.Namespace, explained: _Explained, intensity: VolumeIntensity
) -> dict[str, Any]:
    """What a reader of the map needs to know of the run that made it, as JSON values."""
    result = explained.result
    fidelity = float(result.fidelity[0])
    method = "window" if intensity.window is not None else "percentiles"
    top = explained.probabilities.topk(min(5, len(explained.probabilities)))
    return {
        "scan": str(explained.scan.path),
        "shape": list(explained.scan.data.shape),
        "intensity": {
            "method": method,
            method: list(getattr(intensity, method)),
            "voxel_values_to_0_and_1": list(explained.values),
        },
        "resampling": None
        if args.size is None
        else {"size": list(args.size), "interpolation": "trilinear", "map_back": "trilinear"},
        "input_shape": list(explained.inputs_shape),
        "model": args.model,
        "device": args.device,
        "target": {
            "class": explained.target,
            "logit": float(explained.logits[explained.target]),
            "probability": float(explained.probabilities[explained.target]),
        },
        "top_classes": [
            {"class": int(index), "probability": float(value)}
            for value, index in zip(*top, strict=True)
        ],
        "variant": args.variant,
        "method": VARIANTS[args.variant],
        "layers": [
            {"name": layer.name, "channels": layer.channels, "size": list(layer.size)}
            for layer in explained.layers
        ],
        "pass_budget": args.pass_budget,
        "min_fidelity": args.min_fidelity,
        "passes": result.passes,
        "exact_passes": result.exact_passes,
        # NaN where a budget left no channel to check it: JSON has no NaN.
        "fidelity": None if math.isnan(fidelity) else fidelity,
        "map": {"path": str(args.out), "dtype": "float32", "range": [0.0, 1.0]},
        "captum_polycam": captum_polycam.__version__,
    }
