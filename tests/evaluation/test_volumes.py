"""The evaluation on a folder of scans: the intensity scaling recorded as the preprocessing, the
scans as samples, the maps keyed by file name and equal to the methods' own, the metrics, the
resume and its refusal, unreadable scans, and the page's three planes per scan."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import nibabel
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from captum_polycam import ConfidenceChange, InsertionDeletion, PolyCam
from captum_polycam.evaluation import EvaluationConfig, build_methods, evaluate
from captum_polycam.evaluation.datasets import holds_scans
from captum_polycam.evaluation.methods import CENTRE_SIGMA, centre_prior
from captum_polycam.resources import (
    EvaluationError,
    Preprocessing,
    VolumeFolder,
    VolumeIntensity,
    read_volume,
    window,
)
from captum_polycam.visualization import overlay
from tests.conftest import read_csv
from tests.evaluation.tiny_models import tiny_volume_classifier

MODEL = "tests.evaluation.tiny_models:tiny_volume_classifier"
STEM = "tiny_volume_classifier"
SIDE = 16
WINDOW = VolumeIntensity(window=(-2.0, 2.0))
READABLE = ("a.npy", "b.nii.gz", "c.nii")
TRUNCATED = "d.nii.gz"


def _scan(seed: int, shape: tuple[int, ...] = (SIDE, SIDE, SIDE)) -> np.ndarray:
    """Noise with a bright blob at a place of the seed's: maps with a clear maximum."""
    generator = np.random.default_rng(seed)
    voxels = generator.normal(size=shape).astype(np.float32)
    centre = generator.integers(3, min(shape) - 3, size=3)
    voxels[tuple(slice(c - 2, c + 2) for c in centre)] += 3.0
    return voxels


def _nifti(path: Path, voxels: np.ndarray) -> None:
    nibabel.save(nibabel.Nifti1Image(voxels, np.diag([1.5, 1.5, 2.0, 1.0])), path)


