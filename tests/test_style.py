"""The code stays ruff clean, as the project's review standard asks."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_check_is_clean() -> None:
    pytest.importorskip("ruff", reason="ruff is not installed")
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "captum_polycam", "tests", "benchmarks"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
