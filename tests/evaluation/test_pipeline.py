"""The evaluation pipeline: artefacts, their agreement with the metric classes, resuming after
SIGKILL, torchrun sharding, unreadable images and configuration mismatches."""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from captum_polycam import ConfidenceChange, InsertionDeletion, PolyCam
from captum_polycam.attr import PolyCamMaps
from captum_polycam.evaluation import EvaluationConfig, Report, evaluate
from captum_polycam.evaluation.folder import FORMAT_VERSION, locked
from captum_polycam.evaluation.html import write_html_report
from captum_polycam.resources import EvaluationError, ImageFolder, Preprocessing
from captum_polycam.resources.models import model_digest
from tests.conftest import TinyCNN, random_photos, read_csv
from tests.evaluation.tiny_models import (
    channels_last_classifier,
    fixed_size_classifier,
    tiny_classifier,
    unseeded_classifier,
)

ROOT = Path(__file__).resolve().parents[2]
SMALL = Preprocessing(size=(32, 32))
METHODS = ("pcam+-", "pcam+:stage2", "gradcam", "random")
# What a run writes that must not depend on how it was run (run.json records times).
STABLE = ("npz", "csv", "errors.csv", "summary.csv", "summary.md", "curves.png")


def _name(index: int) -> str:
    # JPEG has no alpha channel: the RGBA ones (index % 3 == 2) are PNG.
    return f"photo{index}.{'jpg' if index % 2 and index % 3 != 2 else 'png'}"


def _photos(folder: Path, count: int = 7) -> Path:
    """Photos of several sizes and modes (RGB, grayscale, RGBA; PNG and JPEG)."""
    names = [_name(index) for index in range(count)]
    return random_photos(
        folder, names, width=40, first_height=24, growth=5, modes=("RGB", "L", "RGBA")
    )


def _config(**changes: object) -> EvaluationConfig:
    settings: dict[str, object] = {
        "model": "tiny",
        "methods": METHODS,
        "n_steps": 16,
        "batch_size": 3,
        "preprocessing": SMALL,
    }
    settings.update(changes)
    return EvaluationConfig(**settings)  # type: ignore[arg-type]


def _run(images: Path | Dataset, out: Path, **changes: object) -> Report:
    config = _config(**changes)
    return evaluate(images, out, config, model=tiny_classifier(), num_workers=0)


