"""The tutorial notebooks are well formed and run, and the documentation, tutorials included,
builds without warnings.

Each notebook in ``tutorials/`` is executed once per test session, by nbclient on a ``python3``
kernel with ``CAPTUM_POLYCAM_TUTORIAL_FAST=1`` in its environment (fewer images and samples, the
same code). The executed copies go to a temporary folder, and the documentation build renders
them from there (``CAPTUM_POLYCAM_EXECUTED_NOTEBOOKS``), so no notebook runs twice.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
TUTORIALS = ROOT / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
FAST_ENV = {"CAPTUM_POLYCAM_TUTORIAL_FAST": "1"}
CELL_TIMEOUT_S = 900
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _notebook(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _source(cell: dict) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def test_tutorials_exist() -> None:
    assert {path.name for path in NOTEBOOKS} >= {"polycam_quickstart.ipynb", "metrics.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_nbformat_4_without_outputs(path: Path) -> None:
    notebook = _notebook(path)
    assert notebook["nbformat"] == 4
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    cells = notebook["cells"]
    assert any(cell["cell_type"] == "code" for cell in cells)
    assert any(cell["cell_type"] == "markdown" for cell in cells)
    ids = [cell.get("id") for cell in cells]
    assert None not in ids, "cells without an id"
    assert len(set(ids)) == len(ids), "duplicate cell ids"
    for cell in cells:
        assert cell["cell_type"] in {"code", "markdown", "raw"}
        if cell["cell_type"] == "code":
            assert cell.get("outputs", []) == [], "stored outputs"
            assert cell.get("execution_count") is None, "stored execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_code_cells_compile(path: Path) -> None:
    cells = [cell for cell in _notebook(path)["cells"] if cell["cell_type"] == "code"]
    for index, cell in enumerate(cells):
        compile(_source(cell), f"{path.name}[code cell {index}]", "exec")


def test_python3_kernel_is_this_interpreter() -> None:
    """The notebooks name the ``python3`` kernel: it must start this environment's Python, where
    captum-polycam and the tutorials' dependencies are installed."""
    manager = pytest.importorskip("jupyter_client.manager")
    command = manager.KernelManager(kernel_name="python3").format_kernel_cmd()
    assert Path(command[0]).resolve() == Path(sys.executable).resolve(), command


class ExecutedNotebooks:
    """Executes each tutorial at most once per session and keeps the executed copy."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.errors: dict[str, str | None] = {}

    def run(self, path: Path) -> str | None:
        """Executes ``path`` unless done already; returns the error, or None if it ran."""
        if path.name not in self.errors:
            self.errors[path.name] = self._execute(path)
        return self.errors[path.name]

    def _execute(self, path: Path) -> str | None:
        nbformat = pytest.importorskip("nbformat")
        nbclient = pytest.importorskip("nbclient")
        from nbclient.exceptions import CellExecutionError

        notebook = nbformat.read(path, as_version=4)
        client = nbclient.NotebookClient(
            notebook,
            timeout=CELL_TIMEOUT_S,
            kernel_name="python3",
            coalesce_streams=True,  # one stream per cell, progress bars reduced to their end
            resources={"metadata": {"path": str(path.parent)}},
        )
        error = None
        try:
            client.execute(env={**os.environ, **FAST_ENV})
        except CellExecutionError as exc:
            failed = [
                f"cell {index} (id {cell.get('id')})"
                for index, cell in enumerate(notebook.cells)
                if any(output.get("output_type") == "error" for output in cell.get("outputs", []))
            ]
            where = failed[0] if failed else "a cell"
            error = f"{path.name}: {where} failed:\n{ANSI_ESCAPE.sub('', str(exc))}"
        except Exception as exc:  # a dead kernel, a cell timeout: no cell error to show
            error = f"{path.name}: {type(exc).__name__}: {exc}"
        nbformat.write(notebook, self.directory / path.name)
        return error


@pytest.fixture(scope="session")
def executed_notebooks(tmp_path_factory: pytest.TempPathFactory) -> ExecutedNotebooks:
    return ExecutedNotebooks(tmp_path_factory.mktemp("executed_notebooks"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_tutorial_runs(path: Path, executed_notebooks: ExecutedNotebooks) -> None:
    error = executed_notebooks.run(path)
    if error is not None:
        pytest.fail(error, pytrace=False)


class _OutputImages(HTMLParser):
    """Collects the ``src`` of the ``<img>`` tags inside a notebook cell's output."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[bool] = []
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        inside = bool(self.stack and self.stack[-1]) or "cell_output" in classes
        if tag == "img" and inside:
            self.sources.append(dict(attrs).get("src") or "")
        elif tag not in {"img", "br", "hr", "meta", "link", "input", "source", "wbr"}:
            self.stack.append(inside)

    def handle_endtag(self, tag: str) -> None:
        if tag not in {"img", "br", "hr", "meta", "link", "input", "source", "wbr"} and self.stack:
            self.stack.pop()


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path: Path, executed_notebooks: ExecutedNotebooks) -> None:
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_nb")
    failed = [path.name for path in NOTEBOOKS if executed_notebooks.run(path) is not None]
    if failed:
        pytest.fail(f"not built: {', '.join(failed)} failed to run (see test_tutorial_runs)")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    command += ["-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")]
    env = {**os.environ, "CAPTUM_POLYCAM_EXECUTED_NOTEBOOKS": str(executed_notebooks.directory)}
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    html = tmp_path / "html"
    assert (html / "index.html").is_file()
    for path in NOTEBOOKS:
        page = html / "tutorials" / f"{path.stem}.html"
        assert page.is_file(), f"{path.name} not rendered"
        parser = _OutputImages()
        parser.feed(page.read_text(encoding="utf-8"))
        assert parser.sources, f"{page.name}: no image in the cell outputs"
        for source in parser.sources:
            if source.startswith("data:image/"):
                continue
            image = (page.parent / source).resolve()
            assert image.is_file(), f"{page.name}: {source} missing"
            assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{source} is not a PNG"
    # The formulas render offline: MathJax is copied next to the pages, not fetched.
    algorithm = (html / "algorithm.html").read_text(encoding="utf-8")
    assert "_static/mathjax/tex-chtml.js" in algorithm
    assert (html / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert not re.search(r"src=\"(https?:)?//", algorithm), "a page loads a script from the web"
