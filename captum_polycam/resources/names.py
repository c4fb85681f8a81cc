"""Names that stand for things: ``"package.module:callable"`` and artefact file stems."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

__all__ = ["file_stem", "import_callable"]


def import_callable(spec: str) -> Callable[..., Any]:
    """The callable that ``"package.module:callable"`` names.

    Raises:
        ValueError: In one line, if the module cannot be imported, lacks the attribute, or
            the attribute is not callable. The caller prefixes the argument's name.
    """
    module_name, _, attribute = spec.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    # A module may raise anything while it is imported; ValueError for an empty name.
    except Exception as error:
        raise ValueError(f"cannot import it ({error})") from None
    if not callable(found):
        raise ValueError(f"{module_name}.{attribute} is not callable")
    return found  # type: ignore[no-any-return]


def file_stem(name: str) -> str:
    """``name`` as part of a file name on every file system: characters other than letters,
    digits and ``+.=-`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9+.=-]", "_", name)