def _stable_files(out: Path) -> dict[str, bytes]:
    files = {}
    for name in STABLE:
        path = out / name
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            files[str(file.relative_to(out))] = file.read_bytes()
    return files


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def finished(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "out"
    _run(photos, out, sensitivity_images=2)
    return out


def test_maps_are_one_float32_array_per_image_keyed_by_file_name(
    photos: Path, finished: Path
) -> None:
    names = sorted(p.name for p in photos.iterdir())
    for method in ("pcam+-", "pcam+_stage2", "gradcam", "random"):
        with np.load(finished / "npz" / f"tiny_{method}.npz", allow_pickle=False) as maps:
            assert maps.files == names
            for name in names:
                assert maps[name].dtype == np.float32 and maps[name].shape == (32, 32)
                assert maps[name].min() >= 0 and maps[name].max() <= 1


def test_csv_files_have_one_row_per_image_in_the_paper_layout(finished: Path) -> None:
    for stem in ("tiny_pcam+-", "tiny_gradcam"):
        areas = read_csv(finished / "csv" / f"ins_auc_{stem}.csv")
        assert list(areas[0]) == ["image", "target", "auc"]
        assert [row["image"] for row in areas] == [_name(i) for i in range(7)]
        details = read_csv(finished / "csv" / f"del_details_{stem}.csv")
        assert list(details[0]) == ["image", "target", *(f"step_{k}" for k in range(1, 17))]
        # The area is the mean of the per-step scores (the paper's protocol).
        for kind in ("ins", "del"):
            areas = read_csv(finished / "csv" / f"{kind}_auc_{stem}.csv")
            details = read_csv(finished / "csv" / f"{kind}_details_{stem}.csv")
            for area, steps in zip(areas, details, strict=True):
                mean = np.mean([float(steps[f"step_{k}"]) for k in range(1, 17)])
                assert float(area["auc"]) == pytest.approx(mean, abs=1e-6)


def test_areas_and_confidences_equal_the_metric_classes_on_the_saved_maps(
    photos: Path, finished: Path
) -> None:
    folder = ImageFolder(photos, preprocessing=SMALL)
    inputs = torch.stack([sample.inputs for sample in folder])
    model = tiny_classifier()
    with np.load(finished / "npz" / "tiny_pcam+-.npz") as archive:
        maps = torch.stack([torch.from_numpy(archive[name]) for name in folder.names])[:, None]
    scores = read_csv(finished / "csv" / "scores_tiny_pcam+-.csv")
    targets = torch.tensor([int(row["target"]) for row in scores])
    assert torch.equal(targets, model(inputs).argmax(dim=1))  # top-1, as in the paper

    curves = InsertionDeletion(model, n_steps=16)(inputs, maps, targets)
    change = ConfidenceChange(model)(inputs, maps, targets)
    for key, expected in (
        ("insertion", curves.insertion.auc),
        ("deletion", curves.deletion.auc),
        ("average_drop", change.drop),
    ):
        saved = torch.tensor([float(row[key]) for row in scores])
        torch.testing.assert_close(saved, expected, atol=1e-5, rtol=1e-5)
    ins = torch.tensor(
        [float(row["auc"]) for row in read_csv(finished / "csv" / "ins_auc_tiny_pcam+-.csv")]
    )
    torch.testing.assert_close(ins, curves.insertion.auc, atol=1e-5, rtol=1e-5)


def test_summary_has_every_metric_with_its_direction_and_interval(finished: Path) -> None:
    report = Report.read(finished)
    assert list(report.statistics) == list(METHODS)
    pcam = report.statistics["pcam+-"]
    assert pcam["sensitivity_max"].count == 2  # only the first two images
    assert pcam["insertion"].count == 7
    ins = [float(r["auc"]) for r in read_csv(finished / "csv" / "ins_auc_tiny_pcam+-.csv")]
    assert pcam["insertion"].mean == pytest.approx(np.mean(ins), abs=1e-6)
    half = 1.959963984540054 * np.std(ins, ddof=1) / np.sqrt(7)
    assert pcam["insertion"].ci_high - pcam["insertion"].mean == pytest.approx(half, abs=1e-6)
    rows = read_csv(finished / "summary.csv")
    assert {(r["metric"], r["better"]) for r in rows} >= {
        ("insertion", "higher"),
        ("deletion", "lower"),
        ("average_drop", "lower"),
        ("insertion_minus_deletion", "higher"),
        ("sensitivity_max", "lower"),
    }
    assert "| pcam+- |" in report.markdown
    assert (finished / "curves.png").stat().st_size > 0


def test_run_json_records_the_configuration_versions_and_times(finished: Path) -> None:
    record = json.loads((finished / "run.json").read_text())
    configuration = record["configuration"]
    assert configuration["methods"] == list(METHODS)
    assert configuration["layers"] == ["block1", "block2", "block3"]
    assert configuration["n_steps"] == 16 and configuration["baseline"] == "blur"
    assert configuration["device"] == "cpu" and configuration["dtype"] == "float32"
    assert len(configuration["images"]["sha256"]) == 64
    assert configuration["method_parameters"]["pcam+:stage2"]["variant"] == "plus"
    assert {"torch", "captum", "captum_polycam"} <= set(record["versions"])
    assert record["started"] <= record["finished"]


def test_stage_layer_and_no_lnorm_methods_share_one_poly_cam_run(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = []
    decompose = PolyCam.decompose

    def counted(self: PolyCam, *args: object, **kwargs: object) -> PolyCamMaps:
        runs.append(self.variant)
        return decompose(self, *args, **kwargs)

    monkeypatch.setattr(PolyCam, "decompose", counted)
    methods = ("pcam+", "pcam+:stage1", "pcam+:layer2", "pcam+:no-lnorm", "pcam-")
    config = _config(methods=methods, batch_size=7)
    evaluate(photos, tmp_path / "out", config, model=tiny_classifier(), num_workers=0)
    assert runs == ["plus", "minus"]  # one batch, one run per variant

    inputs = torch.stack([sample.inputs for sample in ImageFolder(photos, preprocessing=SMALL)])
    expected = decompose(PolyCam(tiny_classifier(), ["block1", "block2", "block3"], "plus"), inputs)
    ablation = decompose(
        PolyCam(
            tiny_classifier(), ["block1", "block2", "block3"], "plus", local_normalisation=False
        ),
        inputs,
    )
    for method, maps in (
        ("pcam+", expected.maps),
        ("pcam+_stage1", expected.stages[0]),
        ("pcam+_layer2", expected.layer_maps[1]),
        ("pcam+_no-lnorm", ablation.maps),
    ):
        with np.load(tmp_path / "out" / "npz" / f"tiny_{method}.npz") as archive:
            saved = torch.stack([torch.from_numpy(archive[key]) for key in archive.files])
        torch.testing.assert_close(saved, maps[:, 0])


def test_each_poly_cam_outputs_sensitivity_explains_only_its_own_noisy_inputs(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[int] = []
    decompose = PolyCam.decompose

    def counted(self: PolyCam, inputs: torch.Tensor, *args: object, **kwargs: object):
        batches.append(len(inputs))
        return decompose(self, inputs, *args, **kwargs)

    monkeypatch.setattr(PolyCam, "decompose", counted)
    config = _config(methods=("pcam+", "pcam+:stage1"), batch_size=7, sensitivity_images=2)
    evaluate(photos, tmp_path / "out", config, model=tiny_classifier(), num_workers=0)
    # The clean batch once for both outputs; then, for each output, its 10 noisy copies of
    # the 2 images in one call, never the clean images again.
    assert batches == [7, 20, 20]


def test_the_report_reads_each_photo_by_its_place_in_any_order(
    photos: Path, finished: Path
) -> None:
    from captum_polycam.attr import describe_layers
    from captum_polycam.evaluation import build_methods
    from captum_polycam.evaluation._distributed import Ranks
    from captum_polycam.evaluation.pipeline import _Run

    config = _config(sensitivity_images=2)
    folder = ImageFolder(photos, preprocessing=SMALL)
    model = tiny_classifier()
    layers = describe_layers(model, folder[0].inputs[None], ["block1", "block2", "block3"])
    runs = build_methods(config.methods, model, [layer.name for layer in layers])
    run = _Run(finished, config, folder, model, runs, layers, torch.device("cpu"), Ranks())
    _, places = run.recorded_images()
    names = [sample.name for sample in folder]
    assert places == {name: index for index, name in enumerate(names)}
    photo = run.photos(places)
    in_order = [photo(name) for name in names]
    backwards = [photo(name) for name in reversed(names)]
    for image, again in zip(in_order, reversed(backwards), strict=True):
        assert image is not None and image.shape == (3, 32, 32) and torch.equal(image, again)
    assert photo("not-in-the-list.png") is None


def test_an_unreadable_image_goes_to_errors_csv_and_the_run_goes_on(
    photos: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in photos.iterdir():
        (folder / photo.name).write_bytes(photo.read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    (folder / "photo3.jpg").write_bytes((folder / "photo3.jpg").read_bytes()[:100])  # cut
    _run(folder, tmp_path / "out", methods=("gradcam",))
    errors = read_csv(tmp_path / "out" / "errors.csv")
    assert [row["image"] for row in errors] == ["broken.jpg", "photo3.jpg"]
    assert all(row["error"] for row in errors)
    with np.load(tmp_path / "out" / "npz" / "tiny_gradcam.npz") as maps:
        assert len(maps.files) == 6 and "broken.jpg" not in maps.files


def test_an_image_list_and_labels_choose_the_images_and_classes(
    photos: Path, tmp_path: Path
) -> None:
    (tmp_path / "images.txt").write_text("photo4.png\n\n# a comment\nphoto1.jpg\n")
    (tmp_path / "labels.txt").write_text("photo1.jpg 3 n01\nphoto4.png 0 n02\n")
    config = _config(methods=("random",), target="label")
    evaluate(
        photos,
        tmp_path / "out",
        config,
        model=tiny_classifier(),
        num_workers=0,
        image_list=tmp_path / "images.txt",
        labels=tmp_path / "labels.txt",
    )
    rows = read_csv(tmp_path / "out" / "csv" / "ins_auc_tiny_random.csv")
    assert [(row["image"], row["target"]) for row in rows] == [
        ("photo4.png", "0"),
        ("photo1.jpg", "3"),
    ]


class _Pairs(Dataset):
    """A user's dataset: ``(image, name)`` or ``(image, label, name)`` items."""

    def __init__(self, folder: Path, labelled: bool) -> None:
        self.paths = sorted(folder.iterdir())
        self.labelled = labelled

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple:
        image = Image.open(self.paths[index])
        name = self.paths[index].name
        return (image, index % 5, name) if self.labelled else (image, name)


def test_a_dataset_of_pil_images_gives_the_same_artefacts_as_the_folder(
    photos: Path, finished: Path, tmp_path: Path
) -> None:
    _run(_Pairs(photos, labelled=False), tmp_path / "out", sensitivity_images=2)
    assert _stable_files(tmp_path / "out") == _stable_files(finished)
    _run(_Pairs(photos, labelled=True), tmp_path / "labels", methods=("random",), target="label")
    rows = read_csv(tmp_path / "labels" / "csv" / "del_auc_tiny_random.csv")
    assert [int(row["target"]) for row in rows] == [i % 5 for i in range(7)]


def test_another_configuration_in_the_same_folder_is_refused(
    photos: Path, finished: Path, tmp_path: Path
) -> None:
    with pytest.raises(EvaluationError, match="differs in n_steps"):
        _run(photos, finished, sensitivity_images=2, n_steps=8)
    with pytest.raises(EvaluationError, match="differs in method_parameters, methods"):
        _run(photos, finished, sensitivity_images=2, methods=("gradcam",))
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(EvaluationError, match="not empty"):
        _run(photos, tmp_path)


def test_a_finished_run_reruns_without_recomputing(photos: Path, finished: Path) -> None:
    before = _stable_files(finished)
    shards = {p: p.stat().st_mtime_ns for p in (finished / "shards").rglob("*.npz")}
    # Nothing computed, nothing rewritten: the record keeps its end time, the page its rows.
    kept = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in _record_and_page(finished)}
    model = tiny_classifier()
    batches = []
    model.register_forward_hook(lambda module, args, output: batches.append(len(args[0])))
    evaluate(photos, finished, _config(sensitivity_images=2), model=model, num_workers=0)
    assert batches == [1, 1]  # checking the model and the layers on one image; no batch
    assert {p: p.stat().st_mtime_ns for p in shards} == shards
    assert _stable_files(finished) == before
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in _record_and_page(finished)} == kept


def _record_and_page(out: Path) -> list[Path]:
    return [out / "run.json", out / "report.html", *sorted((out / "overlays").rglob("*.png"))]


def test_the_runs_page_shows_its_final_record_as_a_rebuild_does(
    finished: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "out"
    shutil.copytree(finished, copy)
    written = (copy / "report.html").read_text()
    assert write_html_report(copy).read_text() == written  # rebuilt from run.json
    record = json.loads((copy / "run.json").read_text())
    for row, value in (
        ("device", f"cpu {record['device_name']}"),
        ("processes", "1"),
        ("finished", record["finished"]),
    ):
        assert f'<tr><th scope="row">{row}</th><td>{value}</td></tr>' in written
    assert f"torch {torch.__version__}" in written  # the versions row


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n_steps": 0}, "n_steps must be a positive int"),
        ({"batch_size": 2.5}, "batch_size must be a positive int"),
        ({"target": "top5"}, "target must be 'top1' or 'label'"),
        ({"baseline": "noise"}, "baseline must be"),
        ({"sensitivity_images": -1}, "sensitivity_images must be a non-negative int"),
        ({"sensitivity_images": "3"}, "sensitivity_images must be a non-negative int; got '3'"),
        ({"seed": 1.5}, "seed must be an int; got 1.5"),
        ({"methods": "random"}, "methods must be a list of names.*got 'random'"),
        ({"layers": "layer1"}, "layers must be a list of names.*got 'layer1'"),
        ({"reshape": "nchw"}, "reshape must be None, 'nhwc', 'tokens', 'package.module"),
        ({"reshape": "tests.nowhere:f"}, r"reshape: 'tests\.nowhere:f': cannot import it"),
        ({"reshape": torch.flatten}, "reshape must be .* a name a run can record; got <"),
    ],
)
def test_invalid_configurations_name_the_argument(changes: dict, message: str) -> None:
    with pytest.raises(EvaluationError, match=message):
        _config(**changes)


def test_label_targets_need_labels(photos: Path, tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="target 'label' needs labels"):
        _run(photos, tmp_path / "out", target="label")


def test_labels_that_leave_images_out_serve_top1_and_say_how_many(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "labels.txt").write_text("photo1.jpg 3\nphoto4.png 0\n")
    config = _config(methods=("random",))
    labelled = {"model": tiny_classifier(), "labels": tmp_path / "labels.txt", "num_workers": 0}
    report = evaluate(photos, tmp_path / "out", config, **labelled)  # type: ignore[arg-type]
    assert report.statistics["random"]["insertion"].count == 7  # every image, labelled or not
    assert (
        "evaluate: labels: 5 of 7 image(s) have no class, such as 'photo0.png'; target 'top1' "
        "needs none"
    ) in capsys.readouterr().err
    # Explaining the labels needs every one: refused before the folder is claimed.
    with pytest.raises(
        EvaluationError, match=re.escape("labels: no class for 5 image(s), such as 'photo0.png'")
    ):
        evaluate(photos, tmp_path / "label", _config(target="label"), **labelled)  # type: ignore[arg-type]
    assert not (tmp_path / "label").exists()


# --- whole runs in other processes: SIGKILL and torchrun -----------------------------------

_COMMAND = [
    "evaluate",
    "--model",
    "tests.evaluation.tiny_models:tiny_classifier",
    "--methods",
    "pcam+-,gradcam,smoothgrad,random",
    "--steps",
    "32",
    "--size",
    "48",
    "48",
    "--batch-size",
    "2",
    "--sensitivity-images",
    "1",
    "--workers",
    "1",
]


def _environment(threads: int = 1) -> dict[str, str]:
    # The same threads per process as torchrun's workers: float sums then add up the same.
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}


def _command(images: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "captum_polycam",
        *_COMMAND,
        "--images",
        str(images),
        "--out",
        str(out),
    ]


def _assert_nothing_half_written(out: Path) -> None:
    """Every file that is not a temporary one reads back whole."""
    for path in out.rglob("*"):
        if path.is_dir() or path.name.endswith(".tmp"):
            continue
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                [archive[key] for key in archive.files]
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix in (".csv", ".md"):
            assert path.read_text().endswith("\n"), path
        elif path.suffix == ".png":
            with Image.open(path) as image:
                image.load()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("uninterrupted")
    images = _photos(root / "photos", count=9)
    out = root / "out"
    subprocess.run(_command(images, out), env=_environment(), check=True, capture_output=True)
    return images, out


@pytest.mark.slow  # whole runs in other processes
def test_a_run_killed_at_random_moments_resumes_to_identical_artefacts(
    uninterrupted: tuple[Path, Path], tmp_path: Path
) -> None:
    images, reference = uninterrupted
    out = tmp_path / "out"
    shards_in_all = 5 * 4  # batches x methods
    chance = random.Random(7)
    kills = 0
    # Kill when a random number of shards exist (plus a random delay, to land inside a batch
    # or a write), and once while the final artefacts are being merged.
    for moment in [*sorted(chance.sample(range(1, shards_in_all), 4)), "merge"]:
        before = {p: p.stat().st_mtime_ns for p in out.rglob("shards/*/*.npz")}
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        process = subprocess.Popen(_command(images, out), env=_environment(), **quiet)
        while process.poll() is None:
            done = len(list(out.rglob("shards/*/*.npz")))
            if (done >= moment) if moment != "merge" else (out / "npz").exists():
                time.sleep(chance.uniform(0, 0.05))
                process.kill()
                break
            time.sleep(0.002)
        if process.wait() == -9:
            kills += 1
        _assert_nothing_half_written(out)
        # What was finished before this attempt was kept, not computed again.
        assert {p: p.stat().st_mtime_ns for p in before} == before
    assert kills >= 3, f"only {kills} of the 5 attempts were killed before they finished"
    print(f"{kills} of 5 attempts killed before they finished")  # shown with pytest -s
    subprocess.run(_command(images, out), env=_environment(), check=True, capture_output=True)
    assert not list(out.rglob("*.tmp"))
    assert _stable_files(out) == _stable_files(reference)


@pytest.mark.slow  # whole runs in other processes
def test_two_torchrun_processes_write_the_single_process_artefacts(
    uninterrupted: tuple[Path, Path], tmp_path: Path
) -> None:
    images, reference = uninterrupted
    out = tmp_path / "out"
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "captum_polycam",
    ]
    result = subprocess.run(
        [*torchrun, *_command(images, out)[3:]],
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Each process computed its own batches: rank r took batches r, r + 2, ...
    assert json.loads((out / "run.json").read_text())["processes"] == 2
    assert _stable_files(out) == _stable_files(reference)
    assert result.stdout.count("| pcam+- |") == 1  # one process prints the summary


def test_precision_is_recorded_and_part_of_the_configuration(photos: Path, tmp_path: Path) -> None:
    _run(photos, tmp_path / "out", methods=("pcam+",), precision="bf16")
    record = json.loads((tmp_path / "out" / "run.json").read_text())["configuration"]
    assert record["precision"] == "bf16"
    assert record["method_parameters"]["pcam+"]["precision"] == "bf16"
    assert "bf16 autocast" in record["dtype"]
    with pytest.raises(EvaluationError, match=r"differs in .*precision"):
        _run(photos, tmp_path / "out", methods=("pcam+",))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_run_gives_the_cpu_run_maps(photos: Path, finished: Path, tmp_path: Path) -> None:
    config = _config(sensitivity_images=2)
    evaluate(
        photos, tmp_path / "cuda", config, model=tiny_classifier(), device="cuda", num_workers=0
    )
    for method in ("pcam+-", "gradcam"):
        with (
            np.load(finished / "npz" / f"tiny_{method}.npz") as cpu,
            np.load(tmp_path / "cuda" / "npz" / f"tiny_{method}.npz") as cuda,
        ):
            for name in cpu.files:
                np.testing.assert_allclose(cuda[name], cpu[name], atol=1e-4)


# --- what a run must never do silently --------------------------------------------------------


def _copy(photos: Path, folder: Path) -> Path:
    folder.mkdir()
    for photo in photos.iterdir():
        (folder / photo.name).write_bytes(photo.read_bytes())
    return folder


def test_other_pixels_under_the_same_names_are_refused_with_their_names(
    photos: Path, tmp_path: Path
) -> None:
    images = _copy(photos, tmp_path / "images")
    out = tmp_path / "out"
    _run(images, out, methods=("random",))
    record = json.loads((out / "run.json").read_text())
    assert len(record["images_content_sha256"]) == 64
    # Another photo under one of the same names, as a second data set with the same list.
    (images / "photo5.png").write_bytes((images / "photo2.png").read_bytes())
    with pytest.raises(EvaluationError, match=r"1 image\(s\) differ .*: photo5\.png; use a new"):
        _run(images, out, methods=("random",))
    # A dataset's items are checked by their pixels.
    dataset_out = tmp_path / "dataset"
    _run(_Pairs(photos, labelled=False), dataset_out, methods=("random",))
    with pytest.raises(EvaluationError, match=r"differ .*: photo5\.png"):
        _run(_Pairs(images, labelled=False), dataset_out, methods=("random",))


def test_a_resume_with_other_weights_is_refused_naming_the_model_and_both_digests(
    photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    _run(photos, out, methods=("random",))
    before = model_digest(tiny_classifier())
    assert json.loads((out / "run.json").read_text())["configuration"]["model_sha256"] == before
    torch.manual_seed(1)
    other = TinyCNN().eval()  # the same code, other weights: as an unseeded factory's rerun
    message = (
        f"differs in model_sha256; model 'tiny' has other weights: SHA-256 "
        f"{model_digest(other)[:12]} now, {before[:12]} in the run); use a new folder"
    )
    with pytest.raises(EvaluationError, match=re.escape(message)):
        evaluate(photos, out, _config(methods=("random",)), model=other, num_workers=0)


def test_a_run_of_another_format_version_is_refused_naming_the_folder_and_both(
    photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    _run(photos, out, methods=("random",))
    record = json.loads((out / "run.json").read_text())
    assert record["format_version"] == FORMAT_VERSION == 1
    # A run of an earlier version, which did not record the weights' digest, say.
    del record["configuration"]["model_sha256"]
    for version, found in ((None, "no format_version"), (0, "format_version 0")):
        record.pop("format_version", None)
        if version is not None:
            record["format_version"] = version
        (out / "run.json").write_text(json.dumps(record))
        message = (
            f"out: {str(out)!r} holds a run of {found}, and this version of captum-polycam "
            "resumes only runs of format_version 1; use a new folder"
        )
        with pytest.raises(EvaluationError, match=re.escape(message)):
            _run(photos, out, methods=("random",))


def test_a_factory_is_built_under_the_seed_so_its_random_weights_resume(
    photos: Path, tmp_path: Path
) -> None:
    factory = "tests.evaluation.tiny_models:unseeded_classifier"

    def weights(out: Path, seed: int) -> str:
        config = _config(model=factory, methods=("random",), seed=seed)
        evaluate(photos, out, config, num_workers=0)
        return json.loads((out / "run.json").read_text())["configuration"]["model_sha256"]

    torch.manual_seed(3)
    expected = model_digest(unseeded_classifier())
    torch.manual_seed(1234)  # whatever the caller's generator: the seed decides
    assert weights(tmp_path / "a", seed=3) == expected
    assert weights(tmp_path / "a", seed=3) == expected  # the same command resumes
    assert weights(tmp_path / "b", seed=3) == expected
    assert weights(tmp_path / "c", seed=4) != expected


def test_a_run_in_a_folder_in_use_is_refused_naming_the_process_holding_it(
    photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    refused = re.escape(
        f"out: '{out}' is in use by another evaluation (process {os.getpid()} on "
        f"{socket.gethostname()}, since "
    )
    # The lock held here, as by a run going on in another process.
    with locked(out), pytest.raises(EvaluationError, match=refused + r".*\); wait for it to end"):
        _run(photos, out, methods=("random",))
    assert not (out / "run.json").exists()
    # A holder killed with SIGKILL leaves its file, and the system releases its lock.
    holder = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from captum_polycam.evaluation.folder import locked\n"
        "with locked(Path(sys.argv[1])):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = subprocess.run([sys.executable, "-c", holder, str(out)], env=_environment())
    assert killed.returncode == -9 and "process" in (out / "run.lock").read_text()
    _run(photos, out, methods=("random",))
    assert json.loads((out / "run.json").read_text())["finished"]


def test_a_folder_of_only_unreadable_images_lists_them_in_errors_csv_and_the_message(
    photos: Path, tmp_path: Path
) -> None:
    images, out = tmp_path / "images", tmp_path / "out"
    images.mkdir()
    for name in ("a.jpg", "b.png", "c.png", "d.png"):
        (images / name).write_bytes(b"not an image")
    message = (
        f"images: none of the 4 image(s) can be read: a.jpg: cannot decode image "
        f"'{images / 'a.jpg'}': not a supported image file; b.png: cannot decode image "
        f"'{images / 'b.png'}': not a supported image file; c.png: cannot decode image "
        f"'{images / 'c.png'}': not a supported image file; and 1 more (all of them in "
        f"'{out / 'errors.csv'}')"
    )
    with pytest.raises(EvaluationError, match=re.escape(message)):
        _run(images, out, methods=("random",))
    assert [row["image"] for row in read_csv(out / "errors.csv")] == [
        "a.jpg",
        "b.png",
        "c.png",
        "d.png",
    ]
    assert not (out / "run.json").exists()
    # The folder stays free for the corrected command, whose errors.csv is its own.
    shutil.rmtree(images)
    _copy(photos, images)
    _run(images, out, methods=("random",))
    assert read_csv(out / "errors.csv") == []


def test_entries_with_an_image_name_that_cannot_be_read_go_to_errors_csv(
    photos: Path, tmp_path: Path
) -> None:
    images = _copy(photos, tmp_path / "images")
    (images / "gone.png").symlink_to("nowhere.png")
    (images / "folder.jpg").mkdir()
    _run(images, tmp_path / "out", methods=("random",))
    errors = {row["image"]: row["error"] for row in read_csv(tmp_path / "out" / "errors.csv")}
    assert errors == {
        "folder.jpg": f"cannot read image '{images / 'folder.jpg'}': Is a directory",
        "gone.png": f"cannot read image '{images / 'gone.png'}': a symbolic link to "
        "'nowhere.png', which does not exist",
    }


def test_a_run_with_a_custom_method_resumes(photos: Path, tmp_path: Path) -> None:
    methods = ("tests.evaluation.tiny_models:saliency",)
    _run(photos, tmp_path / "out", methods=methods)
    before = _stable_files(tmp_path / "out")
    _run(photos, tmp_path / "out", methods=methods)  # refused before: a new address each time
    assert _stable_files(tmp_path / "out") == before


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"n_steps": 2000},
            "n_steps: 2000 insertion and deletion steps need as many pixels; "
            "the inputs have 32 x 32 = 1024",
        ),
        ({"layers": ("nope",)}, "layers: the model has no module named 'nope'"),
        ({"layers": ("block3", "block1")}, "layers: must go shallow to deep"),
        ({"layers": ("block1", "block3"), "methods": ("gradcam",)}, None),
        (
            {
                "preprocessing": Preprocessing(size=(16, 16)),
                "model": "fixed",
                "layers": ("1",),
                "methods": ("random",),
            },
            None,
        ),
    ],
)
def test_usage_errors_are_found_before_the_folder_is_claimed(
    photos: Path, tmp_path: Path, changes: dict, message: str | None
) -> None:
    out = tmp_path / "out"
    if message is None:  # valid: the run goes through
        model = fixed_size_classifier() if changes.pop("model", None) else tiny_classifier()
        evaluate(photos, out, _config(**changes), model=model, num_workers=0)
        assert (out / "run.json").exists()
        return
    with pytest.raises(EvaluationError, match=re.escape(message)):
        _run(photos, out, **changes)
    assert not out.exists()  # the corrected command can use the same folder


