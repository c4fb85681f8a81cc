"""An evaluation's output folder: claimed by one configuration, recorded in ``run.json``.

A rerun with the same configuration resumes in the folder; another is refused, naming what
differs, and a folder holding anything but a run is never written into.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from captum_polycam.evaluation import _distributed
from captum_polycam.evaluation.artefacts import remove_temporary_files, write_json
from captum_polycam.resources.errors import EvaluationError

__all__ = ["RUN_FILE", "OutputFolder", "now"]

RUN_FILE = "run.json"


def now() -> str:
    """The time in UTC, to the second, as ``run.json`` records it."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class OutputFolder:
    """The folder ``out`` of a run shared by the processes ``ranks``; the main one writes."""

    def __init__(self, out: Path, ranks: _distributed.Ranks) -> None:
        self.out = out
        self.ranks = ranks

    def claim(self, configuration: dict[str, Any]) -> None:
        """Start a new run in ``out``, or resume the one there if its configuration matches."""
        configuration = json.loads(json.dumps(configuration))  # as JSON reads it back
        record = self.out / RUN_FILE
        if self.ranks.is_main:
            if self.out.exists() and not self.out.is_dir():
                raise EvaluationError(f"out: {str(self.out)!r} is a file; give a folder")
            if record.exists():
                self._check_same(configuration, record)
                remove_temporary_files(self.out)
            elif self.out.exists() and any(self.out.iterdir()):
                raise EvaluationError(
                    f"out: {str(self.out)!r} is not empty and holds no {RUN_FILE}; choose a new "
                    "or empty folder"
                )
            else:
                try:
                    write_json(record, {"configuration": configuration, "started": now()})
                except OSError as error:
                    raise EvaluationError(
                        f"out: cannot write in {str(self.out)!r}: {error.strerror or error}"
                    ) from None
        self.ranks.barrier()
        if not self.ranks.is_main:
            self._check_same(configuration, record)

    def _check_same(self, configuration: dict[str, Any], record: Path) -> None:
        try:
            previous = json.loads(record.read_text())["configuration"]
        except (OSError, ValueError, KeyError) as error:
            raise EvaluationError(f"out: cannot read {str(record)!r} ({error})") from None
        changed = sorted(
            key
            for key in configuration.keys() | previous.keys()
            if configuration.get(key) != previous.get(key)
        )
        if changed:
            raise EvaluationError(
                f"out: {str(self.out)!r} holds a run of another configuration (it differs in "
                f"{', '.join(changed)}); use a new folder, or the same settings to resume it"
            )

    def add_to_record(self, values: dict[str, Any]) -> None:
        """Add ``values`` to ``run.json`` (what is known once the run is done)."""
        record = self.out / RUN_FILE
        write_json(record, json.loads(record.read_text()) | values)
