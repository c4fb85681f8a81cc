"""The ``captum-polycam explain-detection`` command, on a detector whose answer is known."""

from __future__ import annotations

import math
import os
import re
import stat
from pathlib import Path

import pytest
from PIL import Image
from torch import nn

from captum_polycam.cli import explain_detection as cli_explain_detection
from captum_polycam.cli.main import main
from captum_polycam.resources.images import bundled_image
from captum_polycam.testing import KnownAnswerDetector
from tests.conftest import error_line

BOX = (100, 60, 220, 180)


def known_answer_detector() -> KnownAnswerDetector:
    """The ``package.module:callable`` the command loads."""
    return KnownAnswerDetector([BOX], labels=[3])


_MODEL = f"{__name__}:known_answer_detector"


def test_each_detection_gets_its_map(tmp_path: Path, capsys) -> None:
    out = tmp_path / "boxes.png"
    status = main(
        [
            "explain-detection",
            str(bundled_image()),
            "--model",
            _MODEL,
            "--layers",
            "fine",
            "coarse",
            "--out",
            str(out),
            "--device",
            "cpu",
            "--score-threshold",
            "0.1",
        ]
    )
    printed = capsys.readouterr().out
    assert status == 0
    assert "label 3 " in printed and "at (100, 60, 220, 180)" in printed
    assert "Layers, shallow to deep: fine (144@12x12), coarse (36@6x6)" in printed
    with Image.open(out) as figure:  # two panels: the photo with its box, then the map
        assert figure.size == (2 * figure.height, figure.height)


def test_discovers_the_layers_by_itself(tmp_path: Path, capsys) -> None:
    status = main(
        [
            "explain-detection",
            str(bundled_image()),
            "--model",
            _MODEL,
            "--out",
            str(tmp_path / "boxes.png"),
            "--device",
            "cpu",
            "--score-threshold",
            "0.1",
        ]
    )
    assert status == 0
    assert "Layers, shallow to deep: fine (144@12x12), coarse (36@6x6)" in capsys.readouterr().out


def test_no_detection_says_so(tmp_path: Path, capsys) -> None:
    status = main(
        [
            "explain-detection",
            str(bundled_image()),
            "--model",
            _MODEL,
            "--out",
            str(tmp_path / "boxes.png"),
            "--score-threshold",
            "1.0",
        ]
    )
    assert status == 1
    assert "no detection reaches --score-threshold 1.0" in capsys.readouterr().err
    assert not (tmp_path / "boxes.png").exists()


def test_unknown_detector_lists_where_to_look(tmp_path: Path, capsys) -> None:
    assert main(["explain-detection", str(bundled_image()), "--model", "yolo"]) == 2
    assert "torchvision.models.detection" in error_line(capsys)


def test_bad_threshold_is_named(capsys) -> None:
    assert main(["explain-detection", str(bundled_image()), "--score-threshold", "2"]) == 2
    assert "--score-threshold" in error_line(capsys)


def test_pass_budget_spends_fewer_passes(tmp_path: Path, capsys) -> None:
    status = main(
        [
            "explain-detection",
            str(bundled_image()),
            "--model",
            _MODEL,
            "--layers",
            "fine",
            "coarse",
            "--out",
            str(tmp_path / "boxes.png"),
            "--score-threshold",
            "0.1",
            "--pass-budget",
            "0.25",
        ]
    )
    assert status == 0
    passes, exact = re.search(r"(\d+) of (\d+) masked passes", capsys.readouterr().out).groups()
    # One detection, PCAM- (one pass per live channel): a quarter of the exact passes.
    assert 0 < int(passes) == math.floor(0.25 * int(exact)) < int(exact)


def tiny_classifier() -> nn.Module:
    """A classifier given where a detector is expected."""
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))


def _run(*options: str) -> int:
    return main(
        [
            "explain-detection",
            str(bundled_image()),
            "--model",
            _MODEL,
            "--device",
            "cpu",
            "--score-threshold",
            "0.1",
            *options,
        ]
    )


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        (["nope"], "--layers: the model has no module named 'nope'"),
        (["fine", "nope"], "--layers: the model has no module named 'nope'"),
        (["fine:x", "coarse"], "--layers: 'fine:x' must be 'name' or 'name:call_index'"),
        (["fine:3", "coarse"], "--layers: fine:3 asks for call 3, but the module is called 1"),
        (["coarse", "fine"], "--layers: must go shallow to deep, by non-increasing resolution"),
    ],
)
def test_bad_layers_are_a_usage_error(
    tmp_path: Path, capsys, layers: list[str], message: str
) -> None:
    assert _run("--out", str(tmp_path / "boxes.png"), "--layers", *layers) == 2
    assert message in error_line(capsys)
    assert not (tmp_path / "boxes.png").exists()


@pytest.mark.parametrize("model", ["efficientnet-lite0", "resnet50"])
def test_a_classifier_name_is_not_a_detector(tmp_path: Path, capsys, model: str) -> None:
    out = str(tmp_path / "boxes.png")
    assert main(["explain-detection", str(bundled_image()), "--model", model, "--out", out]) == 2
    err = error_line(capsys)
    assert f"{model!r} is an image classifier, not an object detector" in err
    assert f"captum-polycam explain --model {model}" in err


def test_a_classifier_factory_is_not_a_detector(tmp_path: Path, capsys) -> None:
    model = f"{__name__}:tiny_classifier"
    out = str(tmp_path / "boxes.png")
    assert main(["explain-detection", str(bundled_image()), "--model", model, "--out", out]) == 2
    assert (
        f"--model {model}: not an object detector: it returned a tensor of shape (1, 5); "
        "expected a list of dicts with boxes, labels and scores, one per image"
    ) in error_line(capsys)


def test_an_output_folder_is_refused_before_any_work(tmp_path: Path, capsys, monkeypatch) -> None:
    loaded = []
    monkeypatch.setattr(
        cli_explain_detection, "load_detector", lambda *args: loaded.append(args) or (None, None)
    )
    assert _run("--out", str(tmp_path)) == 2
    assert f"--out: {str(tmp_path)!r} is a folder" in error_line(capsys)
    assert _run("--out", str(tmp_path / "boxes.gif")) == 2
    assert "--out: cannot write a '.gif' figure; use png, jpg" in error_line(capsys)
    assert _run("--out", str(tmp_path / "missing" / "boxes.png")) == 2
    assert f"--out: the folder {str(tmp_path / 'missing')!r} does not exist" in error_line(capsys)
    assert loaded == []


@pytest.mark.parametrize(
    ("name", "start"), [("boxes.jpg", b"\xff\xd8\xff"), ("boxes.pdf", b"%PDF-")]
)
def test_the_figure_format_follows_the_suffix(tmp_path: Path, name: str, start: bytes) -> None:
    out = tmp_path / name
    assert _run("--out", str(out), "--layers", "fine", "coarse") == 0
    assert out.read_bytes().startswith(start)


def test_the_figure_is_created_with_the_umasks_mode(tmp_path: Path) -> None:
    out = tmp_path / "boxes.png"
    previous = os.umask(0o027)
    try:
        assert _run("--out", str(out), "--layers", "fine", "coarse") == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