def _scans(folder: Path) -> Path:
    """Three readable scans (NumPy, compressed and plain NIfTI) and a truncated one."""
    folder.mkdir()
    np.save(folder / "a.npy", _scan(0))
    _nifti(folder / "b.nii.gz", _scan(1))
    _nifti(folder / "c.nii", _scan(2))
    _nifti(folder / TRUNCATED, _scan(3))
    data = (folder / TRUNCATED).read_bytes()
    (folder / TRUNCATED).write_bytes(data[: len(data) // 2])
    return folder


def _config(**changes: object) -> EvaluationConfig:
    settings: dict[str, object] = {
        "model": MODEL,
        "methods": ("pcam+", "gradcam"),
        "n_steps": 8,
        "batch_size": 2,
        "sensitivity_images": 1,
        "preprocessing": WINDOW,
    }
    settings.update(changes)
    return EvaluationConfig(**settings)  # type: ignore[arg-type]


def _inputs(folder: Path, names: tuple[str, ...] = READABLE) -> torch.Tensor:
    """The scans as the run's inputs, scaled by the window here, not by the pipeline."""
    return torch.stack([window(read_volume(folder / name).data, -2.0, 2.0)[None] for name in names])


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _scans(tmp_path_factory.mktemp("volumes") / "scans")


@pytest.fixture(scope="module")
def finished(scans: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "out"
    evaluate(scans, out, _config(), num_workers=0, show_progress=False)
    return out


def _maps(out: Path, method: str) -> dict[str, np.ndarray]:
    with np.load(out / "npz" / f"{STEM}_{method}.npz", allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def test_the_intensity_is_a_recorded_window_or_percentiles() -> None:
    voxels = torch.tensor([-1000.0, 0.0, 40.0, 80.0, 3000.0]).reshape(1, 1, 5)
    brain = VolumeIntensity(window=(0, 80))
    assert brain.window == (0.0, 80.0) and brain.percentiles is None
    # Clipped to [0, 80] and scaled: (v - 0) / 80.
    assert torch.equal(brain(voxels), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]).reshape(1, 1, 1, 5))
    assert brain.as_dict() == {"window": [0.0, 80.0], "percentiles": None, "size": None}
    # Neither given: percentile_scale's 0.5 and 99.5, as the command line's default.
    assert VolumeIntensity() == VolumeIntensity(percentiles=(0.5, 99.5))
    ramp = torch.arange(101.0).reshape(1, 1, 101)
    # The 10th percentile of 0..100 is 10, the 60th is 60: (v - 10) / 50, clipped.
    scaled = VolumeIntensity(percentiles=(10, 60))(ramp)
    assert (
        scaled[0, 0, 0, 35].item() == 0.5 and scaled[0, 0, 0, 5] == 0 and scaled[0, 0, 0, 90] == 1
    )


def test_the_value_range_is_the_window_or_the_scans_own_percentiles() -> None:
    ramp = torch.arange(101.0).reshape(1, 1, 101)
    assert VolumeIntensity(window=(-100, 300)).value_range(ramp) == (-100.0, 300.0)
    # The voxels that the scaling above sends to 0 and 1.
    assert VolumeIntensity(percentiles=(10, 60)).value_range(ramp) == (10.0, 60.0)
    assert VolumeIntensity().value_range(ramp * 2) == (1.0, 199.0)


def test_a_size_resamples_the_scaled_scan_trilinearly() -> None:
    voxels = torch.rand(6, 10, 8) * 100
    resized = VolumeIntensity(window=(0, 100), size=(3, 5, 4))(voxels)
    expected = F.interpolate(
        (voxels / 100)[None, None], size=(3, 5, 4), mode="trilinear", align_corners=False
    )[0]
    assert resized.shape == (1, 3, 5, 4)
    torch.testing.assert_close(resized, expected)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"window": (400, -1000)}, "window: LOW must be below HIGH; got LOW=400.0, HIGH=-1000.0"),
        ({"window": (0, math.inf)}, "window: LOW and HIGH must be finite"),
        ({"window": (0,)}, "window: must be two numbers, LOW and HIGH"),
        ({"window": (0, 1), "percentiles": (1, 99)}, "window: give a window or percentiles"),
        ({"percentiles": (50, 101)}, "percentiles: must satisfy 0 <= P_LOW < P_HIGH <= 100"),
        ({"size": (16, 16)}, "size: must be three positive integers, D H W"),
        ({"size": (16, 0, 16)}, "size: must be three positive integers"),
    ],
)
def test_a_wrong_intensity_is_a_one_line_error_naming_the_field(
    settings: dict, message: str
) -> None:
    with pytest.raises(EvaluationError, match=f"^{re.escape(message)}"):
        VolumeIntensity(**settings)


def test_a_folder_of_scans_gives_samples_named_by_file_with_digests(scans: Path) -> None:
    folder = VolumeFolder(scans, labels={"a.npy": 1, "c.nii": 2}, intensity=WINDOW)
    assert folder.names == ["a.npy", "b.nii.gz", "c.nii", TRUNCATED]
    assert folder.unlabelled == ["b.nii.gz", TRUNCATED]
    for index, name in enumerate(READABLE):
        sample = folder[index]
        assert sample.name == name and sample.error is None
        assert torch.equal(sample.inputs, _inputs(scans, (name,))[0])
        assert sample.digest == hashlib.sha256((scans / name).read_bytes()).hexdigest()
    assert [folder[i].label for i in range(4)] == [1, None, 2, None]
    broken = folder[3]
    assert broken.inputs is None and "not a readable NIfTI file" in broken.error
    assert broken.digest == hashlib.sha256((scans / TRUNCATED).read_bytes()).hexdigest()


def test_a_4d_series_is_a_sample_error_naming_the_axis(tmp_path: Path) -> None:
    np.save(tmp_path / "series.npy", np.zeros((4, 4, 4, 2), np.float32))
    sample = VolumeFolder(tmp_path)[0]
    assert sample.inputs is None and "is 4-D (4x4x4x2)" in sample.error
    assert "axis 3" in sample.error


