"""Scans read from and maps written to NIfTI and ``.npy`` files, in the scan's voxel order and
space, and the CT window and percentile scaling, on tiny volumes with values computed by hand."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from captum_polycam.resources.errors import EvaluationError
from captum_polycam.resources.volumes import (
    SUFFIXES,
    Volume,
    percentile_range,
    percentile_scale,
    read_volume,
    window,
    write_volume,
)

_EXTRA = "nibabel is the medical extra: pip install 'captum-polycam[medical]'"
SHAPE = (4, 5, 6)


@pytest.fixture
def nib() -> ModuleType:
    """nibabel, for the NIfTI tests only: the .npy ones run without the extra."""
    return pytest.importorskip("nibabel", reason=_EXTRA)


def _affine() -> np.ndarray:
    """Voxels of 0.8 x 0.8 x 2.5 mm, the first axis flipped, and a translation: nothing that an
    identity, a transposition or a lost sign would reproduce."""
    affine = np.diag([-0.8, 0.8, 2.5, 1.0])
    affine[:3, 3] = [90.4, -126.0, -72.5]
    return affine


def _voxels(shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    """Distinct values, so that any reordering of the axes shows."""
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape)


def _nifti(nib: ModuleType, path: Path, voxels: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(_voxels() if voxels is None else voxels, _affine()), path)
    return path


def _map(shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    return np.random.default_rng(0).random(shape, dtype=np.float32)


# window and percentile_scale


def test_window_clips_and_scales_by_hand() -> None:
    hounsfield = torch.tensor([-1000.0, 0.0, 40.0, 80.0, 3000.0])
    torch.testing.assert_close(window(hounsfield, 0.0, 80.0), torch.tensor([0, 0, 0.5, 1, 1.0]))
    torch.testing.assert_close(
        window(hounsfield, -1000.0, 1000.0), torch.tensor([0, 0.5, 0.52, 0.54, 1.0])
    )


def test_window_of_integer_voxels_is_float32() -> None:
    scaled = window(torch.tensor([[-20, 10, 60]], dtype=torch.int16), -20.0, 60.0)
    assert scaled.dtype == torch.float32
    torch.testing.assert_close(scaled, torch.tensor([[0.0, 0.375, 1.0]]))


@pytest.mark.parametrize(("low", "high"), [(80.0, 0.0), (40.0, 40.0)])
def test_window_needs_low_below_high(low: float, high: float) -> None:
    with pytest.raises(
        ValueError, match=re.escape(f"window: LOW must be below HIGH; got LOW={low}, HIGH={high}")
    ):
        window(torch.zeros(3), low, high)


@pytest.mark.parametrize(
    ("data", "low", "high", "error", "message"),
    [
        (torch.tensor([0.0, float("nan")]), 0.0, 1.0, ValueError, "window: data holds NaN"),
        (torch.zeros(2), -float("inf"), 1.0, ValueError, "LOW and HIGH must be finite"),
        (np.zeros(2), 0.0, 1.0, TypeError, "window: data must be a tensor"),
    ],
)
def test_window_names_what_is_wrong(
    data: object, low: float, high: float, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        window(data, low, high)  # type: ignore[arg-type]


def test_percentile_scale_by_hand() -> None:
    # 0 to 100 in steps of 1: the 0.5th percentile is 0.5, the 99.5th 99.5.
    data = torch.arange(101, dtype=torch.float32)
    scaled = percentile_scale(data)
    expected = ((data - 0.5) / 99.0).clamp(0, 1)
    torch.testing.assert_close(scaled, expected)
    assert scaled[0] == 0 and scaled[50] == 0.5 and scaled[100] == 1
    torch.testing.assert_close(
        percentile_scale(data, 10.0, 60.0)[[0, 10, 35, 60, 100]],
        torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]),
    )


def test_percentile_scale_matches_numpy_percentiles() -> None:
    data = torch.from_numpy(np.random.default_rng(1).normal(size=(7, 8, 9)).astype(np.float32))
    low, high = np.percentile(data.numpy(), [2.0, 98.0])
    expected = np.clip((data.numpy() - low) / (high - low), 0, 1)
    np.testing.assert_allclose(percentile_scale(data, 2.0, 98.0).numpy(), expected, atol=1e-6)


def test_a_constant_volume_scales_to_zeros() -> None:
    scaled = percentile_scale(torch.full((3, 4, 5), 7.0))
    assert scaled.shape == (3, 4, 5) and not scaled.isnan().any() and not scaled.any()


def test_a_volume_that_is_mostly_one_value_falls_back_to_its_range() -> None:
    # Both percentiles are 0; the one bright voxel would vanish without the fallback.
    data = torch.zeros(10, 10, 10)
    data[2, 3, 4] = 5.0
    scaled = percentile_scale(data)
    assert scaled[2, 3, 4] == 1.0 and scaled.sum() == 1.0


@pytest.mark.parametrize(("low", "high"), [(-1.0, 50.0), (50.0, 50.0), (60.0, 40.0), (0, 101)])
def test_percentile_scale_refuses_bad_percentiles(low: float, high: float) -> None:
    with pytest.raises(ValueError, match=re.escape(f"got low={low!r}, high={high!r}")):
        percentile_scale(torch.zeros(3), low, high)


def test_percentile_scale_refuses_an_empty_volume() -> None:
    with pytest.raises(ValueError, match="percentile_scale: data is empty"):
        percentile_scale(torch.zeros(0, 3, 3))


# reading and writing


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_a_nifti_scan_is_read_in_its_voxel_order(
    nib: ModuleType, tmp_path: Path, suffix: str
) -> None:
    scan = read_volume(_nifti(nib, tmp_path / f"scan{suffix}"))
    assert scan.data.dtype == torch.float32 and scan.data.shape == SHAPE
    np.testing.assert_array_equal(scan.data.numpy(), _voxels())  # not reoriented
    assert scan.data[1, 2, 3] == 1 * 30 + 2 * 6 + 3
    assert scan.affine.dtype == np.float64 and scan.affine.shape == (4, 4)
    # The header stores the affine as float32: 0.8 comes back as float32's 0.8.
    np.testing.assert_allclose(scan.affine, _affine(), atol=1e-6)
    np.testing.assert_allclose(scan.header.get_zooms(), (0.8, 0.8, 2.5), rtol=1e-6)
    assert scan.path == tmp_path / f"scan{suffix}"
    assert repr(scan).startswith("Volume(data=<tensor of shape (4, 5, 6)>, zooms=(0.8")


def test_a_ct_scans_scaling_gives_hounsfield_units(nib: ModuleType, tmp_path: Path) -> None:
    stored = np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE)
    image = nib.Nifti1Image(stored, _affine())
    image.header.set_slope_inter(2.0, -1024.0)
    nib.save(image, tmp_path / "ct.nii.gz")
    scan = read_volume(tmp_path / "ct.nii.gz")
    np.testing.assert_array_equal(scan.data.numpy(), stored * 2.0 - 1024.0)
    # The map is written as float32 without the scan's slope and intercept.
    write_volume(tmp_path / "map.nii.gz", _map(), like=scan)
    written = nib.load(tmp_path / "map.nii.gz")
    assert written.get_data_dtype() == np.float32
    np.testing.assert_array_equal(written.get_fdata(dtype=np.float32), _map())


@pytest.mark.parametrize("source", [".nii.gz", ".nii"])
@pytest.mark.parametrize("target", [".nii.gz", ".nii"])
def test_a_map_round_trips_with_the_scans_affine_and_zooms(
    nib: ModuleType, tmp_path: Path, source: str, target: str
) -> None:
    scan = read_volume(_nifti(nib, tmp_path / f"scan{source}"))
    maps = torch.from_numpy(_map())[None, None]  # 1 x 1 x D x H x W, as PolyCam returns it
    write_volume(tmp_path / f"map{target}", maps, like=scan)
    back = read_volume(tmp_path / f"map{target}")
    np.testing.assert_array_equal(back.data.numpy(), _map())
    np.testing.assert_array_equal(back.affine, scan.affine)
    assert back.header.get_zooms() == scan.header.get_zooms()
    assert back.header.get_xyzt_units() == scan.header.get_xyzt_units()
    # And again, from the written map: nothing drifts.
    write_volume(tmp_path / f"again{target}", back.data[None], like=back)
    np.testing.assert_array_equal(read_volume(tmp_path / f"again{target}").affine, scan.affine)


def test_a_rotated_scan_with_only_a_qform_keeps_its_affine(nib: ModuleType, tmp_path: Path) -> None:
    angle = np.deg2rad(20.0)
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.8, 0.9, 2.5])
    affine[:3, 3] = [-10.3, 20.5, 3.1]
    image = nib.Nifti1Image(_voxels(), None)
    image.set_qform(affine, code=1)
    image.set_sform(None, code=0)
    nib.save(image, tmp_path / "scan.nii.gz")
    scan = read_volume(tmp_path / "scan.nii.gz")
    write_volume(tmp_path / "map.nii.gz", _map(), like=scan)
    back = read_volume(tmp_path / "map.nii.gz")
    np.testing.assert_array_equal(back.affine, scan.affine)
    assert back.header.get_zooms() == scan.header.get_zooms()


def test_a_npy_scan_round_trips_with_the_identity_affine(tmp_path: Path) -> None:
    np.save(tmp_path / "scan.npy", _voxels().astype(np.float64))
    scan = read_volume(tmp_path / "scan.npy")
    assert scan.data.dtype == torch.float32 and scan.header is None
    np.testing.assert_array_equal(scan.data.numpy(), _voxels())
    np.testing.assert_array_equal(scan.affine, np.eye(4))
    write_volume(tmp_path / "map.npy", torch.from_numpy(_map()), like=scan)
    back = read_volume(tmp_path / "map.npy")
    np.testing.assert_array_equal(back.data.numpy(), _map())
    np.testing.assert_array_equal(back.affine, np.eye(4))


def test_a_npy_scans_map_may_be_written_as_nifti(nib: ModuleType, tmp_path: Path) -> None:
    np.save(tmp_path / "scan.npy", _voxels())
    scan = read_volume(tmp_path / "scan.npy")
    write_volume(tmp_path / "map.nii.gz", _map()[None], like=scan)
    back = read_volume(tmp_path / "map.nii.gz")
    np.testing.assert_array_equal(back.affine, np.eye(4))
    np.testing.assert_array_equal(back.data.numpy(), _map())


def test_a_single_volume_in_a_4d_file_is_accepted(nib: ModuleType, tmp_path: Path) -> None:
    scan = read_volume(_nifti(nib, tmp_path / "scan.nii.gz", _voxels()[..., None]))
    assert scan.data.shape == SHAPE
    np.testing.assert_array_equal(scan.data.numpy(), _voxels())
    np.save(tmp_path / "scan.npy", _voxels()[..., None])
    assert read_volume(tmp_path / "scan.npy").data.shape == SHAPE


# errors


def _truncated(nib: ModuleType, path: Path, fraction: float) -> Path:
    whole = _nifti(nib, path).read_bytes()
    path.write_bytes(whole[: int(len(whole) * fraction)])
    return path


@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_a_truncated_nifti_is_named(nib: ModuleType, tmp_path: Path, fraction: float) -> None:
    path = _truncated(nib, tmp_path / "scan.nii.gz", fraction)
    with pytest.raises(EvaluationError, match=r"scan\.nii\.gz': not a readable NIfTI file \("):
        read_volume(path)


def test_a_truncated_uncompressed_nifti_is_named(nib: ModuleType, tmp_path: Path) -> None:
    path = _truncated(nib, tmp_path / "scan.nii", 0.9)
    with pytest.raises(EvaluationError, match=r"scan\.nii': not a readable NIfTI file \("):
        read_volume(path)


@pytest.mark.parametrize("name", ["x.nii.gz", "x.nii"])
def test_a_text_file_named_nifti_is_named(nib: ModuleType, tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("patient notes, not a scan")
    with pytest.raises(EvaluationError, match=re.escape(f"{name}': not a readable NIfTI file (")):
        read_volume(tmp_path / name)


@pytest.mark.parametrize("write", ["text", "truncated"])
def test_an_unreadable_npy_file_is_named(tmp_path: Path, write: str) -> None:
    path = tmp_path / "x.npy"
    if write == "text":
        path.write_text("not an array")
    else:
        np.save(path, _voxels())
        path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(EvaluationError, match=r"x\.npy': not a readable \.npy file \("):
        read_volume(path)


def test_a_npy_file_of_text_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.array([["a", "b"]] * 3))
    with pytest.raises(EvaluationError, match="a scan needs real numbers"):
        read_volume(tmp_path / "x.npy")


def test_a_series_of_volumes_is_refused_naming_the_axis(nib: ModuleType, tmp_path: Path) -> None:
    path = _nifti(nib, tmp_path / "scan.nii.gz", _voxels((4, 5, 6, 5)))
    expected = (
        f"{str(path)!r} is 4-D (4x5x6x5): the model takes one 3-D volume; pick one volume of "
        "axis 3, e.g. with nibabel's image.slicer[..., 0]"
    )
    with pytest.raises(EvaluationError, match=re.escape(expected)):
        read_volume(path)


def test_a_npy_series_is_refused_with_numpys_way_to_pick_one(tmp_path: Path) -> None:
    np.save(tmp_path / "scan.npy", _voxels((4, 5, 6, 5)))
    with pytest.raises(EvaluationError, match=re.escape("e.g. with array[..., 0]")):
        read_volume(tmp_path / "scan.npy")


@pytest.mark.parametrize(
    ("shape", "message"),
    [((4, 5), "is 2-D (4x5)"), ((4, 5, 6, 2, 3), "is 5-D (4x5x6x2x3)")],
)
def test_volumes_that_are_not_3d_are_refused(
    nib: ModuleType, tmp_path: Path, shape: tuple[int, ...], message: str
) -> None:
    for path in (_nifti(nib, tmp_path / "scan.nii.gz", _voxels(shape)), tmp_path / "scan.npy"):
        np.save(tmp_path / "scan.npy", _voxels(shape))
        with pytest.raises(EvaluationError, match=re.escape(message) + ".*3-D volume"):
            read_volume(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e39])
def test_non_finite_voxels_are_refused(nib: ModuleType, tmp_path: Path, bad: float) -> None:
    voxels = _voxels().astype(np.float64)
    voxels[1, 2, 3] = bad
    np.save(tmp_path / "scan.npy", voxels)
    _nifti(nib, tmp_path / "scan.nii", voxels)
    for name in ("scan.npy", "scan.nii"):
        with pytest.raises(EvaluationError, match="1 voxels are NaN or Inf"):
            read_volume(tmp_path / name)


def test_unknown_suffixes_and_missing_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "scan.mha").write_bytes(b"")
    listed = re.escape(", ".join(SUFFIXES))
    with pytest.raises(EvaluationError, match=rf"path: cannot read or write .*scan\.mha.*{listed}"):
        read_volume(tmp_path / "scan.mha")
    with pytest.raises(EvaluationError, match=r"missing\.nii\.gz': no such file"):
        read_volume(tmp_path / "missing.nii.gz")
    scan = Volume(torch.zeros(SHAPE), np.eye(4), None, tmp_path / "scan.npy")
    with pytest.raises(EvaluationError, match=rf"path: cannot read or write .*map\.png.*{listed}"):
        write_volume(tmp_path / "map.png", _map(), like=scan)


def test_write_volume_names_what_is_wrong(tmp_path: Path) -> None:
    scan = Volume(torch.zeros(SHAPE), np.eye(4), None, tmp_path / "scan.npy")
    with pytest.raises(ValueError, match=re.escape("shape (1, 4, 6, 5) does not fit the volume's")):
        write_volume(tmp_path / "map.npy", _map((1, 4, 6, 5)), like=scan)
    with pytest.raises(ValueError, match=re.escape("(4, 5, 6); give D x H x W")):
        write_volume(tmp_path / "map.npy", _map((2, 4, 5, 6)), like=scan)
    nan = _map()
    nan[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="values: holds NaN or Inf"):
        write_volume(tmp_path / "map.npy", nan, like=scan)
    with pytest.raises(TypeError, match="values must be a tensor or an array"):
        write_volume(tmp_path / "map.npy", _map().tolist(), like=scan)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="like must be a Volume"):
        write_volume(tmp_path / "map.npy", _map(), like=torch.zeros(SHAPE))  # type: ignore[arg-type]
    with pytest.raises(EvaluationError, match=r"map\.npy': cannot write the file"):
        write_volume(tmp_path / "no folder" / "map.npy", _map(), like=scan)
    assert not list(tmp_path.iterdir())


def test_a_npy_map_of_a_placed_scan_is_refused(nib: ModuleType, tmp_path: Path) -> None:
    scan = read_volume(_nifti(nib, tmp_path / "scan.nii.gz"))
    message = r"a \.npy file has no affine.*write \.nii\.gz instead"
    with pytest.raises(EvaluationError, match=message):
        write_volume(tmp_path / "map.npy", _map(), like=scan)
    assert not (tmp_path / "map.npy").exists()


def test_a_volume_checks_its_fields(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=re.escape("data must be a 3-D D x H x W tensor; got (2, 2)")
    ):
        Volume(torch.zeros(2, 2), np.eye(4), None, tmp_path)
    with pytest.raises(
        ValueError, match=re.escape("affine must be a 4 x 4 matrix; got shape (3, 3)")
    ):
        Volume(torch.zeros(SHAPE), np.eye(3), None, tmp_path)
    with pytest.raises(TypeError, match="data must be a D x H x W tensor"):
        Volume(np.zeros(SHAPE), np.eye(4), None, tmp_path)  # type: ignore[arg-type]
    scan = Volume(torch.zeros(SHAPE), np.eye(4, dtype=np.float32), None, str(tmp_path))  # type: ignore[arg-type]
    assert scan.affine.dtype == np.float64 and scan.path == tmp_path
    assert scan != Volume(scan.data, scan.affine, None, tmp_path)  # by identity, no ambiguity


def test_percentile_range_gives_the_values_scaled_to_0_and_1() -> None:
    # 0 to 100 in steps of 1: the 0.5th percentile is 0.5, the 99.5th 99.5.
    assert percentile_range(torch.arange(101, dtype=torch.float32)) == (0.5, 99.5)
    assert percentile_range(torch.arange(101), 10.0, 60.0) == (10.0, 60.0)
    # Percentiles that coincide fall back to the range, as percentile_scale does.
    data = torch.zeros(10, 10, 10)
    data[2, 3, 4] = 5.0
    assert percentile_range(data) == (0.0, 5.0)
    assert percentile_range(torch.full((2, 2), 7.0)) == (7.0, 7.0)
    with pytest.raises(ValueError, match="percentile_range: percentiles must satisfy"):
        percentile_range(data, 50.0, 50.0)
