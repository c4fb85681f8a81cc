"""How many perturbed inputs a forward pass holds, and in which memory layout, by measurement.

The fastest batch depends on the model, the input size, the device and the precision: on a
2-core CPU EfficientNet-Lite0 runs fastest at 4 images a pass and slows down past 8, a GPU wants
hundreds, and channels-last inputs run some convolutions faster than contiguous ones. Rather
than guess, the first call that scores enough items times a few pass sizes in both layouts on
its own items (no pass is wasted: the probe's scores are kept), and the best is remembered for
the model, input shape, device and precision.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["PassShape", "PassTuner", "candidate_sizes"]

# Pass sizes tried, smallest first; a size is tried twice and the second pass timed (the first
# pays for the kernels' set-up). A layout's probe stops once a size runs below 70% of its best.
_CANDIDATES = {"cpu": (1, 2, 4, 8, 16, 32), "cuda": (8, 16, 32, 64, 128, 256, 512, 1024)}
_TIMED_REPEATS = 2
_GIVE_UP_BELOW = 0.7
# Of the free device memory, what a probe may plan to use.
_MEMORY_SHARE = 0.8


def candidate_sizes(device: torch.device) -> tuple[int, ...]:
    return _CANDIDATES.get(device.type, _CANDIDATES["cuda"])


@dataclass(frozen=True)
class PassShape:
    """Perturbed inputs per forward pass, and whether they are laid out channels-last."""

    size: int
    channels_last: bool

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


RunPass = Callable[[int, int, PassShape], None]
"""``run(start, stop, shape)`` scores items ``start .. stop - 1`` in one pass of that shape."""


class PassTuner:
    """Chooses and remembers the pass shape per model, input shape, device and precision.

    The choices are held per model object (weakly: they go with the model), so every method
    and metric scoring the same model shares them.
    """

    def __init__(self) -> None:
        self._choices: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], PassShape]] = (
            weakref.WeakKeyDictionary()
        )

    def chosen(self, owner: Any, key: tuple[Any, ...]) -> PassShape | None:
        try:
            return self._choices.get(owner, {}).get(key)
        except TypeError:  # an owner that cannot be weakly referenced is never remembered
            return None

    def remember(self, owner: Any, key: tuple[Any, ...], shape: PassShape) -> None:
        with contextlib.suppress(TypeError):
            self._choices.setdefault(owner, {})[key] = shape

    def forget(self) -> None:
        """Drop every choice (for instance after the machine's load changed)."""
        self._choices.clear()

    @staticmethod
    def probe(
        run: RunPass, count: int, device: torch.device, layouts: tuple[bool, ...],
        item_bytes: int,
    ) -> tuple[PassShape | None, int]:  # fmt: skip
        """Score the first items with every candidate shape and return the fastest.

        Returns:
            The fastest shape, or ``None`` when the plan is too short to compare them (the
            caller then keeps its default), and how many items the probe scored.
        """
        sizes = candidate_sizes(device)
        needed = _TIMED_REPEATS * sum(sizes[:3]) * len(layouts)
        if count < 2 * needed:
            return None, 0
        limit = _memory_limit(device, item_bytes)
        start, best, best_rate = 0, None, 0.0
        for channels_last in layouts:
            layout_best = 0.0
            for size in sizes:
                if size > limit or start + _TIMED_REPEATS * size > count:
                    break
                shape = PassShape(size, channels_last)
                for _ in range(_TIMED_REPEATS):
                    _synchronise(device)
                    began = time.perf_counter()
                    run(start, start + size, shape)
                    _synchronise(device)
                    seconds = time.perf_counter() - began
                    start += size
                rate = size / max(seconds, 1e-9)
                if rate > best_rate:
                    best, best_rate = shape, rate
                if rate < _GIVE_UP_BELOW * layout_best:
                    break
                layout_best = max(layout_best, rate)
        return best, start


def _synchronise(device: torch.device) -> None:
    # Timing a GPU pass needs its end; only the probe's few passes wait for it.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _memory_limit(device: torch.device, item_bytes: int) -> float:
    """The largest pass the free memory allows, counting generously per input (a network's
    activations take far more than its input)."""
    if device.type != "cuda":
        return float("inf")
    free, _ = torch.cuda.mem_get_info(device)
    return _MEMORY_SHARE * free / max(64 * item_bytes, 1)
