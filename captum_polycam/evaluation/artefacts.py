"""Writing artefacts so that none is ever half-written, and byte-identical from run to run.

Every file is written to a temporary name in its folder, flushed to the disk and renamed
over its final name, an atomic step: a reader (or a run resumed after a kill) sees the old
file, the new one, or none, never a part. ``.npz`` archives carry no timestamps, so the same
arrays always give the same bytes.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "TEMPORARY_SUFFIX",
    "atomic_file",
    "npz_writer",
    "read_npz",
    "remove_temporary_files",
    "write_bytes",
    "write_csv",
    "write_json",
    "write_npz",
]

TEMPORARY_SUFFIX = ".tmp"
# zip's earliest representable time: a fixed stamp keeps archives byte-identical.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[IO[bytes]]:
    """A binary file that appears at ``path`` complete, or not at all.

    It is written under a temporary name in the same folder, flushed to the disk and renamed
    over ``path`` when the block ends; if the block raises, the temporary file is removed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX
    )
    try:
        # mkstemp makes the file private (0600); a shared output folder (several nodes, a
        # colleague reading the results) needs the mode any other new file would get.
        os.chmod(temporary, _new_file_mode())
        with os.fdopen(handle, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


@functools.cache
def _new_file_mode() -> int:
    """The mode ``open()`` gives a new file: ``0o666`` less the process's umask."""
    umask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(umask)
    return 0o666 & ~umask


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path) as file:
        file.write(data)


def _sync_folder(folder: Path) -> None:
    # The rename itself is only durable once the folder's entry is on the disk.
    if os.name == "posix":
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


@contextlib.contextmanager
def npz_writer(path: Path) -> Iterator[Callable[[str, np.ndarray], None]]:
    """A compressed ``.npz`` at ``path`` that ``numpy.load(path, allow_pickle=False)`` reads,
    written atomically (see :func:`atomic_file`) one array at a time by the function the block
    gets: ``add(key, array)``, in the order of the archive."""
    with atomic_file(path) as file, zipfile.ZipFile(file, "w", zipfile.ZIP_DEFLATED) as archive:

        def add(key: str, array: np.ndarray) -> None:
            member = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH)
            member.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(member, "w", force_zip64=True) as entry:
                np.lib.format.write_array(entry, np.asarray(array), allow_pickle=False)

        yield add


def write_npz(path: Path, arrays: Iterable[tuple[str, np.ndarray]]) -> None:
    """Save ``(key, array)`` pairs, in order, as a compressed ``.npz`` (see
    :func:`npz_writer`)."""
    with npz_writer(path) as add:
        for key, array in arrays:
            add(key, array)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz``, loaded, by key."""
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write a CSV file with a header row; floats keep all their digits (``repr``)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_bytes(path, text.getvalue().encode())


def write_json(path: Path, value: Any) -> None:
    write_bytes(path, (json.dumps(value, indent=2) + "\n").encode())


def remove_temporary_files(folder: Path) -> None:
    """Delete what a killed run left of files it was writing."""
    for leftover in folder.rglob(f".*{TEMPORARY_SUFFIX}"):
        leftover.unlink(missing_ok=True)
