"""The ``captum-polycam evaluate`` command: a thin layer over the evaluation API."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import nibabel
import numpy as np
import pytest
from PIL import Image

from captum_polycam.cli.main import main
from tests.conftest import error_line

TINY = "tests.evaluation.tiny_models:tiny_classifier"


def _images(folder: Path) -> Path:
    folder.mkdir()
    for index, colour in enumerate([(200, 10, 10), (10, 200, 10), (10, 10, 200)]):
        Image.new("RGB", (20 + index, 30), colour).save(folder / f"image{index}.png")
    return folder


def _small(images: Path, out: Path, *extra: str) -> list[str]:
    return [
        "evaluate",
        "--images",
        str(images),
        "--model",
        TINY,
        "--size",
        "32",
        "32",
        "--steps",
        "8",
        "--workers",
        "0",
        "--out",
        str(out),
        *extra,
    ]


def test_evaluate_writes_the_artefacts_and_prints_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, out = _images(tmp_path / "images"), tmp_path / "out"
    assert main(_small(images, out, "--methods", "pcam+,gradcam", "--sensitivity-images", "1")) == 0
    printed = capsys.readouterr().out
    assert "| pcam+ |" in printed and "| gradcam |" in printed and "max-sensitivity" in printed
    assert (out / "npz" / "tiny_classifier_pcam+.npz").exists()
    assert (out / "csv" / "ins_auc_tiny_classifier_gradcam.csv").exists()
    assert (out / "summary.md").read_text() in printed


def test_the_same_command_again_resumes_and_another_one_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, out = _images(tmp_path / "images"), tmp_path / "out"
    command = _small(images, out, "--methods", "random")
    assert main(command) == 0
    assert main(command) == 0
    assert main([*command, "--steps", "4"]) == 2
    assert "differs in n_steps" in error_line(capsys)


def test_a_folder_of_another_format_version_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, out = _images(tmp_path / "images"), tmp_path / "out"
    command = _small(images, out, "--methods", "random")
    assert main(command) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["format_version"] == 1
    record["format_version"] = 2
    (out / "run.json").write_text(json.dumps(record))
    assert main(command) == 2
    line = error_line(capsys)
    assert str(out) in line and "format_version 2" in line and "format_version 1" in line
    assert line.endswith("use a new folder\n")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--methods", "gradcm"], "unknown method 'gradcm'"),
        (["--images", "nowhere"], "images: 'nowhere' is not a folder"),
        (["--target", "label"], "target 'label' needs labels"),
        (["--model", "resnet-9000"], "unknown model 'resnet-9000'"),
        (["--image-list", "missing.txt"], "image_list: cannot read 'missing.txt'"),
    ],
)
def test_mistakes_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    images = _images(tmp_path / "images")
    assert main([*_small(images, tmp_path / "out"), *extra]) == 2
    assert message in error_line(capsys)


def test_usage_errors_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--steps", "0"]) == 2
    assert "--steps: must be at least 1" in capsys.readouterr().err
    assert main(["evaluate", "--help"]) == 0
    help_text = capsys.readouterr().out
    for flag in (
        "--images",
        "--image-list",
        "--labels",
        "--model",
        "--methods",
        "--out",
        "--steps",
        "--batch-size",
        "--device",
        "--sensitivity-images",
        "--target",
        "--reshape",
    ):
        assert flag in help_text
    assert main(["evaluate", "--reshape", "nchw"]) == 2
    assert "--reshape: reshape must be None, 'nhwc', 'tokens'" in capsys.readouterr().err


@pytest.mark.slow
def test_python_dash_m_runs_the_same_command_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "captum_polycam", "evaluate", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and "--sensitivity-images" in result.stdout


@pytest.mark.slow
def test_the_embedded_default_evaluates_the_bundled_photos_with_lite0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("efficientnet_lite_pytorch")
    # The defaults but for the cheap methods and fewer steps, to keep the test short.
    out = tmp_path / "out"
    assert main(["evaluate", "--methods", "gradcam,random", "--steps", "8", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "four bundled photographs" in printed
    rows = (out / "csv" / "ins_auc_efficientnet-lite0_gradcam.csv").read_text().splitlines()
    assert [row.split(",")[:2] for row in rows[1:]] == [
        ["astronaut.jpg", rows[1].split(",")[1]],
        ["chelsea.png", "285"],
        ["coffee.jpg", "967"],
        ["rocket.jpg", rows[4].split(",")[1]],
    ]
    summary = {
        line.split("|")[1].strip(): line for line in printed.splitlines() if line.startswith("| ")
    }
    assert set(summary) >= {"gradcam", "random", "centre (prior)"}
    # The bundled boxes: every photo is measured, none left out.
    localisation = [line for line in printed.splitlines() if line.startswith("| gradcam |")]
    assert len(localisation) == 2 and localisation[1].endswith("| 4 |")
    truth = (out / "csv" / "ground_truth_efficientnet-lite0.csv").read_text()
    assert truth.count(",,") == 0 and "no box" not in truth


def test_an_empty_method_list_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = _images(tmp_path / "images")
    assert main([*_small(images, tmp_path / "out"), "--methods", " , "]) == 2
    assert "--methods: give a comma-separated list" in error_line(capsys)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--steps", "100000"], "n_steps: 100000 insertion and deletion steps need as many"),
        (["--layers", "nope"], "layers: the model has no module named 'nope'"),
        (["--methods", "gradcam", "--layers", "nope"], "no module named 'nope'"),
        (["--layers", "block3,block1"], "layers: must go shallow to deep"),
        (["--layers", "block1:99"], "call 99"),
        (["--size", "1", "1"], "n_steps: 8 insertion and deletion steps need as many pixels"),
        (
            ["--model", "tests.evaluation.tiny_models:fixed_size_classifier"],
            "fails on an input of 32 x 32 pixels",
        ),
        (["--methods", "tests.evaluation.tiny_models:failing_method"], "failed to build"),
        (["--methods", "mth_a:b,mth:a_b"], "would share the artefact files"),
    ],
)
def test_usage_errors_come_before_the_run_and_leave_the_folder_free(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    images, out = _images(tmp_path / "images"), tmp_path / "out"
    assert main([*_small(images, out, "--methods", "random"), *extra]) == 2
    assert message in error_line(capsys)
    assert not out.exists()


def test_labels_outside_the_classes_then_the_corrected_command_in_the_same_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, out = _images(tmp_path / "images"), tmp_path / "out"
    labels = tmp_path / "labels.txt"
    for wrong in ("99", "-1"):
        labels.write_text(f"image0.png 1\nimage1.png {wrong}\nimage2.png 2\n")
        command = _small(
            images, out, "--methods", "random", "--target", "label", "--labels", str(labels)
        )
        assert main(command) == 2
        assert f"such as 'image1.png' ({wrong})" in error_line(capsys)
    labels.write_text("image0.png 1\nimage1.png 4\nimage2.png 2\n")
    assert main(command) == 0


def test_an_out_that_is_a_file_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = _images(tmp_path / "images")
    (tmp_path / "taken").write_text("mine")
    assert main(_small(images, tmp_path / "taken", "--methods", "random")) == 2
    assert "is a file; give a folder" in error_line(capsys)
    assert main(_small(images, tmp_path / "taken" / "out", "--methods", "random")) == 2
    assert "cannot write in" in error_line(capsys)


def test_an_out_that_is_an_input_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = _images(tmp_path / "images")
    before = sorted(path.name for path in images.iterdir())
    assert main(_small(images, images / ".." / "images", "--methods", "random")) == 2
    assert error_line(capsys) == (
        f"captum-polycam: error: --out: '{images / '..' / 'images'}' is the --images folder "
        f"'{images}'; the command never writes over its inputs: give another --out\n"
    )
    (tmp_path / "labels.txt").write_text("image0.png 1\n")
    assert (
        main(_small(images, tmp_path / "labels.txt", "--labels", str(tmp_path / "labels.txt"))) == 2
    )
    assert "is the --labels file" in error_line(capsys)
    assert sorted(path.name for path in images.iterdir()) == before  # nothing written there


def test_layers_are_separated_by_commas_or_spaces(tmp_path: Path) -> None:
    images, out = _images(tmp_path / "images"), tmp_path / "out"
    assert (
        main(_small(images, out, "--methods", "random", "--layers", "block1", "block2,block3")) == 0
    )
    record = json.loads((out / "run.json").read_text())
    assert record["configuration"]["layers"] == ["block1", "block2", "block3"]


def test_progress_is_reported_in_a_log_and_quiet_silences_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = _images(tmp_path / "images")
    assert main(_small(images, tmp_path / "a", "--methods", "pcam+")) == 0
    final = capsys.readouterr().err.splitlines()[-1]  # not a terminal: lines, not a bar
    assert final.startswith("evaluate: done, ") and " passes in " in final
    assert main(_small(images, tmp_path / "b", "--methods", "pcam+", "--quiet")) == 0
    assert capsys.readouterr().err == ""
    assert (tmp_path / "a" / "report.html").is_file()


def test_threads_sets_pytorchs_threads(tmp_path: Path) -> None:
    import torch

    before = torch.get_num_threads()
    try:
        command = _small(_images(tmp_path / "images"), tmp_path / "out", "--methods", "random")
        assert main([*command, "--threads", "1", "--quiet"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert main(["evaluate", "--threads", "0"]) == 2  # argparse: must be at least 1


def test_reshape_reads_a_channels_last_model(tmp_path: Path) -> None:
    images, out = _images(tmp_path / "images"), tmp_path / "out"
    command = _small(images, out, "--methods", "pcam+,gradcam", "--reshape", "nhwc", "--quiet")
    command[command.index(TINY)] = "tests.evaluation.tiny_models:channels_last_classifier"
    assert main(command) == 0
    configuration = json.loads((out / "run.json").read_text())["configuration"]
    assert configuration["reshape"] == "nhwc"
    assert configuration["layers"] == ["stage1", "stage2", "stage3"]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        (
            "--mean",
            "nan,0,0",
            "argument --mean: mean must be three finite numbers, one per channel",
        ),
        ("--mean", "0,inf,0", "argument --mean: mean must be three finite numbers"),
        ("--std", "0,1,1", "argument --std: std must be three finite positive numbers"),
        ("--std", "1,1", "argument --std: std must be three finite positive numbers"),
    ],
)
def test_mean_and_std_are_checked_where_they_are_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, message: str
) -> None:
    images = _images(tmp_path / "images")
    assert main([*_small(images, tmp_path / "out"), option, value]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_folder_of_unreadable_images_shows_their_errors_and_writes_errors_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, out = tmp_path / "images", tmp_path / "out"
    images.mkdir()
    (images / "image0.png").write_bytes(b"not a PNG")
    (images / "image1.jpg").mkdir()
    assert main(_small(images, out, "--methods", "random")) == 2
    assert error_line(capsys).rstrip() == (
        "captum-polycam: error: images: none of the 2 image(s) can be read: image0.png: "
        f"cannot decode image '{images / 'image0.png'}': not a supported image file; image1.jpg: "
        f"cannot read image '{images / 'image1.jpg'}': Is a directory (all of them in "
        f"'{out / 'errors.csv'}')"
    )
    assert (out / "errors.csv").read_text().splitlines()[1:] == [
        f"image0.png,cannot decode image '{images / 'image0.png'}': not a supported image file",
        f"image1.jpg,cannot read image '{images / 'image1.jpg'}': Is a directory",
    ]


def test_conflicting_labels_and_list_entries_outside_the_folder_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, out = _images(tmp_path / "images"), tmp_path / "out"
    labels, image_list = tmp_path / "labels.txt", tmp_path / "images.txt"
    labels.write_text("image0.png 1\nimage1.png 3\nimage0.png 2\n")
    assert main(_small(images, out, "--labels", str(labels))) == 2
    assert (
        f"labels: '{labels}' gives 'image0.png' two classes, 1 on line 1 and 2 on line 3; keep one"
    ) in error_line(capsys)
    image_list.write_text("image0.png\n/etc/passwd\n")
    assert main(_small(images, out, "--image-list", str(image_list))) == 2
    assert (
        f"image_list: line 2 of '{image_list}', '/etc/passwd', leads outside the images folder "
        f"'{images}'"
    ) in error_line(capsys)
    assert not out.exists()


def test_labels_that_leave_images_out_serve_top1_and_say_how_many(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, labels = _images(tmp_path / "images"), tmp_path / "labels.txt"
    labels.write_text("image0.png 1\n")
    assert (
        main(_small(images, tmp_path / "out", "--methods", "random", "--labels", str(labels))) == 0
    )
    assert (
        "evaluate: labels: 2 of 3 image(s) have no class, such as 'image1.png'; target 'top1' "
        "needs none"
    ) in capsys.readouterr().err


def test_a_factory_of_random_weights_is_seeded_so_the_same_command_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from captum_polycam.evaluation.folder import locked
    from captum_polycam.resources.models import model_digest
    from tests.evaluation.tiny_models import unseeded_classifier

    images, out = _images(tmp_path / "images"), tmp_path / "out"
    command = _small(images, out, "--methods", "random", "--seed", "5", "--quiet")
    command[command.index(TINY)] = "tests.evaluation.tiny_models:unseeded_classifier"
    assert main(command) == 0
    assert main(command) == 0  # the same weights again: resumed, not refused
    torch.manual_seed(5)
    expected = model_digest(unseeded_classifier())
    assert json.loads((out / "run.json").read_text())["configuration"]["model_sha256"] == expected
    with locked(out):  # a run going on in the folder
        assert main(command) == 2
    assert "is in use by another evaluation (process " in error_line(capsys)


def test_boxes_add_the_localisation_and_their_faults_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, out = _images(tmp_path / "images"), tmp_path / "out"
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("image,x1,y1,x2,y2\nimage0.png,2,3,12,20\nimage1.png,0,0,21,30\n")
    assert main(_small(images, out, "--methods", "random", "--boxes", str(boxes))) == 0
    printed = capsys.readouterr().out
    assert "| localisation |" in printed and "| centre (prior) |" in printed
    assert "1 image(s) have no ground truth" in printed  # image2.png has no row
    record = json.loads((out / "run.json").read_text())
    assert record["configuration"]["ground_truth"]["format"] == "csv"
    boxes.write_text("image,x1,y1,x2,y2\nimage0.png,12,3,2,20\n")
    assert main(_small(images, tmp_path / "other", "--boxes", str(boxes))) == 2
    message = error_line(capsys)
    assert "image0.png" in message and str(boxes) in message
    assert not (tmp_path / "other" / "run.json").exists()
    assert main(_small(images, tmp_path / "other", "--boxes-format", "csv")) == 2
    assert "--boxes" in error_line(capsys)


# A user's module of a 3D classifier, outside the package, as --model names it.
SCAN_MODELS = """
import torch
from torch import nn


