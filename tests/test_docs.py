"""The documentation builds without warnings and the tutorial notebook is well formed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
NOTEBOOK = ROOT / "tutorials" / "polycam_quickstart.ipynb"


def test_docs_build_without_warnings(tmp_path: Path) -> None:
    pytest.importorskip("sphinx")
    command = [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html"]
    command += ["-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "html" / "index.html").is_file()


def _notebook() -> dict:
    return json.loads(NOTEBOOK.read_text(encoding="utf-8"))


def _source(cell: dict) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def test_notebook_is_nbformat_4_without_outputs() -> None:
    notebook = _notebook()
    assert notebook["nbformat"] == 4
    cells = notebook["cells"]
    assert any(cell["cell_type"] == "code" for cell in cells)
    assert any(cell["cell_type"] == "markdown" for cell in cells)
    for cell in cells:
        assert cell["cell_type"] in {"code", "markdown", "raw"}
        if cell["cell_type"] == "code":
            assert cell.get("outputs", []) == [], "stored outputs"
            assert cell.get("execution_count") is None, "stored execution count"


def test_notebook_code_cells_compile() -> None:
    cells = [cell for cell in _notebook()["cells"] if cell["cell_type"] == "code"]
    for index, cell in enumerate(cells):
        compile(_source(cell), f"{NOTEBOOK.name}[code cell {index}]", "exec")
