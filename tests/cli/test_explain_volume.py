"""``captum-polycam explain SCAN``: scans in, maps out in the scan's space (NIfTI with its affine
and header, ``.npy``), the figure of slices, the record of the run, and the usage errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from captum_polycam import PolyCam
from captum_polycam.attr import PolyCamMaps
from captum_polycam.cli.explain_volume import is_scan, record_path
from captum_polycam.cli.main import main
from captum_polycam.normalisation import upsample
from captum_polycam.resources.volumes import percentile_scale, window
from tests.conftest import error_line

_EXTRA = "nibabel is the medical extra: pip install 'captum-polycam[medical]'"
NETWORK = "tests.cli.test_explain_volume:tiny_network"
# The maps are compared with the Python API's on the CPU: a GPU's convolutions round otherwise.
CPU = ("--device", "cpu")
SIDE = 16
# 2 x 2 x 3 mm voxels, placed away from the scanner's origin: a map written with another
# affine, or with none, would not lie on the scan.
AFFINE = np.array(
    [[2.0, 0, 0, -30.0], [0, 2.0, 0, 12.0], [0, 0, 3.0, -7.5], [0, 0, 0, 1]], dtype=np.float64
)


class _TinyVolumeNetwork(nn.Module):
    """Three resolutions (16, 8 and 4 voxels a side at a 16^3 input), ReLU stages, 3 classes."""

    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv3d(channels, 3, 3, padding=1), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv3d(3, 4, 3, stride=2, padding=1), nn.ReLU())
        self.block3 = nn.Sequential(nn.Conv3d(4, 5, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(5, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.block3(self.block2(self.block1(x))).mean(dim=(2, 3, 4)))


def _seeded(channels: int = 1) -> nn.Module:
    # Its own generator state: the factory leaves the caller's random streams alone.
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return _TinyVolumeNetwork(channels).eval()


def tiny_network() -> nn.Module:
    """The network the command loads by ``package.module:callable``, as a user's would be."""
    return _seeded()


def two_channel_network() -> nn.Module:
    """A network of two input channels (a scan gives one)."""
    return _seeded(channels=2)


def fixed_size_network() -> nn.Module:
    """A network whose head takes the features of an 8^3 input only (2 x 4 x 4 x 4)."""
    return nn.Sequential(nn.Conv3d(1, 2, 3, stride=2, padding=1), nn.Flatten(), nn.Linear(128, 3))


@pytest.fixture
def nibabel() -> ModuleType:
    """nibabel, for the NIfTI tests only: the .npy ones run without the extra."""
    return pytest.importorskip("nibabel", reason=_EXTRA)


def _voxels(seed: int = 0) -> np.ndarray:
    """A 16^3 scan in CT-like units: noise, with a bright cube the maps have something in."""
    rng = np.random.default_rng(seed)
    voxels = rng.normal(40.0, 30.0, (SIDE, SIDE, SIDE)).astype(np.float32)
    voxels[4:9, 6:12, 3:8] += 400.0
    return voxels


def _nifti(nibabel: ModuleType, path: Path, voxels: np.ndarray | None = None) -> Path:
    image = nibabel.Nifti1Image(_voxels() if voxels is None else voxels, AFFINE)
    image.header.set_xyzt_units("mm")
    nibabel.save(image, path)
    return path


def _voxels_of(image: Any) -> Tensor:
    """A NIfTI image's voxels, as written (float32)."""
    return torch.from_numpy(image.get_fdata(dtype=np.float32))


def _expected(inputs: Tensor, target: int | None = None) -> tuple[PolyCamMaps, int]:
    """What Poly-CAM's Python API gives for ``inputs`` (1 x 1 x D x H x W) and the class
    ``target``, or the network's top-1 class; and that class."""
    network = tiny_network()
    if target is None:
        with torch.no_grad():
            target = int(network(inputs).argmax())
    return PolyCam(network, variant="plus").decompose(inputs, target=target), target