def test_a_folder_is_of_photos_or_of_scans_never_both(scans: Path, tmp_path: Path) -> None:
    assert holds_scans(scans)
    assert holds_scans(scans, ["a.npy"])
    Image.new("RGB", (8, 8)).save(tmp_path / "photo.png")
    assert not holds_scans(tmp_path)
    np.save(tmp_path / "scan.npy", _scan(0))
    with pytest.raises(EvaluationError, match=r"mixes photos \('photo.png'\) and scans"):
        holds_scans(tmp_path)
    assert holds_scans(tmp_path, ["scan.npy"]) and not holds_scans(tmp_path, ["photo.png"])
    assert not holds_scans(tmp_path / "nowhere")  # the folder's dataset says it is none


def test_the_maps_are_keyed_by_file_name_and_equal_poly_cams_own(
    scans: Path, finished: Path
) -> None:
    record = json.loads((finished / "run.json").read_text())
    layers = record["configuration"]["layers"]
    assert layers == ["1", "3", "5"]  # discovered: the three resolutions of the 3D network
    saved = _maps(finished, "pcam+")
    assert list(saved) == list(READABLE)  # the unreadable scan has none
    model = tiny_volume_classifier()
    inputs = _inputs(scans)
    targets = model(inputs).argmax(dim=1)
    scores = read_csv(finished / "csv" / f"scores_{STEM}_pcam+.csv")
    assert [int(row["target"]) for row in scores] == targets.tolist()  # the top-1 classes
    polycam = PolyCam(model, layers, "plus")
    for index, name in enumerate(READABLE):
        assert saved[name].dtype == np.float32 and saved[name].shape == (SIDE, SIDE, SIDE)
        expected = polycam.attribute(inputs[index : index + 1], target=int(targets[index]))
        torch.testing.assert_close(torch.from_numpy(saved[name]), expected[0, 0])


def test_grad_cam_is_the_deepest_layers_weighted_activations_upsampled_trilinearly(
    scans: Path, finished: Path
) -> None:
    model = tiny_volume_classifier()
    inputs = _inputs(scans)
    captured = []
    model[5].register_forward_hook(lambda module, args, output: captured.append(output))
    logits = model(inputs)
    targets = logits.argmax(dim=1)
    (activations,) = captured
    (gradients,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), activations)
    # Grad-CAM: channel weights the mean gradient over the 4^3 positions, ReLU of the sum.
    weights = gradients.mean(dim=(2, 3, 4), keepdim=True)
    cams = torch.relu((weights * activations).sum(dim=1, keepdim=True)).detach()
    upsampled = F.interpolate(cams, size=(SIDE,) * 3, mode="trilinear", align_corners=False)
    expected = upsampled / upsampled.flatten(1).amax(dim=1).view(-1, 1, 1, 1, 1)
    saved = _maps(finished, "gradcam")
    for index, name in enumerate(READABLE):
        torch.testing.assert_close(torch.from_numpy(saved[name]), expected[index, 0])
    parameters = json.loads((finished / "run.json").read_text())["configuration"]
    assert parameters["method_parameters"]["gradcam"]["upsampling"] == "trilinear"


def test_the_metrics_are_finite_and_equal_the_metric_classes(scans: Path, finished: Path) -> None:
    model = tiny_volume_classifier()
    inputs = _inputs(scans)
    targets = model(inputs).argmax(dim=1)
    for method in ("pcam+", "gradcam"):
        saved = _maps(finished, method)
        maps = torch.stack([torch.from_numpy(saved[name]) for name in READABLE])[:, None]
        curves = InsertionDeletion(model, n_steps=8)(inputs, maps, targets)
        change = ConfidenceChange(model)(inputs, maps, targets)
        scores = read_csv(finished / "csv" / f"scores_{STEM}_{method}.csv")
        for key, expected in (
            ("insertion", curves.insertion.auc),
            ("deletion", curves.deletion.auc),
            *change.as_dict().items(),  # average drop and increase in confidence, in percent
        ):
            recorded = torch.tensor([float(row[key]) for row in scores])
            assert bool(recorded.isfinite().all())
            torch.testing.assert_close(recorded, expected.float(), atol=1e-6, rtol=1e-5)
        # Max-sensitivity on the first scan only: its 10 noisy copies explained in 3D.
        sensitivity = [row["sensitivity_max"] for row in scores]
        assert math.isfinite(float(sensitivity[0])) and sensitivity[1:] == ["", ""]


