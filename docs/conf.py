"""Sphinx configuration for the captum-polycam documentation."""

from __future__ import annotations

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
]

exclude_patterns = ["_build", ".gitignore"]
root_doc = "index"
language = "en"

# Google-style docstrings (Args / Returns / Example).
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

autodoc_member_order = "bysource"
autodoc_typehints = "signature"

# References into torch and captum cannot be resolved offline; do not warn about them.
nitpicky = False

html_theme = "alabaster"
html_title = f"captum-polycam {release}"
html_theme_options = {
    "description": "Poly-CAM high-resolution class activation maps for Captum",
    "fixed_sidebar": True,
}
