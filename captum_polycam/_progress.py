"""Progress that says something: forward passes done out of those expected, their rate and
the time left, inside a long job rather than per batch of it.

On a terminal it is a tqdm bar. Without one (a log file, CI, a notebook run headless) a bar
would print nothing useful, so one status line is written every ``interval`` seconds instead,
then a final line with the totals and the time. A job (an evaluation, a sanity check) opens
one :class:`Progress` and makes it current; the perturbation engine then counts its passes
there instead of drawing a bar per call.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal, TextIO

__all__ = ["Progress", "ProgressMode", "current_progress", "progress_mode"]

ProgressMode = Literal["bar", "lines", "off"]

# Seconds between two status lines without a terminal: often enough to show that a job lives,
# rarely enough to keep a log readable.
STATUS_INTERVAL = 30.0

_CURRENT: ContextVar[Progress | None] = ContextVar("captum_polycam_progress", default=None)


def progress_mode(show: bool, stream: TextIO | None = None) -> ProgressMode:
    """``"bar"`` on a terminal, ``"lines"`` without one, ``"off"`` when not ``show``."""
    if not show:
        return "off"
    stream = stream or sys.stderr
    return "bar" if getattr(stream, "isatty", lambda: False)() else "lines"


def current_progress() -> Progress | None:
    """The progress of the job running now, if one counts passes (see :meth:`Progress.current`)."""
    return _CURRENT.get()


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Progress:
    """Work done out of a total that may be revised, reported as a bar or as status lines.

    Args:
        description: What the job is, first on every line (``"evaluate"``).
        total: The work expected so far; :meth:`expect` adds to it as it becomes known.
        unit: What is counted (``"passes"``).
        mode: ``"bar"``, ``"lines"`` or ``"off"`` (see :func:`progress_mode`).
        interval: Seconds between status lines in ``"lines"`` mode.
        stream: Where to write; standard error by default.
        clock: Seconds, monotonic; replaced in tests.
    """

    def __init__(
        self,
        description: str,
        total: int = 0,
        unit: str = "passes",
        *,
        mode: ProgressMode = "bar",
        interval: float = STATUS_INTERVAL,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.description = description
        self.total = total
        self.unit = unit
        self.mode = mode
        self.interval = interval
        self.stream = stream or sys.stderr
        self.clock = clock
        self.done = 0
        self.step = ""
        self._started = clock()
        self._last_line = self._started
        self._bar: Any = None
        if mode == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total, desc=description, unit=f" {unit}", file=self.stream, dynamic_ncols=True
            )

    def expect(self, count: int) -> None:
        """Add ``count`` (negative to correct an estimate) to the work expected."""
        self.total = max(self.done, self.total + count)
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.refresh()

    def describe(self, step: str) -> None:
        """Say what is being done now (``"pcam+ on images 1 to 8"``)."""
        self.step = step
        if self._bar is not None:
            self._bar.set_postfix_str(step, refresh=True)

    def update(self, count: int = 1) -> None:
        """Count ``count`` units done."""
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
        elif self.mode == "lines" and self.clock() - self._last_line >= self.interval:
            self._last_line = self.clock()
            self._write(self.status())

    def status(self) -> str:
        """One line: done out of expected, the rate, the time left and the current step."""
        elapsed = self.clock() - self._started
        parts = [f"{self.description}: {self.done:,} of {self.total:,} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.done / self.total:.0f}%)"
        if self.done and elapsed > 0:
            rate = self.done / elapsed
            parts.append(f"{rate:,.1f} {self.unit}/s")
            parts.append(f"about {_duration((self.total - self.done) / rate)} left")
        if self.step:
            parts.append(self.step)
        return ", ".join(parts)

    def close(self) -> None:
        """Finish: the bar closes; in ``"lines"`` mode a last line gives the totals and time."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.mode == "lines" and (self.done or self.total):  # nothing to do: no news
            elapsed = self.clock() - self._started
            rate = f" ({self.done / elapsed:,.1f}/s)" if elapsed > 0 and self.done else ""
            self._write(
                f"{self.description}: done, {self.done:,} {self.unit} in {_duration(elapsed)}{rate}"
            )
        self.mode = "off"

    @contextmanager
    def current(self) -> Iterator[Progress]:
        """Make this the job's progress while the block runs, then close it: the engine's
        passes are counted here instead of in a bar of their own."""
        token = _CURRENT.set(self)
        try:
            yield self
        finally:
            _CURRENT.reset(token)
            self.close()

    def _write(self, line: str) -> None:
        print(line, file=self.stream, flush=True)
