"""Sphinx configuration for the captum-polycam documentation."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import captum_polycam  # noqa: E402

project = "captum-polycam"
author = "captum-polycam developers"
copyright = "captum-polycam developers"
release = captum_polycam.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx.ext.mathjax",
    # MathJax from the package rather than a CDN: the formulas render offline.
    "sphinx-mathjax-offline",
    "myst_nb",
]

exclude_patterns = ["_build", ".gitignore", "**.ipynb_checkpoints"]
root_doc = "index"
language = "en"

# Google-style docstrings (Args / Returns / Example).
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

autodoc_member_order = "bysource"
# Constructor arguments live in __init__'s docstring, as in Captum, so that help() shows them.
autoclass_content = "both"
autodoc_typehints = "signature"

# References into torch and captum cannot be resolved offline; do not warn about them.
nitpicky = False

html_theme = "alabaster"
html_title = f"captum-polycam {release}"
html_theme_options = {
    "description": "Poly-CAM high-resolution class activation maps for Captum",
    "fixed_sidebar": True,
}


# The tutorials. The notebooks in ../tutorials/ are committed without outputs; they are copied
# into docs/tutorials/ (git-ignored) and rendered by myst-nb. If CAPTUM_POLYCAM_EXECUTED_NOTEBOOKS
# names a folder of executed copies (the test suite writes one), those are copied instead and
# not run again; otherwise myst-nb runs each notebook at build time, which takes several minutes
# on a CPU (CAPTUM_POLYCAM_TUTORIAL_FAST=1 in the environment makes them use fewer images).
EXECUTED_NOTEBOOKS = os.environ.get("CAPTUM_POLYCAM_EXECUTED_NOTEBOOKS")


def _copy_tutorials(source: Path, target: Path) -> None:
    """Mirrors the ``*.ipynb`` of ``source`` into ``target``, rewriting only changed files."""
    target.mkdir(exist_ok=True)
    notebooks = {path.name: path for path in source.glob("*.ipynb")}
    if not notebooks:
        raise FileNotFoundError(f"no notebooks in {source}")
    for stale in target.glob("*.ipynb"):
        if stale.name not in notebooks:
            stale.unlink()
    for name, path in notebooks.items():
        content = path.read_bytes()
        copy = target / name
        if not copy.is_file() or copy.read_bytes() != content:
            partial = copy.with_name(f".{name}.{os.getpid()}.tmp")
            partial.write_bytes(content)
            partial.replace(copy)  # atomic: a concurrent build never reads half a notebook


_copy_tutorials(
    Path(EXECUTED_NOTEBOOKS) if EXECUTED_NOTEBOOKS else ROOT / "tutorials",
    Path(__file__).resolve().parent / "tutorials",
)

# "auto" runs only notebooks without stored outputs: the committed ones, never executed copies.
nb_execution_mode = "off" if EXECUTED_NOTEBOOKS else "auto"
nb_execution_timeout = 1800  # seconds per cell; Poly-CAM on a CPU takes minutes
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True  # one block per cell for its output, progress bars at their end
nb_render_markdown_format = "myst"  # Markdown outputs (the metrics tutorial's table) as MyST
