"""How many perturbed inputs a forward pass holds, and in which memory layout, by measurement.

The fastest batch depends on the model, the input size, the device and the precision: on a
2-core CPU EfficientNet-Lite0 runs fastest at 4 images a pass and slows down past 8, a GPU wants
hundreds, and channels-last inputs run some convolutions faster than contiguous ones. Rather
than guess, the first call that scores enough items times a few pass sizes in both layouts on
its own items (no pass is wasted: the probe's scores are kept), and the best is remembered for
the model, input shape, device and precision.

A lowered precision is measured too: on a CPU without native bf16 (AVX2 only), autocast
emulates it, tens of times slower than fp32. :class:`LoweredPrecisionCheck` times one input in
each precision, once per model and input shape, and warns when the lowered one is far slower.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import captum
import torch

__all__ = [
    "LoweredPrecisionCheck",
    "PassShape",
    "PassTuner",
    "candidate_sizes",
    "cpu_flags",
    "native_support",
    "slowdown",
]

# Pass sizes tried, smallest first; a size is tried twice and the second pass timed (the first
# pays for the kernels' set-up). A layout's probe stops once a size runs below 70% of its best.
_CANDIDATES = {"cpu": (1, 2, 4, 8, 16, 32), "cuda": (8, 16, 32, 64, 128, 256, 512, 1024)}
_TIMED_REPEATS = 2
_GIVE_UP_BELOW = 0.7
# Of the free device memory, what a probe may plan to use.
_MEMORY_SHARE = 0.8
# A lowered precision this many times slower than fp32 draws a warning. Emulated bf16 runs
# 17 to 50 times slower than fp32 on a CPU and native bf16 faster, so noise cannot cross it.
_SLOWDOWN_WARNING = 2.0
# The /proc/cpuinfo flags of native arithmetic in each precision: x86's AVX-512 and AMX
# extensions, Arm's bf16 and half-precision vector instructions.
_NATIVE_FLAGS = {
    "bf16": frozenset({"avx512_bf16", "amx_bf16", "bf16"}),
    "fp16": frozenset({"avx512_fp16", "amx_fp16", "asimdhp"}),
}
_WHERE_IT_PAYS = {
    "bf16": "bf16 pays off on CPUs with AVX-512 BF16 or AMX (Intel Sapphire Rapids and later, "
    "AMD Zen 4 and later) and on GPUs",
    "fp16": "fp16 pays off on GPUs",
}
# Frames of these packages are skipped when a warning names its caller.
_LIBRARY_DIRS = tuple(
    os.path.dirname(path) + os.sep
    for path in (os.path.dirname(__file__), captum.__file__, torch.__file__)
    if path is not None
)


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

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._choices: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], PassShape]] = (
            weakref.WeakKeyDictionary()
        )
        # Seconds for the probe's timings; a test gives a clock its model advances, so that
        # the choice does not depend on the machine's load.
        self.clock = clock

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

    def probe(
        self,
        run: RunPass,
        count: int,
        device: torch.device,
        layouts: tuple[bool, ...],
        item_bytes: int,
    ) -> tuple[PassShape | None, int]:
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
                    began = self.clock()
                    run(start, start + size, shape)
                    _synchronise(device)
                    seconds = self.clock() - began
                    start += size
                rate = size / max(seconds, 1e-9)
                if rate > best_rate:
                    best, best_rate = shape, rate
                if rate < _GIVE_UP_BELOW * layout_best:
                    break
                layout_best = max(layout_best, rate)
        return best, start

    def fastest_layout(self, run: RunPass, size: int, device: torch.device) -> bool:
        """Whether passes of ``size`` items run faster channels-last than contiguous.

        Each layout scores the plan's first ``size`` items in a pass that sets its kernels up,
        then in a timed one. The caller scores those items again in the chosen layout, so that
        every item of a call comes from passes of one layout.
        """
        seconds = {}
        for channels_last in (False, True):
            shape = PassShape(size, channels_last)
            run(0, size, shape)
            _synchronise(device)
            began = self.clock()
            run(0, size, shape)
            _synchronise(device)
            seconds[channels_last] = self.clock() - began
        return seconds[True] < seconds[False]


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


def slowdown(run: Callable[[bool], None], clock: Callable[[], float] = time.perf_counter) -> float:
    """How many times longer a pass takes in a lowered precision than in fp32.

    Each precision runs one pass that sets its kernels up, then two timed passes, of which the
    faster counts.

    Args:
        run: ``run(lowered)`` runs one pass, under the lowered precision when ``lowered``.
        clock: The clock, in seconds.

    Returns:
        The lowered pass's time over the fp32 pass's.
    """
    fastest = {}
    for lowered in (False, True):
        run(lowered)
        seconds = []
        for _ in range(_TIMED_REPEATS):
            began = clock()
            run(lowered)
            seconds.append(clock() - began)
        fastest[lowered] = min(seconds)
    return fastest[True] / max(fastest[False], 1e-9)


def cpu_flags(path: Path = Path("/proc/cpuinfo")) -> frozenset[str] | None:
    """The CPU's feature flags (x86's ``flags``, Arm's ``Features``), ``None`` where the file
    cannot be read (not Linux)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return None


