"""The report: every final artefact from a method's shards, with hand-computed statistics."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from captum_polycam.evaluation.report import Report, write_report


def _shard(
    names: list[str], insertion: list[float], deletion: list[float], sensitivity: list[float]
) -> dict[str, np.ndarray]:
    count = len(names)
    return {
        "names": np.array(names, dtype=str),
        "maps": np.zeros((count, 2, 2), np.float32),
        "targets": np.arange(count, dtype=np.int64),
        "error_names": np.array(["broken.jpg"] if count == 1 else [], dtype=str),
        "error_messages": np.array(["cannot read"] if count == 1 else [], dtype=str),
        "insertion": np.array(insertion, np.float32),
        "deletion": np.array(deletion, np.float32),
        "insertion_curve": np.tile(np.array([0.5, 1.0], np.float32), (count, 1)),
        "deletion_curve": np.tile(np.array([0.5, 0.0], np.float32), (count, 1)),
        "fractions": np.array([0.5, 1.0], np.float32),
        "clean_score": np.ones(count, np.float32),
        "average_drop": np.full(count, 10.0, np.float32),
        "increase_in_confidence": np.array([100.0] + [0.0] * (count - 1), np.float32),
        "sensitivity_max": np.array(sensitivity, np.float32),
    }


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture
def out(tmp_path: Path) -> Path:
    shards = [
        _shard(["a.png", "b.png"], [0.2, 0.4], [0.1, 0.1], [0.5, float("nan")]),
        _shard(["c.png"], [0.6], [0.4], [float("nan")]),
    ]
    write_report(tmp_path, "tiny", [("pcam+:no-lnorm", iter(shards))], n_steps=2)
    return tmp_path


def test_statistics_are_the_hand_computed_ones(out: Path) -> None:
    summary = {row["metric"]: row for row in _rows(out / "summary.csv")}
    # insertion 0.2, 0.4, 0.6: mean 0.4, sample std 0.2, interval 0.4 +- 1.96 * 0.2 / sqrt(3).
    insertion = summary["insertion"]
    half = 1.959963984540054 * 0.2 / math.sqrt(3)
    assert float(insertion["mean"]) == pytest.approx(0.4, abs=1e-6)
    assert float(insertion["std"]) == pytest.approx(0.2, abs=1e-6)
    assert float(insertion["ci95_low"]) == pytest.approx(0.4 - half, abs=1e-6)
    assert float(insertion["ci95_high"]) == pytest.approx(0.4 + half, abs=1e-6)
    assert insertion["images"] == "3" and insertion["better"] == "higher"
    # insertion - deletion: 0.1, 0.3, 0.2.
    assert float(summary["insertion_minus_deletion"]["mean"]) == pytest.approx(0.2, abs=1e-6)
    assert float(summary["increase_in_confidence"]["mean"]) == pytest.approx(
        200 / 3, abs=1e-4
    )  # 100, 0, 100
    # Max-sensitivity only where it was computed: one image.
    assert summary["sensitivity_max"]["images"] == "1"
    assert float(summary["sensitivity_max"]["std"]) == 0.0
    assert summary["deletion"]["better"] == "lower"


def test_per_image_files_follow_the_image_list(out: Path) -> None:
    rows = _rows(out / "csv" / "ins_auc_tiny_pcam+_no-lnorm.csv")
    assert [(row["image"], row["target"], row["auc"]) for row in rows] == [
        ("a.png", "0", "0.2"),
        ("b.png", "1", "0.4"),
        ("c.png", "0", "0.6"),
    ]
    details = _rows(out / "csv" / "del_details_tiny_pcam+_no-lnorm.csv")
    assert [row["step_2"] for row in details] == ["0.0", "0.0", "0.0"]
    scores = _rows(out / "csv" / "scores_tiny_pcam+_no-lnorm.csv")
    assert [row["sensitivity_max"] for row in scores] == ["0.5", "", ""]  # NaN: not computed
    with np.load(out / "npz" / "tiny_pcam+_no-lnorm.npz") as maps:
        assert maps.files == ["a.png", "b.png", "c.png"]
    assert _rows(out / "errors.csv") == [{"image": "broken.jpg", "error": "cannot read"}]
    assert (out / "curves.png").stat().st_size > 0


def test_read_gives_back_what_was_written(out: Path) -> None:
    report = Report.read(out)
    statistic = report.statistics["pcam+:no-lnorm"]["insertion"]
    assert statistic.count == 3 and statistic.mean == pytest.approx(0.4, abs=1e-6)
    assert report.markdown == (out / "summary.md").read_text()
    assert "| pcam+:no-lnorm |" in report.markdown and "| 3 |" in report.markdown


def test_an_interval_of_one_image_reads_n_a_not_zero(out: Path) -> None:
    # Max-sensitivity was computed on one image: no spread, so no interval to claim.
    markdown = Report.read(out).markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| pcam+:no-lnorm"))
    assert row.endswith("| 0.5000 ± n/a | 3 |")
    assert "0.4000 ± 0.2263" in row  # insertion: 1.96 x 0.2 / sqrt(3)