def test_a_model_that_fails_on_the_input_size_is_named(photos: Path, tmp_path: Path) -> None:
    with pytest.raises(
        EvaluationError,
        match=r"model 'tiny' fails on an input of 32 x 32 pixels "
        r"\(the preprocessing's size\): RuntimeError",
    ):
        evaluate(photos, tmp_path / "out", _config(), model=fixed_size_classifier(), num_workers=0)
    assert not (tmp_path / "out").exists()


def test_labels_outside_the_model_classes_are_refused_first(photos: Path, tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text(
        "".join(f"{name} {99 if name == 'photo3.jpg' else 1}\n" for name in os.listdir(photos))
    )
    with pytest.raises(
        EvaluationError,
        match=r"labels: the model has 5 classes \(0 to 4\); 1 "
        r"image\(s\) have another, such as 'photo3.jpg' \(99\)",
    ):
        evaluate(
            photos,
            tmp_path / "out",
            _config(target="label"),
            model=tiny_classifier(),
            labels=tmp_path / "labels.txt",
            num_workers=0,
        )
    assert not (tmp_path / "out").exists()


def test_an_out_that_is_a_file_or_cannot_be_written_is_named(photos: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("mine")
    with pytest.raises(EvaluationError, match=r"out: '.*file' is a file; give a folder"):
        _run(photos, tmp_path / "file")
    with pytest.raises(EvaluationError, match=r"out: cannot write in '.*file/out'"):
        _run(photos, tmp_path / "file" / "out")


def test_a_lent_model_gets_its_training_flags_back(photos: Path, tmp_path: Path) -> None:
    model = tiny_classifier().train()
    model.block2.eval()
    evaluate(photos, tmp_path / "out", _config(methods=("random",)), model=model, num_workers=0)
    assert model.training and model.block1.training and not model.block2.training


def test_artefacts_get_the_mode_of_any_new_file(photos: Path, tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        _run(photos, tmp_path / "out", methods=("random",))
    finally:
        os.umask(previous)
    modes = {
        path.stat().st_mode & 0o777 for path in (tmp_path / "out").rglob("*") if path.is_file()
    }
    assert modes == {0o644}


def test_a_datasets_16_bit_pil_images_are_read_in_their_range() -> None:
    from captum_polycam.evaluation.datasets import _NamedDataset

    grey = Image.fromarray(np.full((8, 8), 30000, dtype=np.uint16))  # Pillow's "I;16"
    sample = _NamedDataset([(grey, "grey.png")], preprocessing=None)[0]  # type: ignore[arg-type]
    torch.testing.assert_close(sample.inputs, torch.full((3, 8, 8), 30000 / 65535))


def test_each_batch_has_one_clean_pass_for_its_targets_and_metrics(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from captum_polycam.perturbation.scoring import PerturbationScorer

    prepared = []
    prepare = PerturbationScorer.prepare

    def counted(self: PerturbationScorer, inputs: torch.Tensor, *args: object) -> object:
        prepared.append(len(inputs))
        return prepare(self, inputs, *args)

    monkeypatch.setattr(PerturbationScorer, "prepare", counted)
    config = _config(methods=("random",), batch_size=4, sensitivity_images=0)
    evaluate(photos, tmp_path / "out", config, model=tiny_classifier(), num_workers=0)
    assert prepared == [4, 3]  # one per batch, shared by the top-1, insertion-deletion, confidence


def test_a_channels_last_model_read_through_its_reshape_gives_the_cnns_artefacts(
    photos: Path, tmp_path: Path
) -> None:
    methods = ("pcam+", "gradcam")
    cnn, restaged = tmp_path / "cnn", tmp_path / "restaged"
    evaluate(photos, cnn, _config(methods=methods), model=tiny_classifier(), num_workers=0)
    config = _config(methods=methods, reshape="nhwc")
    evaluate(photos, restaged, config, model=channels_last_classifier(), num_workers=0)
    for method in methods:
        with (
            np.load(cnn / "npz" / f"tiny_{method}.npz") as expected,
            np.load(restaged / "npz" / f"tiny_{method}.npz") as maps,
        ):
            for name in expected.files:
                np.testing.assert_allclose(maps[name], expected[name], atol=1e-5)
    record = json.loads((restaged / "run.json").read_text())["configuration"]
    assert record["reshape"] == "nhwc"
    assert record["layers"] == ["stage1", "stage2", "stage3"]  # discovered through the reshape
    assert record["method_parameters"]["gradcam"]["reshape"] == "nhwc"
    # Without a reshape, none is recorded.
    configuration = json.loads((cnn / "run.json").read_text())["configuration"]
    assert configuration["reshape"] is None
    assert configuration["method_parameters"]["gradcam"]["reshape"] is None
    other = _config(methods=methods, reshape="tests.attr.test_reshape:from_channels_last")
    with pytest.raises(EvaluationError, match=r"differs in .*reshape"):
        evaluate(photos, restaged, other, model=channels_last_classifier(), num_workers=0)


def test_a_budgeted_run_records_each_maps_estimated_fidelity(photos: Path, tmp_path: Path) -> None:
    config = _config(methods=("pcam+", "pcam+:auto", "pcam+-:budget0.5"), batch_size=7)
    evaluate(photos, tmp_path / "out", config, model=tiny_classifier(), num_workers=0)
    csv = tmp_path / "out" / "csv"
    assert "fidelity" not in read_csv(csv / "scores_tiny_pcam+.csv")[0]  # the exact method
    inputs = torch.stack([sample.inputs for sample in ImageFolder(photos, preprocessing=SMALL)])
    layers = ["block1", "block2", "block3"]
    for name, variant, budget in (
        ("pcam+_auto", "plus", "auto"),
        ("pcam+-_budget0.5", "plusminus", 0.5),
    ):
        rows = read_csv(csv / f"scores_tiny_{name}.csv")
        expected = PolyCam(tiny_classifier(), layers, variant, pass_budget=budget).decompose(inputs)
        recorded = [float(row["fidelity"]) if row["fidelity"] else math.nan for row in rows]
        torch.testing.assert_close(
            torch.tensor(recorded), expected.fidelity, equal_nan=True, atol=1e-6, rtol=0
        )