def native_support(precision: str, flags: frozenset[str] | None) -> bool | None:
    """Whether ``flags`` announce native arithmetic in ``precision`` (``"bf16"`` or ``"fp16"``),
    ``None`` when the flags are unknown."""
    return None if flags is None else bool(flags & _NATIVE_FLAGS[precision])


class LoweredPrecisionCheck:
    """Measures, once per model and key, how much slower a lowered precision runs than fp32 on
    a CPU, and warns when it is far slower.

    Without native bf16 (AVX-512 BF16 or AMX on x86), autocast emulates it: on a 2-core AVX2
    AMD EPYC, EfficientNet-Lite0 ran 17 times slower in bf16 than in fp32, so a user who chose
    bf16 for speed would wait an hour for a map. The processor's flags cannot tell how fast
    PyTorch's kernels are; a pass in each precision can, and costs little next to the passes
    it may save. The measurements are held per model object, weakly, like :class:`PassTuner`'s.
    """

    def __init__(self) -> None:
        self._measured: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], float]] = (
            weakref.WeakKeyDictionary()
        )

    def check(
        self, owner: Any, key: tuple[Any, ...], precision: str, run: Callable[[bool], None]
    ) -> float:
        """The slowdown of ``precision`` for ``owner`` and ``key``, measured with ``run`` (see
        :func:`slowdown`) the first time, with a ``UserWarning`` if it is 2 or more.

        Returns:
            The lowered pass's time over the fp32 pass's.
        """
        with contextlib.suppress(TypeError):  # an owner that cannot be weakly referenced
            known = self._measured.get(owner, {}).get(key)
            if known is not None:
                return known
        factor = slowdown(run)
        with contextlib.suppress(TypeError):
            self._measured.setdefault(owner, {})[key] = factor
        if factor >= _SLOWDOWN_WARNING:
            warnings.warn(
                _slowdown_message(precision, factor), UserWarning, stacklevel=_caller_stacklevel()
            )
        return factor

    def forget(self) -> None:
        """Drop every measurement, so that the next call measures (and warns) again."""
        self._measured.clear()


def _slowdown_message(precision: str, factor: float) -> str:
    native = native_support(precision, cpu_flags())
    about = [torch.backends.cpu.get_cpu_capability()]
    if native is not None:
        about.append(f"{'' if native else 'no '}native {precision}")
    times = f"{factor:.0f}" if factor >= 10 else f"{factor:.1f}"
    return (
        f"precision={precision!r} runs {times}x slower than fp32 on this CPU "
        f"({', '.join(about)}), measured on one input of this model; use precision='fp32'. "
        f"{_WHERE_IT_PAYS[precision]}"
    )


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that names the first caller outside this library, Captum and
    PyTorch, whose wrappers (``log_usage``, ``no_grad``) sit between the user and here."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_LIBRARY_DIRS):
        frame, level = frame.f_back, level + 1
    return level
