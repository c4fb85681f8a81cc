"""Each folder is one concern and imports point one way: down the floors below, never up,
and never sideways between the attribution and the metrics."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "captum_polycam"
# Lower floors serve higher ones. Floor 0 holds the conventions and tensor helpers that every
# part shares; the command line is the top.
FLOORS: dict[str, float] = {
    "_compat": 0,
    "_conventions": 0,
    "_progress": 0,
    "_repr": 0,
    "_tensors": 0,
    "normalisation": 0,
    "testing": 0,
    "perturbation": 1,
    "scores": 1,
    "resources": 1,
    "attr": 2,
    "metrics": 2,
    "visualization": 2,
    "": 2.5,  # the public API, gathered at the top of the package from floors 0 to 2
    "evaluation": 3,
    "cli": 4,
    "__main__": 5,
}


def _part(module: str) -> str:
    return module.removeprefix("captum_polycam.").split(".")[0]


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "captum_polycam":
                found.add("")
            elif node.module.startswith("captum_polycam."):
                found.add(_part(node.module))
        elif isinstance(node, ast.Import):
            found |= {_part(a.name) for a in node.names if a.name.startswith("captum_polycam.")}
    return found


MODULES = sorted(
    path
    for path in PACKAGE.rglob("*.py")
    if path != PACKAGE / "__init__.py"  # the public API gathers every part
)


def test_every_part_has_a_floor() -> None:
    parts = {path.relative_to(PACKAGE).parts[0].removesuffix(".py") for path in MODULES}
    assert parts <= set(FLOORS)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    upward = {
        part for part in _imports(path) - {own} if part in FLOORS and FLOORS[part] >= FLOORS[own]
    }
    assert not upward, f"{path.relative_to(PACKAGE)} imports {sorted(upward)}"