def classifier():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv3d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv3d(4, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    ).eval()
"""
SCANS = ("a.npy", "b.nii.gz", "c.nii")


@pytest.fixture
def scans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three 16^3 scans (NumPy and NIfTI), their labels file beside them, and the user's
    module of a 3D classifier importable as ``scan_models:classifier``."""
    (tmp_path / "scan_models.py").write_text(SCAN_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    folder = tmp_path / "scans"
    folder.mkdir()
    voxels = np.random.default_rng(0).normal(size=(3, 16, 16, 16)).astype(np.float32)
    np.save(folder / SCANS[0], voxels[0])
    for name, volume in zip(SCANS[1:], voxels[1:], strict=True):
        nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), folder / name)
    (tmp_path / "labels.txt").write_text("a.npy 0\nb.nii.gz 2\nc.nii 1\n")
    return folder


def _scan_command(scans: Path, out: Path, *extra: str) -> list[str]:
    return [
        "evaluate",
        "--images",
        str(scans),
        "--labels",
        str(scans.parent / "labels.txt"),
        "--target",
        "label",
        "--model",
        "scan_models:classifier",
        "--methods",
        "pcam+,gradcam",
        "--steps",
        "8",
        "--workers",
        "0",
        "--quiet",
        "--out",
        str(out),
        *extra,
    ]


