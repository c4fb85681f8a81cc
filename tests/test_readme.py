"""The README's Python example runs as written, offline, and ends in an overlay of the photo."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_every_python_block_compiles() -> None:
    blocks = _python_blocks()
    assert len(blocks) >= 3
    for block in blocks:
        compile(block, "README.md", "exec")


@pytest.mark.slow
def test_the_first_example_writes_the_overlay(tmp_path: Path) -> None:
    pytest.importorskip("efficientnet_lite_pytorch")
    example = _python_blocks()[0]
    result = subprocess.run(
        [sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr
    layers, top1 = result.stdout.splitlines()[-2:]
    assert layers.startswith("_blocks.0._swish (32@112x112), ") and layers.endswith("(1280@7x7)")
    assert top1 == "Egyptian cat"
    assert "passes in" in result.stderr  # show_progress=True: a status line without a terminal
    with Image.open(tmp_path / "overlay.png") as overlay:
        assert overlay.size == (224, 224) and overlay.mode == "RGB"
