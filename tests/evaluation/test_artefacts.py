"""Atomic, byte-stable artefact files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from captum_polycam.evaluation.artefacts import (
    atomic_file,
    read_npz,
    remove_temporary_files,
    write_csv,
    write_npz,
)


def test_npz_round_trips_without_pickle_and_keeps_the_keys_order(tmp_path: Path) -> None:
    arrays = [
        ("b.JPEG", np.arange(4, dtype=np.float32).reshape(2, 2)),
        ("a.png", np.ones((3, 3), np.float32)),
        ("names", np.array(["x", "yz"])),
    ]
    write_npz(tmp_path / "maps.npz", iter(arrays))
    with np.load(tmp_path / "maps.npz", allow_pickle=False) as archive:
        assert archive.files == ["b.JPEG", "a.png", "names"]
    loaded = read_npz(tmp_path / "maps.npz")
    for key, array in arrays:
        np.testing.assert_array_equal(loaded[key], array)
        assert loaded[key].dtype == array.dtype


def test_the_same_arrays_give_the_same_bytes(tmp_path: Path) -> None:
    arrays = [("map", np.random.default_rng(0).random((8, 8), dtype=np.float32))]
    write_npz(tmp_path / "first.npz", arrays)
    write_npz(tmp_path / "second.npz", arrays)  # later: zip timestamps would differ
    assert (tmp_path / "first.npz").read_bytes() == (tmp_path / "second.npz").read_bytes()


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path: Path) -> None:
    path = tmp_path / "summary.csv"
    write_csv(path, ("a", "b"), [(1, 2)])
    with pytest.raises(RuntimeError), atomic_file(path) as file:
        file.write(b"half of a new ")
        raise RuntimeError("killed")
    assert path.read_text() == "a,b\n1,2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.csv"]


def test_leftovers_of_a_killed_write_are_removed(tmp_path: Path) -> None:
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / ".000001.npz.abc.tmp").write_bytes(b"partial")
    (tmp_path / "shards" / "000000.npz").write_bytes(b"kept")
    remove_temporary_files(tmp_path)
    assert [p.name for p in (tmp_path / "shards").iterdir()] == ["000000.npz"]