def test_evaluate_on_scans_writes_their_maps_keyed_by_file_name_and_resumes(
    scans: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    command = _scan_command(scans, out, "--window", "-2", "2")
    assert main(command) == 0
    assert "| pcam+ |" in capsys.readouterr().out
    for method in ("pcam+", "gradcam"):
        with np.load(out / "npz" / f"classifier_{method}.npz", allow_pickle=False) as maps:
            assert maps.files == list(SCANS)
            assert all(maps[name].shape == (16, 16, 16) for name in SCANS)
    rows = list(csv.DictReader((out / "csv" / "scores_classifier_pcam+.csv").open()))
    assert [(row["image"], row["target"]) for row in rows] == [
        ("a.npy", "0"),
        ("b.nii.gz", "2"),
        ("c.nii", "1"),
    ]
    configuration = json.loads((out / "run.json").read_text())["configuration"]
    assert configuration["preprocessing"] == {
        "window": [-2.0, 2.0],
        "percentiles": None,
        "size": None,
    }
    shards = {p: p.stat().st_mtime_ns for p in (out / "shards").rglob("*.npz")}
    assert main(command) == 0  # the same command resumes: nothing computed again
    assert {p: p.stat().st_mtime_ns for p in shards} == shards
    capsys.readouterr()
    assert main(_scan_command(scans, out, "--window", "-1", "2")) == 2
    assert "differs in preprocessing)" in error_line(capsys)


def test_scans_are_scaled_by_percentiles_and_resampled_to_size(scans: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    extra = ("--percentiles", "1", "99", "--size", "8", "12", "8", "--methods", "random")
    assert main(_scan_command(scans, out, *extra)) == 0
    with np.load(out / "npz" / "classifier_random.npz", allow_pickle=False) as maps:
        assert [maps[name].shape for name in SCANS] == [(8, 12, 8)] * 3
    configuration = json.loads((out / "run.json").read_text())["configuration"]
    assert configuration["preprocessing"] == {
        "window": None,
        "percentiles": [1.0, 99.0],
        "size": [8, 12, 8],
    }


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "efficientnet-lite0"], "--model: 'efficientnet-lite0' classifies photos"),
        (["--mean", "0,0,0"], "--mean: normalises photos, and the --images are scans"),
        (["--size", "16", "16"], "--size: scans take three sides, D H W; got 2"),
        (["--size", "16", "16", "1025"], "--size: scans take at most 1024 voxels a side; got 16"),
        (["--window", "2", "-2"], "--window: LOW must be below HIGH; got LOW=2.0, HIGH=-2.0"),
        (["--percentiles", "5", "200"], "--percentiles: must satisfy 0 <= P_LOW < P_HIGH <= 100"),
        (["--methods", "pcam+,occlusion"], "methods: occlusion slides 3 x 16 x 16 windows"),
        (["--boxes", "labels.txt"], "boxes: localisation is measured on photos"),
    ],
)
def test_what_scans_cannot_take_is_a_one_line_error(
    scans: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*_scan_command(scans, tmp_path / "out"), *extra]) == 2
    assert message in error_line(capsys)
    assert not (tmp_path / "out" / "run.json").exists()


def test_photos_refuse_the_scans_options_and_a_folder_of_both_is_refused(
    scans: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = _images(tmp_path / "images")
    for extra, message in (
        (["--window", "0", "1"], "--window: scales scans (.nii, .nii.gz, .npy), and the --images"),
        (["--percentiles", "1", "99"], "--percentiles: scales scans"),
        (["--size", "16", "16", "16"], "--size: photos take two sides, H W; got 3"),
    ):
        assert main([*_small(photos, tmp_path / "out"), *extra]) == 2
        assert message in error_line(capsys)
    np.save(photos / "scan.npy", np.zeros((4, 4, 4), np.float32))
    assert main(_small(photos, tmp_path / "out")) == 2
    assert "mixes photos ('image0.png') and scans ('scan.npy')" in error_line(capsys)
