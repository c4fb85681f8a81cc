"""Conventions every method and metric shares, written once: which forward arguments follow
their example (Captum's rule), and seeding random work without disturbing the caller's."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

__all__ = ["check_int", "is_per_example", "seeded"]

_KINDS = {1: "a positive int", 0: "a non-negative int", None: "an int"}


def check_int(
    name: str,
    value: Any,
    least: int | None = 1,
    *,
    none: bool = False,
    error: type[ValueError] = ValueError,
) -> None:
    """A clear ``error`` naming ``name`` unless ``value`` is an int (a bool is not) of at least
    ``least`` (1, 0, or ``None`` for any), or ``None`` where ``none`` allows it."""
    if value is None and none:
        return
    wrong_type = isinstance(value, bool) or not isinstance(value, int)
    if wrong_type or (least is not None and value < least):
        expected = _KINDS[least] + " or None" * none
        raise error(f"{name} must be {expected}; got {value!r}")


def is_per_example(value: Any, count: int) -> bool:
    """Whether ``value`` holds one row per example of a batch of ``count``, as Captum reads
    ``additional_forward_args``: a tensor of at least one dimension whose first is ``count``.
    Such values are cut, repeated and reordered with their examples; others pass as they are."""
    return isinstance(value, Tensor) and value.dim() > 0 and len(value) == count


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the generators that ``device``'s work draws from, restoring them afterwards, so
    that the work is reproducible and leaves the caller's random streams where they were."""
    cuda = []
    if device.type == "cuda":
        cuda = [torch.cuda.current_device() if device.index is None else device.index]
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        for index in cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield
