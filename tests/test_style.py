"""The code stays ruff clean and ruff formatted, as the project's review standard asks."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ["captum_polycam", "tests", "benchmarks"]
# The notebooks are linted, not formatted: their cells are laid out for reading on the page.
NOTEBOOKS = ["tutorials"]


@pytest.mark.parametrize(
    "command",
    [["check", *FOLDERS, *NOTEBOOKS], ["format", "--check", *FOLDERS]],
    ids=["check", "format"],
)
def test_ruff_is_clean(command: list[str]) -> None:
    pytest.importorskip("ruff", reason="ruff is not installed")
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