def test_scans_are_told_by_their_suffix_in_any_case() -> None:
    for name in ("a.nii", "a.NII.GZ", "a.nii.gz", "a.Npy"):
        assert is_scan(Path(name))
    for name in ("a.png", "a.gz", "nii.png", "a.niigz"):
        assert not is_scan(Path(name))
    assert record_path(Path("out/map.nii.gz")) == Path("out/map.json")
    assert record_path(Path("map.NII")) == Path("map.json")
    assert record_path(Path("map.v2.npy")) == Path("map.v2.json")


def test_a_nifti_map_lies_on_its_scan_with_its_record(tmp_path, capsys, nibabel) -> None:
    scan = _nifti(nibabel, tmp_path / "scan.nii.gz")
    out = tmp_path / "map.nii.gz"
    assert main(["explain", str(scan), "--model", NETWORK, "--out", str(out), "--quiet", *CPU]) == 0

    written, original = nibabel.load(out), nibabel.load(scan)
    assert written.shape == original.shape == (SIDE,) * 3
    np.testing.assert_array_equal(written.affine, AFFINE)
    assert written.header.get_zooms() == original.header.get_zooms() == (2.0, 2.0, 3.0)
    assert written.header.get_xyzt_units() == ("mm", "unknown")
    assert written.get_data_dtype() == np.float32
    # Percentile scaling (0.5 to 99.5) by default, the top-1 class, PCAM+.
    inputs = percentile_scale(torch.from_numpy(_voxels()))[None, None]
    expected, target = _expected(inputs)
    torch.testing.assert_close(_voxels_of(written), expected.maps[0, 0])
    record = json.loads((tmp_path / "map.json").read_text())
    low, high = np.percentile(_voxels(), [0.5, 99.5])
    assert record["scan"] == str(scan) and record["shape"] == [SIDE] * 3
    assert record["intensity"]["method"] == "percentiles"
    assert record["intensity"]["percentiles"] == [0.5, 99.5]
    np.testing.assert_allclose(record["intensity"]["voxel_values_to_0_and_1"], [low, high], 1e-5)
    assert record["resampling"] is None and record["input_shape"] == [1, 1, SIDE, SIDE, SIDE]
    assert record["model"] == NETWORK and record["variant"] == "plus"
    assert record["method"] == "PCAM+"
    with torch.no_grad():
        probabilities = tiny_network()(inputs).softmax(dim=-1)[0]
    assert record["target"]["class"] == target
    assert record["target"]["probability"] == pytest.approx(float(probabilities[target]))
    assert [c["class"] for c in record["top_classes"]] == probabilities.argsort(
        descending=True
    ).tolist()
    assert record["layers"] == [
        {"name": "block1", "channels": 3, "size": [16, 16, 16]},
        {"name": "block2", "channels": 4, "size": [8, 8, 8]},
        {"name": "block3", "channels": 5, "size": [4, 4, 4]},
    ]
    assert record["pass_budget"] is None and record["fidelity"] == 1.0
    assert record["passes"] == record["exact_passes"] == expected.passes
    assert record["map"]["path"] == str(out)
    # The header's summary, cut to the field's 80 bytes.
    summary = (
        f"Poly-CAM PCAM+ class {target} p={record['target']['probability']:.3f} "
        f"{record['passes']}/{record['passes']} passes {NETWORK}"
    )
    assert written.header["descrip"].item().decode() == summary[:80]
    printed = capsys.readouterr().out
    assert f"Map: {out} (record: {tmp_path / 'map.json'})" in printed
    assert "Preprocessing: 16x16x16 voxels; intensities: percentiles 0.5 to 99.5" in printed


def test_a_window_and_a_size_are_applied_and_recorded(tmp_path, nibabel) -> None:
    scan = _nifti(nibabel, tmp_path / "scan.nii")
    out = tmp_path / "map.nii"
    command = ["explain", str(scan), "--model", NETWORK, "--out", str(out), "--quiet", *CPU]
    options = ["--window", "-100", "300", "--size", "8", "8", "8", "--target", "2"]
    assert main([*command, *options]) == 0

    windowed = window(torch.from_numpy(_voxels()), -100.0, 300.0)[None, None]
    expected, _ = _expected(upsample(windowed, (8, 8, 8)), target=2)
    written = nibabel.load(out)
    np.testing.assert_array_equal(written.affine, AFFINE)
    torch.testing.assert_close(_voxels_of(written), upsample(expected.maps, (SIDE,) * 3)[0, 0])
    record = json.loads((tmp_path / "map.json").read_text())
    assert record["intensity"] == {
        "method": "window",
        "window": [-100.0, 300.0],
        "voxel_values_to_0_and_1": [-100.0, 300.0],
    }
    assert record["resampling"] == {
        "size": [8, 8, 8],
        "interpolation": "trilinear",
        "map_back": "trilinear",
    }
    assert record["input_shape"] == [1, 1, 8, 8, 8] and record["target"]["class"] == 2
    assert [layer["size"] for layer in record["layers"]] == [[8, 8, 8], [4, 4, 4], [2, 2, 2]]