def test_an_unreadable_scan_goes_to_errors_csv_and_the_run_goes_on(finished: Path) -> None:
    (error,) = read_csv(finished / "errors.csv")
    assert error["image"] == TRUNCATED and "not a readable NIfTI file" in error["error"]
    assert [row["image"] for row in read_csv(finished / "csv" / f"ins_auc_{STEM}_pcam+.csv")] == (
        list(READABLE)
    )


def test_run_json_records_the_intensity_as_the_preprocessing(finished: Path) -> None:
    configuration = json.loads((finished / "run.json").read_text())["configuration"]
    assert configuration["preprocessing"] == {
        "window": [-2.0, 2.0],
        "percentiles": None,
        "size": None,
    }
    assert "window -2.0, 2.0" in (finished / "report.html").read_text()


def test_a_rerun_resumes_without_computing_and_another_window_is_refused(
    scans: Path, finished: Path
) -> None:
    shards = {p: p.stat().st_mtime_ns for p in (finished / "shards").rglob("*.npz")}
    model = tiny_volume_classifier()
    batches = []
    model.register_forward_hook(lambda module, args, output: batches.append(len(args[0])))
    evaluate(scans, finished, _config(model=MODEL), model=model, num_workers=0, show_progress=False)
    assert batches == [1, 1]  # checking the model and the layers on one scan; no batch
    assert {p: p.stat().st_mtime_ns for p in shards} == shards
    other = _config(preprocessing=VolumeIntensity(window=(-1.0, 2.0)))
    with pytest.raises(EvaluationError, match=r"differs in preprocessing\)"):
        evaluate(scans, finished, other, num_workers=0, show_progress=False)
    resampled = _config(preprocessing=VolumeIntensity(window=(-2.0, 2.0), size=(8, 8, 8)))
    with pytest.raises(EvaluationError, match=r"differs in preprocessing\)"):
        evaluate(scans, finished, resampled, num_workers=0, show_progress=False)


def test_the_page_shows_each_scans_three_planes_through_the_maps_maximum(
    scans: Path, finished: Path
) -> None:
    heat = _maps(finished, "gradcam")["a.npy"]
    path = finished / "overlays" / "gradcam" / "a.npy.png"
    assert 'src="overlays/gradcam/a.npy.png"' in (finished / "report.html").read_text()
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(np.float32) / 255
    # Three 16 x 16 planes, each 2 white columns apart.
    assert pixels.shape == (SIDE, 3 * SIDE + 4, 3)
    assert (pixels[:, SIDE : SIDE + 2] == 1).all()
    depth, row, column = np.unravel_index(int(np.argmax(heat)), heat.shape)
    grey = _inputs(scans, ("a.npy",))[0, 0]
    for start, plane, scan in (
        (0, heat[depth], grey[depth]),
        (SIDE + 2, heat[:, row], grey[:, row]),
        (2 * SIDE + 4, heat[:, :, column], grey[:, :, column]),
    ):
        expected = overlay(scan.expand(3, SIDE, SIDE), plane)[0]
        np.testing.assert_allclose(pixels[:, start : start + SIDE], expected, atol=0.5 / 255 + 1e-6)


