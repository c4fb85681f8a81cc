"""Names that stand for things: ``"package.module:callable"``, and how a name becomes part
of a file name (artefact file stems)."""

from __future__ import annotations

import hashlib
import importlib
import re
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["file_stem", "import_callable", "unique_file_stems"]

# Stems longer than this are cut (and made unique by a hash): a file name holds 255 bytes on
# most file systems, and the folders above it count towards Windows' path limit.
_MAX_STEM = 100
# Names Windows reserves whatever the extension: ``con.png`` cannot be created there.
_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)


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


def unique_file_stems(names: Iterable[str]) -> dict[str, str]:
    """A file stem per name, safe on every file system and unique among the names, letter
    case aside (for case-insensitive file systems).

    A name's stem is its :func:`file_stem`; a stem that another name shares (letter case
    aside), that is longer than 100 characters or that Windows reserves (``con``,
    ``nul.png``, ...) is cut to 100 characters and gets ``-`` and the first 8 hex digits of
    the name's SHA-256. Should a stem so made still equal another name's, both get the whole
    digest instead. The stems depend on the set of names only, not on their order; a name
    given twice counts once.

    Example:
        >>> unique_file_stems(["a b.png", "a_b.png", "cat.png"])["cat.png"]
        'cat.png'
    """
    names = list(dict.fromkeys(names))
    plain = {name: file_stem(name) for name in names}
    shared: dict[str, int] = {}
    for stem in plain.values():
        shared[stem.lower()] = shared.get(stem.lower(), 0) + 1
    stems = {}
    for name, stem in plain.items():
        if shared[stem.lower()] > 1 or len(stem) > _MAX_STEM or _RESERVED.match(stem):
            stem = f"{stem[:_MAX_STEM]}-{_digest(name)[:8]}"
        stems[name] = stem
    # A hashed stem could, in theory, equal another name's plain one: the whole digest then.
    taken: dict[str, int] = {}
    for stem in stems.values():
        taken[stem.lower()] = taken.get(stem.lower(), 0) + 1
    for name, stem in stems.items():
        if taken[stem.lower()] > 1:
            stems[name] = f"{plain[name][:_MAX_STEM]}-{_digest(name)}"
    return stems


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()
