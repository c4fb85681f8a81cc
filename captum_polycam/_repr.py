"""Readable ``repr`` of the package's objects: their settings, not their memory addresses."""

from __future__ import annotations

from typing import Any

from torch import Tensor

__all__ = ["settings_repr"]


def settings_repr(name: str, **settings: Any) -> str:
    """``Name(key=value, ...)``, with tensors by shape and functions by name."""
    return f"{name}({', '.join(f'{key}={_value(value)}' for key, value in settings.items())})"


def _value(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"<tensor of shape {tuple(value.shape)}>"
    if callable(value) and not isinstance(value, type):
        return getattr(value, "__name__", None) or type(value).__name__
    return repr(value)