def test_scans_of_another_size_are_errors_unless_resampled(tmp_path: Path) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    np.save(folder / "a.npy", _scan(0))
    np.save(folder / "b.npy", _scan(1, (12, SIDE, SIDE)))
    config = _config(methods=("random",), n_steps=4)
    evaluate(folder, tmp_path / "out", config, num_workers=0, show_progress=False)
    (error,) = read_csv(tmp_path / "out" / "errors.csv")
    assert error["image"] == "b.npy"
    assert "its input is 1 x 12 x 16 x 16, the first image's 1 x 16 x 16 x 16" in error["error"]
    resampled = _config(
        methods=("random",), n_steps=4, preprocessing=VolumeIntensity(size=(SIDE,) * 3)
    )
    evaluate(folder, tmp_path / "resampled", resampled, num_workers=0, show_progress=False)
    assert read_csv(tmp_path / "resampled" / "errors.csv") == []
    assert list(_maps(tmp_path / "resampled", "random")) == ["a.npy", "b.npy"]


def test_the_centre_prior_and_the_random_floor_are_volumes() -> None:
    prior = centre_prior(2, (3, 5, 7))
    assert prior.shape == (2, 1, 3, 5, 7)
    # One Gaussian term per axis: at voxel (0, 2, 3), only the depth is off centre, by 1.
    assert prior[0, 0, 1, 2, 3] == 1
    assert prior[0, 0, 0, 2, 3].item() == pytest.approx(
        math.exp(-((1 / (CENTRE_SIGMA * 3)) ** 2) / 2)
    )
    model = tiny_volume_classifier()
    inputs = torch.rand(2, 1, 6, 8, 10)
    runs = build_methods(["random", "centre"], model, ["1", "3", "5"], spatial_dims=3)
    for run in runs:
        (maps,) = run.explain(inputs, torch.tensor([0, 1])).maps.values()
        assert maps.shape == (2, 1, 6, 8, 10)
        assert maps.min() >= 0 and maps.max() <= 1


@pytest.mark.parametrize(
    "name", ["ig", "ixg", "saliency", "smoothgrad", "tests.evaluation.tiny_models:saliency"]
)
def test_the_gradient_baselines_and_a_custom_method_map_every_voxel(name: str) -> None:
    (run,) = build_methods([name], tiny_volume_classifier(), ["1", "3", "5"], spatial_dims=3)
    inputs = torch.rand(2, 1, 6, 8, 10)
    maps = run.explain(inputs, torch.tensor([0, 1])).maps[name]
    assert maps.shape == (2, 1, 6, 8, 10)
    # Each map scaled to [0, 1] over its own voxels: 1 at its maximum.
    assert maps.min() >= 0 and maps.flatten(1).amax(dim=1).tolist() == [1.0, 1.0]


def test_a_changed_scan_under_the_same_name_is_refused_on_resume(
    scans: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    for name in READABLE:
        (folder / name).write_bytes((scans / name).read_bytes())
    config = _config(methods=("random",), n_steps=4, sensitivity_images=0)
    evaluate(folder, tmp_path / "out", config, num_workers=0, show_progress=False)
    np.save(folder / "a.npy", _scan(9))
    with pytest.raises(EvaluationError, match=r"1 image\(s\) differ .*: a\.npy;"):
        evaluate(folder, tmp_path / "out", config, num_workers=0, show_progress=False)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"methods": ("pcam+", "occlusion")}, "methods: occlusion slides 3 x 16 x 16 windows"),
        ({"model": "efficientnet-lite0"}, "model: 'efficientnet-lite0' classifies photos"),
        ({"preprocessing": Preprocessing()}, "preprocessing: .* holds scans"),
        ({"boxes": "boxes.csv"}, "boxes: localisation is measured on photos"),
    ],
)
def test_what_scans_cannot_take_is_a_one_line_error(
    scans: Path, tmp_path: Path, changes: dict, message: str
) -> None:
    with pytest.raises(EvaluationError, match=message):
        evaluate(scans, tmp_path / "out", _config(**changes), num_workers=0)
    assert not (tmp_path / "out" / "run.json").exists()


def test_a_volume_intensity_for_a_folder_of_photos_is_refused(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "photo.png")
    with pytest.raises(EvaluationError, match=r"VolumeIntensity scales scans .* holds photos"):
        evaluate(tmp_path, tmp_path / "out", _config(), num_workers=0)