def test_a_npy_scan_gives_a_npy_map(tmp_path) -> None:
    scan = tmp_path / "scan.npy"
    np.save(scan, _voxels())
    out = tmp_path / "map.npy"
    command = ["explain", str(scan), "--model", NETWORK, "--percentiles", "2", "98"]
    assert main([*command, "--out", str(out), "--quiet", *CPU]) == 0
    expected, _ = _expected(percentile_scale(torch.from_numpy(_voxels()), 2.0, 98.0)[None, None])
    torch.testing.assert_close(torch.from_numpy(np.load(out)), expected.maps[0, 0])
    assert json.loads((tmp_path / "map.json").read_text())["intensity"]["percentiles"] == [2, 98]


def test_the_figure_shows_each_scan(tmp_path, capsys, nibabel) -> None:
    scans = [str(_nifti(nibabel, tmp_path / f"scan{k}.nii.gz")) for k in range(2)]
    out = tmp_path / "slices.png"
    assert main(["explain", *scans, "--model", NETWORK, "--out", str(out), "--quiet"]) == 0
    # Per scan: three 300 px planes over a montage of 16 slices, 4 x 4 panels of 300 px.
    with Image.open(out) as drawn:
        assert drawn.size == (1200, 2 * (300 + 1200))
    printed = capsys.readouterr().out
    assert printed.count("Preprocessing: 16x16x16 voxels; intensities: percentiles") == 2
    assert printed.count("Layers, shallow to deep: block1 (3@16x16x16), block2") == 2
    assert f"Figure: {out}" in printed and not (tmp_path / "slices.json").exists()


def _truncated(nibabel: ModuleType, path: Path) -> Path:
    whole = _nifti(nibabel, path).read_bytes()
    assert gzip.decompress(whole)  # a whole .nii.gz, until cut in half
    path.write_bytes(whole[: len(whole) // 2])
    return path


def _four_dimensional(nibabel: ModuleType, path: Path) -> Path:
    nibabel.save(nibabel.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), AFFINE), path)
    return path


