"""An evaluation's output folder: claimed by one configuration, recorded in ``run.json``, and
used by one run at a time.

A rerun with the same configuration resumes in the folder; another is refused, naming what
differs, and so is a run recorded in another format (:data:`FORMAT_VERSION`). A folder
holding anything but a run is never written into. While a run goes on, it holds a lock on
``run.lock``: a second run in the same folder is refused, naming the first. The system
releases the lock when the process ends, however it ends, so the file a killed run leaves
never blocks the run that resumes it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from captum_polycam.evaluation import _distributed
from captum_polycam.evaluation.artefacts import remove_temporary_files, write_json
from captum_polycam.evaluation.report import ERRORS_FILE, write_errors
from captum_polycam.resources.errors import EvaluationError

try:
    import fcntl
except ImportError:  # Windows: runs in one folder are not kept apart
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "FORMAT_VERSION",
    "LOCK_FILE",
    "MODEL_DIGEST",
    "RUN_FILE",
    "OutputFolder",
    "locked",
    "now",
]

# The format of run.json and of the shards: a run resumes only in a folder of its own format.
# Raise it whenever what they record, or how, changes.
FORMAT_VERSION = 1
RUN_FILE = "run.json"
LOCK_FILE = "run.lock"
MODEL_DIGEST = "model_sha256"
# What a run that was refused, or stopped, before claiming the folder may have left in it.
_LEFT_BEFORE_CLAIM = frozenset((LOCK_FILE, ERRORS_FILE))
# The lock descriptors this process holds (see _close_in_child).
_HELD: set[int] = set()
_T = TypeVar("_T")


def now() -> str:
    """The time in UTC, to the second, as ``run.json`` records it."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _close_in_child() -> None:
    # A forked child (a DataLoader worker) shares the lock; were its parent killed, the lock
    # would last until the child noticed. Closing the child's copy never releases the parent's.
    for descriptor in _HELD:
        with contextlib.suppress(OSError):
            os.close(descriptor)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold ``out/run.lock`` (creating ``out``) until the block ends or the process does.

    The file says which process holds it, for the message of the one refused; it stays after
    the block, as removing it would let two runs lock two different files.

    Raises:
        EvaluationError: Another process holds the lock: its id, host and start time.
        OSError: ``out`` or the file cannot be created.
    """
    out.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    descriptor = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        supported = True
    except BlockingIOError:
        holder = os.read(descriptor, 1000).decode(errors="replace").strip()
        os.close(descriptor)
        raise EvaluationError(
            f"out: {str(out)!r} is in use by another evaluation ({holder or 'a process'}); "
            "wait for it to end, or stop it, then run the same command to resume"
        ) from None
    except OSError:  # a file system without locks: run as before, unprotected
        supported = False
    if not supported:
        os.close(descriptor)
        yield
        return
    _HELD.add(descriptor)
    try:
        os.ftruncate(descriptor, 0)
        os.write(
            descriptor, f"process {os.getpid()} on {socket.gethostname()}, since {now()}\n".encode()
        )
        yield
    finally:
        _HELD.discard(descriptor)
        os.close(descriptor)  # releases the lock


class OutputFolder:
    """The folder ``out`` of a run shared by the processes ``ranks``; the main one writes."""

    def __init__(self, out: Path, ranks: _distributed.Ranks) -> None:
        self.out = out
        self.ranks = ranks

    @contextlib.contextmanager
    def claim(self, configuration: dict[str, Any]) -> Iterator[None]:
        """Start a new run in ``out``, or resume the one there if its configuration matches,
        and keep other runs out of the folder until the block ends.

        The main process holds the lock (:func:`locked`); the others of ``torchrun`` are its.
        """
        configuration = json.loads(json.dumps(configuration))  # as JSON reads it back
        record = self.out / RUN_FILE
        with contextlib.ExitStack() as lock:
            if self.ranks.is_main:
                if self.out.exists() and not self.out.is_dir():
                    raise EvaluationError(f"out: {str(self.out)!r} is a file; give a folder")
                if not record.exists() and self._holds_other_files():
                    raise EvaluationError(
                        f"out: {str(self.out)!r} is not empty and holds no {RUN_FILE}; choose a "
                        "new or empty folder"
                    )
                self._writing(lock.enter_context, locked(self.out))
                if record.exists():
                    self._check_same(configuration, record)
                    remove_temporary_files(self.out)
                else:
                    # A refused attempt's list of unreadable images is not this run's.
                    (self.out / ERRORS_FILE).unlink(missing_ok=True)
                    self._writing(
                        write_json,
                        record,
                        {
                            "format_version": FORMAT_VERSION,
                            "configuration": configuration,
                            "started": now(),
                        },
                    )
            self.ranks.barrier()
            if not self.ranks.is_main:
                self._check_same(configuration, record)
            yield

    def _holds_other_files(self) -> bool:
        return self.out.exists() and any(
            entry.name not in _LEFT_BEFORE_CLAIM for entry in self.out.iterdir()
        )

    def _writing(self, write: Callable[..., _T], *args: Any) -> _T:
        """``write(*args)``, an error naming ``out`` if the folder cannot be written."""
        try:
            return write(*args)
        except OSError as error:
            raise EvaluationError(
                f"out: cannot write in {str(self.out)!r}: {error.strerror or error}"
            ) from None

    def _check_same(self, configuration: dict[str, Any], record: Path) -> None:
        try:
            recorded = json.loads(record.read_text())
            version = recorded.get("format_version")
            previous = recorded["configuration"]
        except (OSError, ValueError, KeyError, AttributeError) as error:
            raise EvaluationError(f"out: cannot read {str(record)!r} ({error})") from None
        if version != FORMAT_VERSION:
            found = "no format_version" if version is None else f"format_version {version!r}"
            raise EvaluationError(
                f"out: {str(self.out)!r} holds a run of {found}, and this version of "
                f"captum-polycam resumes only runs of format_version {FORMAT_VERSION}; use a "
                "new folder"
            )
        changed = sorted(
            key
            for key in configuration.keys() | previous.keys()
            if configuration.get(key) != previous.get(key)
        )
        if changed:
            weights = ""
            if MODEL_DIGEST in changed:
                weights = (
                    f"; model {configuration.get('model')!r} has other weights: SHA-256 "
                    f"{configuration[MODEL_DIGEST][:12]} now, {previous[MODEL_DIGEST][:12]} in "
                    "the run"
                )
            raise EvaluationError(
                f"out: {str(self.out)!r} holds a run of another configuration (it differs in "
                f"{', '.join(changed)}{weights}); use a new folder, or the same settings to "
                "resume it"
            )

    def record(self) -> dict[str, Any]:
        """``run.json`` as it is."""
        return json.loads((self.out / RUN_FILE).read_text())  # type: ignore[no-any-return]

    def write_record(self, record: dict[str, Any]) -> None:
        """Replace ``run.json`` (with what is known once the run is done)."""
        write_json(self.out / RUN_FILE, record)

    def write_refused_errors(self, errors: Sequence[tuple[str, str]]) -> Path | None:
        """Write ``errors.csv`` for a run refused before it claimed the folder (no image could
        be read), where no run is recorded: a recorded run's list is its own. The folder stays
        free for the corrected command. Returns the file, or ``None`` where not written."""
        if not self.ranks.is_main or (self.out.exists() and not self.out.is_dir()):
            return None
        try:
            if (self.out / RUN_FILE).exists() or self._holds_other_files():
                return None
            with locked(self.out):  # another run may be claiming the folder meanwhile
                if (self.out / RUN_FILE).exists():
                    return None
                write_errors(self.out, errors)
        # The images are what the message is about: a folder that cannot take the list (or
        # another run's) only means that the message is all the user gets.
        except (OSError, EvaluationError):
            return None
        return self.out / ERRORS_FILE
