"""The ``captum-polycam explain-detection`` command, on a detector whose answer is known."""

from __future__ import annotations

import math
import re
from pathlib import Path

from PIL import Image

from captum_polycam.cli.main import main
from captum_polycam.evaluation.images import bundled_image
from captum_polycam.scores.known_answer import KnownAnswerDetector
from tests.conftest import error_line

BOX = (100, 60, 220, 180)


def known_answer_detector() -> KnownAnswerDetector:
    """The ``package.module:callable`` the command loads."""
    return KnownAnswerDetector([BOX], labels=[3])


_MODEL = f"{__name__}:known_answer_detector"


def test_each_detection_gets_its_map(tmp_path: Path, capsys) -> None:
    out = tmp_path / "boxes.png"
    status = main([
        "explain-detection", str(bundled_image()), "--model", _MODEL, "--layers", "fine",
        "coarse", "--out", str(out), "--device", "cpu", "--score-threshold", "0.1",
    ])  # fmt: skip
    printed = capsys.readouterr().out
    assert status == 0
    assert "label 3 " in printed and "at (100, 60, 220, 180)" in printed
    assert "Layers, shallow to deep: fine, coarse" in printed
    with Image.open(out) as figure:  # two panels: the photo with its box, then the map
        assert figure.size == (2 * figure.height, figure.height)


def test_discovers_the_layers_by_itself(tmp_path: Path, capsys) -> None:
    status = main([
        "explain-detection", str(bundled_image()), "--model", _MODEL,
        "--out", str(tmp_path / "boxes.png"), "--device", "cpu", "--score-threshold", "0.1",
    ])  # fmt: skip
    assert status == 0
    assert "Layers, shallow to deep: fine, coarse" in capsys.readouterr().out


def test_no_detection_says_so(tmp_path: Path, capsys) -> None:
    status = main([
        "explain-detection", str(bundled_image()), "--model", _MODEL,
        "--out", str(tmp_path / "boxes.png"), "--score-threshold", "1.0",
    ])  # fmt: skip
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
    status = main([
        "explain-detection", str(bundled_image()), "--model", _MODEL, "--layers", "fine",
        "coarse", "--out", str(tmp_path / "boxes.png"), "--score-threshold", "0.1",
        "--pass-budget", "0.25",
    ])  # fmt: skip
    assert status == 0
    passes, exact = re.search(r"(\d+) of (\d+) masked passes", capsys.readouterr().out).groups()
    # One detection, PCAM- (one pass per live channel): a quarter of the exact passes.
    assert 0 < int(passes) == math.floor(0.25 * int(exact)) < int(exact)