@pytest.mark.parametrize(
    ("arguments", "told"),
    [
        (["{truncated}"], "truncated.nii.gz': not a readable NIfTI file ("),
        (["{four_d}"], "four_d.nii.gz' is 4-D (4x4x4x2): the model takes one 3-D volume; pick"),
        (["{missing}"], "missing.nii.gz': no such file"),
        (["{scan}", "--window", "5", "5"], "--window: LOW must be below HIGH; got LOW=5.0, HIGH"),
        (["{scan}", "--window", "5", "nan"], "--window: LOW and HIGH must be finite; got LOW=5"),
        (["{scan}", "--percentiles", "60", "40"], "--percentiles: must satisfy 0 <= P_LOW < P"),
        (["{scan}", "{image}"], "IMAGE: give images or scans, not both; got the scan"),
        (["{image}", "--window", "0", "80"], "--window: only for scans (.nii, .nii.gz, .npy);"),
        (["{image}", "--size", "8", "8", "8"], "--size: only for scans"),
        (["{scan}", "--model", "efficientnet-lite0"], "--model efficientnet-lite0: a 2-D"),
        (
            ["{scan}", "--model", "tests.evaluation.tiny_models:tiny_classifier"],
            "cannot take the scan '{scan}' as 1 x 1 x 16 x 16 x 16 (a scan needs a 3-D network of "
            "one input channel): inputs are 5-D N x C x D x H x W but the model's first "
            "convolution, block1.0, a Conv2d, takes 4-D",
        ),
        (
            ["{scan}", "--model", "tests.cli.test_explain_volume:two_channel_network"],
            "inputs have 1 channels but the model's first convolution, block1.0, takes 2",
        ),
        (
            ["{scan}", "--model", "tests.cli.test_explain_volume:fixed_size_network"],
            "--model tests.cli.test_explain_volume:fixed_size_network failed on the scan '{scan}'"
            " as 1 x 1 x 16 x 16 x 16: mat1 and mat2 shapes cannot be multiplied",
        ),
        (["{scan}", "--target", "3"], "--target 3: classes run from 0 to 2"),
        (["{scan}", "--target", "1", "2"], "--target: give one class for all scans or one per"),
        (["{scan}", "--boxes", "{image}"], "--boxes: only for images, not for scans"),
        (["{scan}", "--out", "{tmp}/map.npy"], "a .npy file has no affine, and the scan"),
        (["{scan}", "{scan}", "--out", "{tmp}/map.nii.gz"], "a map file holds one scan's map"),
        (["{scan}", "--out", "{tmp}/map.txt"], "--out: cannot write '{tmp}/map.txt': for scans"),
        (["{scan}", "--out", "{tmp}"], "--out: '{tmp}' is a folder; give the figure's file"),
        (["{scan}", "--out", "{tmp}/no/map.nii.gz"], "--out: the folder '{tmp}/no' does not"),
        (["{scan}", "--out", "{scan}"], "--out: '{scan}' is the scan '{scan}'; the command never"),
        (["{scan}", "--out", "{tmp}/scan.nii.gz.png"], None),  # a figure: written
    ],
)
def test_bad_input_is_one_line_naming_it(
    tmp_path, capsys, nibabel, arguments: list[str], told: str | None
) -> None:
    paths = {
        "scan": str(_nifti(nibabel, tmp_path / "scan.nii.gz")),
        "truncated": str(_truncated(nibabel, tmp_path / "truncated.nii.gz")),
        "four_d": str(_four_dimensional(nibabel, tmp_path / "four_d.nii.gz")),
        "missing": str(tmp_path / "missing.nii.gz"),
        "image": str(tmp_path / "photo.png"),
        "tmp": str(tmp_path),
    }
    Image.new("RGB", (8, 8)).save(paths["image"])
    command = [argument.format(**paths) for argument in arguments]
    if "--model" not in command:
        command += ["--model", NETWORK]
    if "--out" not in command:
        command += ["--out", str(tmp_path / "out.png")]
    status = main(["explain", *command, "--quiet"])
    if told is None:
        assert status == 0
        return
    assert status == 2
    assert told.format(**paths) in error_line(capsys)
    assert not any(tmp_path.glob("out*")) and not (tmp_path / "map.json").exists()


@pytest.mark.parametrize(
    ("arguments", "told"),
    [
        (["--size", "0", "8", "8"], "argument --size: must be from 1 to 1024 voxels, got 0"),
        (["--size", "8", "8"], "argument --size: expected 3 arguments"),
        (
            ["--window", "0", "80", "--percentiles", "1", "99"],
            "argument --percentiles: not allowed with argument --window",
        ),
    ],
)
def test_argument_errors_are_usage_errors(tmp_path, capsys, arguments, told) -> None:
    scan = tmp_path / "scan.npy"
    np.save(scan, _voxels())
    assert main(["explain", str(scan), "--model", NETWORK, *arguments]) == 2
    assert f"error: {told}" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_scan_is_explained_on_the_gpu(tmp_path, nibabel) -> None:
    scan = str(_nifti(nibabel, tmp_path / "scan.nii.gz"))
    maps = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.nii.gz"
        command = [scan, "--model", NETWORK, "--device", device, "--target", "1", "--quiet"]
        assert main(["explain", *command, "--out", str(out)]) == 0
        written = nibabel.load(out)
        np.testing.assert_array_equal(written.affine, AFFINE)
        maps[device] = _voxels_of(written)
        assert main(["explain", *command, "--out", str(tmp_path / f"{device}.png")]) == 0
    # The GPU's convolutions round differently (TF32 among them): close, not equal.
    torch.testing.assert_close(maps["cuda"], maps["cpu"], atol=1e-2, rtol=0)
