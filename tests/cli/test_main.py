"""The ``captum-polycam`` script's entry point."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PIL import Image

from captum_polycam.cli.main import console


def test_the_script_imports_a_factory_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A console script, unlike python -m, does not put the working directory on sys.path.
    (tmp_path / "mynets_for_the_script.py").write_text(
        "from tests.evaluation.tiny_models import tiny_classifier as classifier\n"
    )
    Image.new("RGB", (10, 6), (60, 50, 200)).save(tmp_path / "photo.png")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if entry not in ("", ".")])
    command = ["explain", "photo.png", "--model", "mynets_for_the_script:classifier"]
    monkeypatch.setattr(sys, "argv", ["captum-polycam", *command, "--quiet", "--out", "m.png"])
    assert console() == 0, capsys.readouterr().err
    assert (tmp_path / "m.png").is_file()
