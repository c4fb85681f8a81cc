"""Localisation metrics (pointing game, energy, box accuracy), checked on hand-computed values."""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import pytest
import torch
from torch import Tensor

from captum_polycam.metrics import (
    BestThreshold,
    BoxAccuracy,
    EnergyPointingGame,
    MetricSummary,
    PointingGame,
    ScoreDirection,
    best_threshold,
    localisation,
)

NAN = math.nan


def maps_of(*grids: list[list[float]]) -> Tensor:
    """N x 1 x H x W float64 maps, one per grid of rows."""
    return torch.tensor(grids, dtype=torch.float64)[:, None]


def zeros_with(height: int, width: int, **pixels: float) -> list[list[float]]:
    """A grid of zeros with ``y{row}x{column}=value`` pixels set."""
    grid = [[0.0] * width for _ in range(height)]
    for name, value in pixels.items():
        row, column = name[1:].split("x")
        grid[int(row)][int(column)] = value
    return grid


def assert_values(actual: Tensor, expected: list[Any]) -> None:
    torch.testing.assert_close(
        actual.cpu().double(), torch.tensor(expected, dtype=torch.float64), equal_nan=True
    )


# --- Pointing game ---------------------------------------------------------------------------

# 4 rows x 6 columns, the maximum at row 1, column 4 (x = 4, y = 1).
PEAK_Y1_X4 = zeros_with(4, 6, y1x4=2.0, y3x0=1.0)


@pytest.mark.parametrize(
    ("box", "tolerance", "hit"),
    [
        ([4, 1, 5, 2], 0, 1.0),  # exactly the maximal pixel
        ([1, 4, 2, 5], 0, NAN),  # the same box transposed lies below the frame: no pixel
        ([3, 1, 4, 2], 0, 0.0),  # the pixel to its left
        ([3, 1, 4, 2], 1, 1.0),  # ... one pixel away
        ([4.5, 1.5, 4.6, 1.6], 0, 1.0),  # a sliver holding the pixel's centre on its edge
        ([0, 0, 4, 4], 0, 0.0),  # columns 0 to 3, rows 0 to 3
        ([0, 0, 4.5, 4], 0, 1.0),  # ... and column 4, whose centre is at x = 4.5
    ],
)
def test_pointing_game_by_hand(box: list[float], tolerance: int, hit: float) -> None:
    metric = PointingGame(tolerance=tolerance)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = metric(maps_of(PEAK_Y1_X4), boxes=[[box]])
    assert_values(result.values, [hit])
    assert result.points.tolist() == [[4, 1]]


@pytest.mark.parametrize(("tolerance", "hit"), [(0, 0.0), (4, 0.0), (5, 1.0), (15, 1.0)])
def test_pointing_game_hits_within_the_tolerance_only(tolerance: int, hit: float) -> None:
    # The maximum at row 0, column 0 of a 6 x 7 map; the object is the one pixel at row 3,
    # column 4: sqrt(3^2 + 4^2) = 5 pixels away. The tolerance is inclusive (TorchRay's is
    # strict, which would miss at 5).
    grid = zeros_with(6, 7, y0x0=1.0)
    result = PointingGame(tolerance)(maps_of(grid), boxes=[[[4, 3, 5, 4]]])
    assert_values(result.values, [hit])


@pytest.mark.parametrize(("tolerance", "hit"), [(1, 0.0), (2, 1.0)])
def test_pointing_game_diagonal_distance(tolerance: int, hit: float) -> None:
    # Maximum at (2, 2), object at (3, 3): sqrt(2) pixels away.
    grid = zeros_with(5, 5, y2x2=1.0)
    result = PointingGame(tolerance)(maps_of(grid), masks=maps_of(zeros_with(5, 5, y3x3=1.0)))
    assert_values(result.values, [hit])


def test_pointing_game_several_boxes_and_boxes_over_the_border() -> None:
    # The maximum at the bottom-right corner (row 3, column 5) of a 4 x 6 map.
    grid = zeros_with(4, 6, y3x5=1.0, y0x0=0.5)
    maps = maps_of(grid, grid, grid)
    boxes = [
        [[0, 0, 1, 1], [5.4, 3.4, 9, 9]],  # the second reaches past the corner, holding (3, 5)
        torch.tensor([[0.0, 0.0, 2.0, 2.0], [-5.0, -5.0, 5.4, 3.4]]),  # neither holds (3, 5)
        [[-5, -5, 0.6, 0.6]],  # only pixel (0, 0)
    ]
    result = PointingGame(tolerance=0)(maps, boxes=boxes)
    assert_values(result.values, [1.0, 0.0, 0.0])
    assert result.points.tolist() == [[5, 3]] * 3


def test_pointing_game_ties_point_at_the_first_maximal_pixel_in_row_major_order() -> None:
    # Two maxima: (row 0, column 5), first in row-major order, and (row 1, column 0), first in
    # column-major order. The map points at (0, 5) only: an object on (1, 0) is missed even
    # though a maximal pixel lies on it.
    grid = zeros_with(3, 6, y1x0=5.0, y0x5=5.0, y2x2=1.0)
    maps = maps_of(grid, grid)
    result = PointingGame(tolerance=0)(maps, boxes=[[[0, 1, 1, 2]], [[5, 0, 6, 1]]])
    assert_values(result.values, [0.0, 1.0])
    assert result.points.tolist() == [[5, 0], [5, 0]]
    # (0, 5) is sqrt(1 + 25) = 5.10 pixels from (1, 0).
    far = PointingGame(5)(maps[:1], boxes=[[[0, 1, 1, 2]]])
    near = PointingGame(6)(maps[:1], boxes=[[[0, 1, 1, 2]]])
    assert_values(far.values, [0.0])
    assert_values(near.values, [1.0])


@pytest.mark.parametrize("dtype", [torch.bool, torch.float32, torch.int64])
def test_pointing_game_with_masks(dtype: torch.dtype) -> None:
    grid = zeros_with(3, 6, y1x0=5.0, y0x5=5.0)
    masks = maps_of(zeros_with(3, 6, y0x5=1.0), zeros_with(3, 6, y1x0=1.0, y2x5=1.0)).to(dtype)
    result = PointingGame(tolerance=0)(maps_of(grid, grid), masks=masks)
    assert_values(result.values, [1.0, 0.0])
    assert_values(PointingGame(tolerance=2)(maps_of(grid, grid), masks=masks).values, [1.0, 1.0])
    assert result.protocol == {"tolerance": 0, "ground_truth": "masks"}


def test_pointing_game_undefined_examples_are_nan_named_and_left_out() -> None:
    good = zeros_with(4, 6, y1x4=2.0)
    flat = [[7.0] * 6 for _ in range(4)]
    zero = zeros_with(4, 6)
    maps = maps_of(good, flat, good, zero, good)
    boxes: list[Any] = [[[4, 1, 5, 2]], [[4, 1, 5, 2]], [], [[4, 1, 5, 2]], [[0.2, 0.2, 0.4, 0.4]]]
    with pytest.warns(UserWarning) as record:
        result = PointingGame(tolerance=0)(maps, boxes=boxes)
    assert len(record) == 1
    message = str(record[0].message)
    assert "PointingGame: 4 of 5 examples are undefined" in message
    assert "example(s) [1, 3] have a constant map" in message
    assert "example(s) [2, 4] have no ground-truth pixel" in message
    assert record[0].filename == __file__  # the warning names the caller's line
    assert_values(result.values, [1.0, NAN, NAN, NAN, NAN])
    assert result.undefined.tolist() == [False, True, True, True, True]
    assert_values(result.as_dict()["pointing_game"], [1.0])


def test_pointing_game_takes_signed_maps() -> None:
    grid = [[-3.0, -1.0, -2.0], [-5.0, -4.0, -6.0]]
    result = PointingGame(tolerance=0)(maps_of(grid), boxes=[[[1, 0, 2, 1]]])
    assert_values(result.values, [1.0])


@pytest.mark.parametrize("tolerance", [-1, 1.5, True, "3", None])
def test_pointing_game_tolerance_must_be_a_non_negative_int(tolerance: Any) -> None:
    with pytest.raises(ValueError, match="tolerance must be a non-negative int"):
        PointingGame(tolerance)


def test_pointing_game_settings() -> None:
    import numpy as np

    metric = PointingGame(np.int64(3))
    assert metric.tolerance == 3 and type(metric.tolerance) is int
    assert repr(metric) == "PointingGame(tolerance=3)"
    assert metric.protocol == {"tolerance": 3}
    assert PointingGame.score_direction is ScoreDirection.HIGHER
    assert repr(PointingGame()) == "PointingGame(tolerance=15)"


# --- Energy-based pointing game --------------------------------------------------------------

# 4 rows x 6 columns, total mass 10: 3 at (row 0, column 2), 2 at (1, 1), 1 at (2, 0), 4 at (3, 5).
MASS = zeros_with(4, 6, y0x2=3.0, y1x1=2.0, y2x0=1.0, y3x5=4.0)


@pytest.mark.parametrize(
    ("boxes", "energy"),
    [
        # Row 0, columns 0 to 2: the 3. Indexed map[x1:x2, y1:y2] (rows 0 to 2 of column 0),
        # it would hold the 1: 0.1.
        ([[0, 0, 3, 1]], 0.3),
        # Rows 0 and 1, columns 0 to 2: 3 + 2. Transposed (rows 0 to 2, columns 0 and 1): 0.3.
        ([[0, 0, 3, 2]], 0.5),
        # Overlapping boxes count their common pixels once: the 3 lies in both.
        ([[0, 0, 3, 1], [2, 0, 4, 2]], 0.3),
        # Column 2 (centre 2.5, on the edge) over every row and beyond the frame.
        ([[2, -5, 2.5, 100]], 0.3),
        # The whole frame and more.
        ([[-1, -1, 7, 5]], 1.0),
        # Outside the mass.
        ([[3, 0, 6, 2]], 0.0),
    ],
)
def test_energy_by_hand(boxes: list[list[float]], energy: float) -> None:
    result = EnergyPointingGame()(maps_of(MASS), boxes=[boxes])
    assert_values(result.values, [energy])
    assert result.protocol == {"ground_truth": "boxes"}


def test_energy_with_masks_and_its_scale() -> None:
    masks = maps_of(zeros_with(4, 6, y1x1=1.0, y3x5=1.0)).bool()
    small = maps_of(MASS) * 1e-30
    result = EnergyPointingGame()(torch.cat([maps_of(MASS), small]), masks=masks.repeat(2, 1, 1, 1))
    assert_values(result.values, [0.6, 0.6])
    assert result.protocol == {"ground_truth": "masks"}


def test_energy_of_a_flat_map_is_the_area_fraction() -> None:
    flat = torch.full((1, 1, 4, 6), 2.0)
    result = EnergyPointingGame()(flat, boxes=[[[0, 0, 3, 2]]])
    assert_values(result.values, [6 / 24])


def test_energy_refuses_negative_maps() -> None:
    grid = [row[:] for row in MASS]
    grid[2][3] = -0.5
    with pytest.raises(ValueError, match=r"attributions must be non-negative.*example 1") as error:
        EnergyPointingGame()(maps_of(MASS, grid), boxes=[[[0, 0, 1, 1]]] * 2)
    assert "clamp(min=0)" in str(error.value) and "min_max" in str(error.value)


def test_energy_of_an_all_zero_map_is_undefined() -> None:
    with pytest.warns(UserWarning, match=r"1 of 2 .* example\(s\) \[0\] have an all-zero map"):
        result = EnergyPointingGame()(maps_of(zeros_with(4, 6), MASS), boxes=[[[0, 0, 3, 1]]] * 2)
    assert_values(result.values, [NAN, 0.3])
    assert result.undefined.tolist() == [True, False]
    assert_values(result.as_dict()["energy_pointing_game"], [0.3])


# --- Box accuracy ----------------------------------------------------------------------------

# 5 rows x 7 columns: region A, 3 pixels of 1.0 at the top left; region B, 5 pixels of 0.6
# from column 3 to 5 on rows 1 and 2, not touching A (columns 1 and 3 are two apart).
TWO_REGIONS = [
    [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [1.0, 0.0, 0.0, 0.6, 0.6, 0.6, 0.0],
    [0.0, 0.0, 0.0, 0.6, 0.6, 0.0, 0.0],
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
]


def test_box_accuracy_keeps_the_largest_region() -> None:
    # t = 0.5: A and B are foreground, B is larger: its box (3, 1, 6, 3) is the object's.
    # t = 0.7: only A, whose box (0, 0, 2, 2) does not meet the object's.
    metric = BoxAccuracy(thresholds=[0.5, 0.7])
    result = metric(maps_of(TWO_REGIONS), boxes=[[[3, 1, 6, 3]]])
    assert result.map_boxes.tolist() == [[[3.0, 1.0, 6.0, 3.0], [0.0, 0.0, 2.0, 2.0]]]
    assert_values(result.ious, [[1.0, 0.0]])
    assert_values(result.hits, [[1.0, 0.0]])
    assert_values(result.accuracy, [1.0, 0.0])
    assert result.best() == BestThreshold(threshold=0.5, accuracy=1.0, index=0)
    # The object's box given with A's as a second box: the best match counts.
    both = metric(maps_of(TWO_REGIONS), boxes=[[[3, 1, 6, 3], [0, 0, 2, 2]]])
    assert_values(both.hits, [[1.0, 1.0]])


def test_box_accuracy_iou_around_one_half() -> None:
    # The object: rows 0-1, columns 0-1 (4 pixels). Map 1's region: rows 0-1, columns 0-3
    # (8 pixels, IoU 4/8); map 2's: rows 0-2, columns 0-2 (9 pixels, IoU 4/9 = 0.444).
    wide = [[1.0] * 4 + [0.0] * 2 if row < 2 else [0.0] * 6 for row in range(4)]
    square = [[1.0] * 3 + [0.0] * 3 if row < 3 else [0.0] * 6 for row in range(4)]
    maps = maps_of(wide, square)
    boxes = [[[0, 0, 2, 2]]] * 2
    result = BoxAccuracy(thresholds=[0.5])(maps, boxes=boxes)
    assert result.map_boxes[:, 0].tolist() == [[0.0, 0.0, 4.0, 2.0], [0.0, 0.0, 3.0, 3.0]]
    assert_values(result.ious, [[0.5], [4 / 9]])
    assert_values(result.hits, [[1.0], [0.0]])  # IoU >= 0.5 is a hit
    assert_values(BoxAccuracy(0.45, [0.5])(maps, boxes=boxes).hits, [[1.0], [0.0]])
    assert_values(BoxAccuracy(0.44, [0.5])(maps, boxes=boxes).hits, [[1.0], [1.0]])
    assert_values(BoxAccuracy(0.51, [0.5])(maps, boxes=boxes).hits, [[0.0], [0.0]])


def test_box_accuracy_ties_go_to_the_region_of_the_first_pixel() -> None:
    # Two regions of 2 pixels at t = 0.5: (row 0, columns 3-4), first in row-major order, and
    # (row 2, columns 0-1), which holds more mass. The first is kept.
    grid = [
        [0.0, 0.0, 0.0, 0.9, 0.9],
        [0.0, 0.0, 0.0, 0.0, 0.0],
        [1.0, 1.0, 0.0, 0.0, 0.0],
    ]
    result = BoxAccuracy(thresholds=[0.5])(maps_of(grid), boxes=[[[3, 0, 5, 1]]])
    assert result.map_boxes.tolist() == [[[3.0, 0.0, 5.0, 1.0]]]
    assert_values(result.hits, [[1.0]])


def test_box_accuracy_regions_are_8_connected() -> None:
    # A diagonal of 3 pixels is one region, larger than the vertical pair at column 5 (with
    # 4-connectivity it would be three regions of one pixel, and the pair would win).
    grid = zeros_with(4, 6, y0x0=1.0, y1x1=1.0, y2x2=1.0, y0x5=1.0, y1x5=1.0)
    result = BoxAccuracy(thresholds=[0.5])(maps_of(grid), boxes=[[[0, 0, 3, 3]]])
    assert result.map_boxes.tolist() == [[[0.0, 0.0, 3.0, 3.0]]]
    assert_values(result.hits, [[1.0]])


def test_box_accuracy_foreground_is_at_or_above_the_threshold() -> None:
    # 0.5 >= 0.5 * 1.0: the second pixel is foreground at t = 0.5, not at t = 0.51.
    # t = 0 keeps the whole frame; t = 1 the maximum.
    grid = [[1.0, 0.5, 0.0], [0.0, 0.0, 0.25]]
    result = BoxAccuracy(thresholds=[0.0, 0.5, 0.51, 1.0])(maps_of(grid), boxes=[[[0, 0, 2, 1]]])
    assert result.map_boxes.tolist() == [
        [[0.0, 0.0, 3.0, 2.0], [0.0, 0.0, 2.0, 1.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]]
    ]
    assert_values(result.ious, [[2 / 6, 1.0, 0.5, 0.5]])
    assert_values(result.hits, [[0.0, 1.0, 1.0, 1.0]])


def test_box_accuracy_measures_boxes_in_whole_pixels() -> None:
    # (0.4, 0.4, 2.6, 1.6) holds the centres of rows 0-1 and columns 0-2: it is the box
    # (0, 0, 3, 2), exactly the region's (a continuous IoU would be 2.64 / 6 = 0.44). The
    # sliver (0.2, 0.2, 0.4, 0.4) holds no centre and is dropped.
    grid = [[1.0] * 3 + [0.0] * 3 if row < 2 else [0.0] * 6 for row in range(4)]
    boxes = [[[0.2, 0.2, 0.4, 0.4], [0.4, 0.4, 2.6, 1.6]]]
    result = BoxAccuracy(thresholds=[0.5])(maps_of(grid), boxes=boxes)
    assert_values(result.ious, [[1.0]])


def test_box_accuracy_with_masks_boxes_each_component() -> None:
    # Components: the diagonal (0, 0)-(1, 1), box (0, 0, 2, 2); and (3, 4), (3, 5), (4, 5),
    # box (4, 3, 6, 5). The map's region, rows 3-4 and columns 4-5, matches the second
    # exactly (the mask's overall box, (0, 0, 6, 5), would give an IoU of 4 / 30).
    mask = zeros_with(5, 7, y0x0=1.0, y1x1=1.0, y3x4=1.0, y3x5=1.0, y4x5=1.0)
    grid = zeros_with(5, 7, y3x4=1.0, y3x5=1.0, y4x4=1.0, y4x5=1.0)
    result = BoxAccuracy(thresholds=[0.5])(maps_of(grid), masks=maps_of(mask) > 0)
    assert_values(result.ious, [[1.0]])
    assert result.protocol["ground_truth"] == "masks"


def test_box_accuracy_undefined_rows_and_summary() -> None:
    flat = [[0.5] * 7 for _ in range(5)]
    maps = maps_of(TWO_REGIONS, flat, TWO_REGIONS)
    boxes: list[Any] = [[[3, 1, 6, 3]], [[3, 1, 6, 3]], torch.zeros(0, 4)]
    metric = BoxAccuracy(thresholds=[0.5, 0.7])
    with pytest.warns(UserWarning, match=r"BoxAccuracy: 2 of 3 examples are undefined"):
        result = metric(maps, boxes=boxes)
    assert result.undefined.tolist() == [False, True, True]
    assert_values(result.hits, [[1.0, 0.0], [NAN, NAN], [NAN, NAN]])
    assert bool(result.map_boxes[1:].isnan().all())
    assert_values(result.as_dict()["box_accuracy"], [[1.0, 0.0]])
    assert_values(result.accuracy, [1.0, 0.0])
    # A second batch: the object on A's box, hit at t = 0.7 only.
    second = metric(maps_of(TWO_REGIONS), boxes=[[[0, 0, 2, 2]]])
    summary = MetricSummary()
    summary.update(result)
    summary.update(second)
    curve = summary.compute()["box_accuracy"]
    assert curve.count == 2
    assert_values(curve.mean, [0.5, 0.5])
    thresholds = summary.protocols["box_accuracy"]["thresholds"]
    assert thresholds == [0.5, 0.7]
    assert best_threshold(curve.mean, thresholds) == BestThreshold(0.5, 0.5, 0)


def test_box_accuracy_of_a_batch_without_a_defined_example() -> None:
    with pytest.warns(UserWarning, match="1 of 1"):
        result = BoxAccuracy()(maps_of([[1.0, 1.0]]), boxes=[[[0, 0, 1, 1]]])
    best = result.best()
    assert math.isnan(best.threshold) and math.isnan(best.accuracy) and best.index == -1
    assert result.as_dict()["box_accuracy"].shape == (0, 100)


def test_box_accuracy_settings() -> None:
    metric = BoxAccuracy()
    assert metric.thresholds.dtype == torch.float64 and len(metric.thresholds) == 100
    assert metric.thresholds[0] == 0.0 and metric.thresholds[37] == 0.37
    assert metric.thresholds[-1] == 0.99
    assert metric.iou == 0.5
    assert metric.protocol == {"iou": 0.5, "thresholds": [k / 100 for k in range(100)]}
    assert repr(metric) == "BoxAccuracy(iou=0.5, thresholds=<100 from 0 to 0.99>)"
    assert BoxAccuracy.score_direction is ScoreDirection.HIGHER
    result = BoxAccuracy(1, torch.tensor([0.25, 1.0]))(maps_of(TWO_REGIONS), boxes=[[[0, 0, 1, 1]]])
    assert result.protocol == {"iou": 1.0, "thresholds": [0.25, 1.0], "ground_truth": "boxes"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.hits = result.ious  # type: ignore[misc]


@pytest.mark.parametrize(
    ("thresholds", "match"),
    [
        ([], "at least one"),
        ([[0.1, 0.2]], "1-D"),
        ([0.1, math.nan], "finite"),
        ([0.1, math.inf], "finite"),
        ([-0.1, 0.5], r"in \[0, 1\]"),
        ([0.5, 1.5], r"in \[0, 1\]"),
        ([0.2, 0.1], "strictly increasing"),
        ([0.1, 0.1], "strictly increasing"),
    ],
)
def test_box_accuracy_refuses_bad_thresholds(thresholds: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BoxAccuracy(thresholds=thresholds)


def test_box_accuracy_refuses_thresholds_that_are_not_numbers() -> None:
    with pytest.raises(TypeError, match="thresholds"):
        BoxAccuracy(thresholds="0.5")  # type: ignore[arg-type]


@pytest.mark.parametrize("iou", [0, 0.0, -0.1, 1.5, math.nan, True, "0.5", None])
def test_box_accuracy_refuses_bad_iou(iou: Any) -> None:
    with pytest.raises(ValueError, match=r"iou must be a number in \(0, 1\]"):
        BoxAccuracy(iou=iou)


def test_box_accuracy_refuses_negative_maps() -> None:
    with pytest.raises(ValueError, match="non-negative for BoxAccuracy"):
        BoxAccuracy()(maps_of([[1.0, -1.0]]), boxes=[[[0, 0, 1, 1]]])


def test_box_accuracy_largest_regions_match_scipy() -> None:
    """An independent labelling (SciPy's) of random maps, smooth and noisy, at several
    thresholds."""
    ndimage = pytest.importorskip("scipy.ndimage")
    import numpy as np

    generator = torch.Generator().manual_seed(0)
    thresholds = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]
    metric = BoxAccuracy(thresholds=thresholds)
    for trial in range(12):
        height, width = (int(v) for v in torch.randint(1, 30, (2,), generator=generator))
        maps = torch.rand(3, 1, height, width, generator=generator, dtype=torch.float64)
        if trial % 2:
            maps = torch.nn.functional.interpolate(
                maps[..., :3, :3], size=(height, width), mode="bilinear"
            )
        flat = maps.flatten(1)
        if bool((flat.amax(1) == flat.amin(1)).any()):
            continue
        result = metric(maps, boxes=[[[0, 0, 1, 1]]] * 3)
        for example in range(3):
            image = maps[example, 0].numpy()
            for step, threshold in enumerate(thresholds):
                labels, _ = ndimage.label(image >= threshold * image.max(), np.ones((3, 3)))
                sizes = np.bincount(labels.ravel())[1:]
                # SciPy numbers regions in row-major order of their first pixel.
                rows, columns = np.nonzero(labels == int(np.argmax(sizes)) + 1)
                expected = [columns.min(), rows.min(), columns.max() + 1, rows.max() + 1]
                assert result.map_boxes[example, step].tolist() == expected, (trial, example)


def test_best_threshold_by_hand() -> None:
    # The highest accuracy, 0.5, at 0.1 and 0.2: the first is taken.
    best = best_threshold(torch.tensor([0.2, 0.5, 0.5, 0.1]), [0.0, 0.1, 0.2, 0.3])
    assert best == BestThreshold(threshold=0.1, accuracy=0.5, index=1)
    assert best_threshold([0.7], torch.tensor([0.4], dtype=torch.float64)) == (0.4, 0.7, 0)


@pytest.mark.parametrize(
    ("accuracy", "thresholds", "match"),
    [
        ([0.5, NAN], [0.0, 0.1], "finite"),
        ([0.5, 0.2], [0.0], "one non-zero length"),
        ([], [], "one non-zero length"),
        ([[0.5]], [0.0], "1-D"),
    ],
)
def test_best_threshold_refuses(accuracy: Any, thresholds: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        best_threshold(accuracy, thresholds)


# --- Arguments shared by the three metrics ---------------------------------------------------

METRICS = [PointingGame(0), EnergyPointingGame(), BoxAccuracy()]
IDS = ["pointing", "energy", "box"]


@pytest.mark.parametrize(
    ("boxes", "match"),
    [
        ([[[3, 0, 3, 1]]], r"boxes\[0\]\[0\] is \[3.0, 0.0, 3.0, 1.0\]"),  # x2 = x1
        ([[[0, 0, 1, 1], [3, 0, 2, 1]]], r"boxes\[0\]\[1\] is \[3.0, 0.0, 2.0, 1.0\]"),  # x2 < x1
        ([[[0, 2, 1, 2]]], r"boxes\[0\]\[0\].*x1 < x2 and y1 < y2"),  # y2 = y1
        ([[[0, 2, 1, 1]]], r"boxes\[0\]\[0\].*y1 < y2"),  # y2 < y1
        ([[[0, 0, NAN, 1]]], r"boxes\[0\]\[0\] is \[0.0, 0.0, nan, 1.0\].*finite"),
        ([[[0, 0, math.inf, 1]]], r"boxes\[0\]\[0\].*finite"),
        ([[[-math.inf, 0, 1, 1]]], r"boxes\[0\]\[0\].*finite"),
        ([[0, 0, 1, 1]], r"boxes\[0\] must be K x 4.*got shape \(4,\)"),
        ([[[0, 0, 1, 1, 1]]], r"boxes\[0\] must be K x 4.*got shape \(1, 5\)"),
        ([torch.zeros(1, 2, 4)], r"boxes\[0\] must be K x 4"),
        ([[[0, 0, 1, 1]], [[0, 0, 1, 1]]], "one entry per map: 1 maps, got 2 entries"),
        ([], "one entry per map: 1 maps, got 0 entries"),
    ],
)
@pytest.mark.parametrize("metric", METRICS, ids=IDS)
def test_bad_boxes_are_refused(metric: Any, boxes: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        metric(maps_of(MASS), boxes=boxes)


@pytest.mark.parametrize("boxes", [torch.zeros(1, 1, 4), "box", [["a", "b", "c", "d"]], [{}]])
def test_boxes_that_are_not_numbers_are_refused(boxes: Any) -> None:
    with pytest.raises(TypeError, match="boxes"):
        PointingGame()(maps_of(MASS), boxes=boxes)


@pytest.mark.parametrize(
    ("masks", "match"),
    [
        (torch.full((1, 1, 4, 6), 0.5), "masks must be binary.*example 0 holds 0.5"),
        (torch.full((1, 1, 4, 6), 2), "masks must be binary.*holds 2"),
        (torch.full((1, 1, 4, 6), NAN), "masks must be binary"),
        (torch.zeros(1, 1, 6, 4, dtype=torch.bool), r"like the attributions, \(1, 1, 4, 6\)"),
        (torch.zeros(2, 1, 4, 6, dtype=torch.bool), r"got \(2, 1, 4, 6\)"),
        (torch.zeros(1, 4, 6, dtype=torch.bool), r"got \(1, 4, 6\)"),
    ],
)
@pytest.mark.parametrize("metric", METRICS, ids=IDS)
def test_bad_masks_are_refused(metric: Any, masks: Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        metric(maps_of(MASS), masks=masks)


def test_masks_that_are_not_arrays_are_refused() -> None:
    with pytest.raises(TypeError, match="masks must be an N x 1 x H x W tensor"):
        PointingGame()(maps_of(MASS), masks=object())


@pytest.mark.parametrize("metric", METRICS, ids=IDS)
def test_exactly_one_ground_truth(metric: Any) -> None:
    with pytest.raises(TypeError, match="exactly one of them"):
        metric(maps_of(MASS))
    with pytest.raises(TypeError, match="exactly one of them"):
        metric(maps_of(MASS), boxes=[[[0, 0, 1, 1]]], masks=torch.ones(1, 1, 4, 6))
    with pytest.raises(TypeError):
        metric(maps_of(MASS), [[[0, 0, 1, 1]]])  # keyword only


@pytest.mark.parametrize(
    ("attributions", "error", "match"),
    [
        (torch.ones(1, 4, 6), ValueError, r"N x 1 x H x W.*attributions\[:, None\]"),
        (torch.ones(1, 3, 4, 6), ValueError, "reduce the channels to one"),
        (torch.ones(4, 6), ValueError, "N x 1 x H x W"),
        (torch.ones(0, 1, 4, 6), ValueError, "at least one pixel"),
        (maps_of([[1.0, NAN]]), ValueError, r"finite; example\(s\) \[0\]"),
        (maps_of([[1.0, math.inf]]), ValueError, "finite"),
        (torch.ones(1, 1, 4, 6, dtype=torch.long), TypeError, "float tensor"),
        ([[[[1.0]]]], TypeError, "torch.Tensor"),
        ((torch.ones(1, 1, 4, 6), torch.ones(1, 1, 4, 6)), TypeError, "1-tuple"),
    ],
)
@pytest.mark.parametrize("metric", METRICS, ids=IDS)
def test_bad_attributions_are_refused(
    metric: Any, attributions: Any, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        metric(attributions, boxes=[[[0, 0, 1, 1]]])


def test_captum_tuple_form_and_float32() -> None:
    maps = maps_of(MASS).float()
    result = EnergyPointingGame()((maps,), boxes=[[[0, 0, 3, 2]]])
    assert result.values.dtype == torch.float32
    assert_values(result.values, [0.5])


def test_half_precision_maps_give_float32_values() -> None:
    # Columns 290 to 299 of a 300-pixel-wide map: bfloat16 would round 299 + 1 to 300 and 290
    # to 290, but 291 to 292; the boxes come in float32.
    maps = torch.zeros(1, 1, 2, 300, dtype=torch.bfloat16)
    maps[0, 0, 1, 291:300] = 1.0
    result = BoxAccuracy(thresholds=[0.5])(maps, boxes=[[[291, 1, 300, 2]]])
    assert result.map_boxes.dtype == torch.float32
    assert result.map_boxes.tolist() == [[[291.0, 1.0, 300.0, 2.0]]]
    assert_values(result.hits, [[1.0]])
    energy = EnergyPointingGame()(maps, boxes=[[[291, 1, 295, 2]]])
    assert energy.values.dtype == torch.float32
    assert_values(energy.values, [4 / 9])


def test_every_result_goes_into_a_summary_and_protocols_do_not_mix() -> None:
    # The third example's map is constant: undefined for the three metrics, and left out.
    flat = [[1.0] * 6 for _ in range(4)]
    maps = maps_of(PEAK_Y1_X4, MASS, flat)
    boxes = [[[4, 1, 5, 2]], [[0, 0, 3, 2]], [[0, 0, 3, 2]]]
    summary = MetricSummary()
    with pytest.warns(UserWarning, match=r"1 of 3 examples are undefined"):
        summary.update(PointingGame(0)(maps, boxes=boxes))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a flat positive map has an energy: its area
        summary.update(EnergyPointingGame()(maps, boxes=boxes))
    with pytest.warns(UserWarning, match=r"1 of 3 examples are undefined"):
        summary.update(BoxAccuracy(thresholds=[0.5])(maps, boxes=boxes))
    statistics = summary.compute()
    # PEAK_Y1_X4 points into its box; MASS peaks at (3, 5), outside its box.
    assert statistics["pointing_game"].mean == 0.5 and statistics["pointing_game"].count == 2
    assert statistics["energy_pointing_game"].count == 3
    # 2 of PEAK_Y1_X4's 3 in its box, 5 of MASS's 10, 6 of the flat map's 24 pixels.
    assert statistics["energy_pointing_game"].mean == pytest.approx((2 / 3 + 0.5 + 0.25) / 3)
    assert statistics["energy_pointing_game"].direction is ScoreDirection.HIGHER
    assert statistics["box_accuracy"].count == 2
    with pytest.raises(ValueError, match=r"tolerance \(0 then 15\)"):
        summary.update(PointingGame()(maps[:2], boxes=boxes[:2]))
    masks = torch.ones(2, 1, 4, 6, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"ground_truth \('boxes' then 'masks'\)"):
        summary.update(EnergyPointingGame()(maps[:2], masks=masks))
    with pytest.raises(ValueError, match="thresholds"):
        summary.update(BoxAccuracy(thresholds=[0.4])(maps[:2], boxes=boxes[:2]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_on_cuda() -> None:
    device = torch.device("cuda")
    maps = maps_of(TWO_REGIONS, TWO_REGIONS).float().to(device)
    boxes = [torch.tensor([[3.0, 1.0, 6.0, 3.0]]), [[0, 0, 2, 2]]]  # on the CPU
    box = BoxAccuracy(thresholds=[0.5, 0.7])(maps, boxes=boxes)
    assert box.hits.device.type == "cuda"
    assert_values(box.hits, [[1.0, 0.0], [0.0, 1.0]])
    pointing = PointingGame(0)(maps, boxes=boxes)
    assert_values(pointing.values, [0.0, 1.0])
    assert pointing.points.tolist() == [[0, 0], [0, 0]]
    masks = maps_of(zeros_with(5, 7, y1x3=1.0), zeros_with(5, 7, y0x0=1.0, y1x0=1.0))
    energy = EnergyPointingGame()(maps, masks=masks > 0)  # masks on the CPU
    assert_values(energy.values, [0.6 / 6, 2 / 6])
    cpu = BoxAccuracy()(maps.cpu(), boxes=boxes)
    gpu = BoxAccuracy()(maps, boxes=boxes)
    torch.testing.assert_close(gpu.hits.cpu(), cpu.hits)
    torch.testing.assert_close(gpu.map_boxes.cpu(), cpu.map_boxes)


# --- Signals and volumes ---------------------------------------------------------------------


def volume_with(depth: int, height: int, width: int, **voxels: float) -> Tensor:
    """A 1 x 1 x D x H x W float64 map of zeros with ``z{slice}y{row}x{column}=value`` voxels."""
    volume = torch.zeros(1, 1, depth, height, width, dtype=torch.float64)
    for name, value in voxels.items():
        z, rest = name[1:].split("y")
        y, x = rest.split("x")
        volume[0, 0, int(z), int(y), int(x)] = value
    return volume


# 3 slices x 4 rows x 5 columns, the maximum at slice 2, row 1, column 3 (x = 3, y = 1, z = 2).
PEAK_Z2_Y1_X3 = volume_with(3, 4, 5, z2y1x3=2.0, z0y3x0=1.0)


@pytest.mark.parametrize(
    ("box", "tolerance", "hit"),
    [
        ([3, 1, 2, 4, 2, 3], 0, 1.0),  # exactly the maximal voxel: x, y, z then x, y, z
        ([2, 1, 3, 3, 2, 4], 0, NAN),  # x and z swapped: past the last slice, no voxel
        ([3, 1, 1, 4, 2, 2], 0, 0.0),  # the voxel one slice before
        ([3, 1, 1, 4, 2, 2], 1, 1.0),  # ... one voxel away
        ([3.5, 1.5, 2.5, 3.6, 1.6, 2.6], 0, 1.0),  # a sliver holding the voxel's centre
        ([0, 0, 0, 5, 4, 2.4], 0, 0.0),  # every row and column of slices 0 and 1
        ([0, 0, 0, 5, 4, 2.5], 0, 1.0),  # ... and slice 2, whose centre is at z = 2.5
    ],
)
def test_pointing_game_in_a_volume_by_hand(box: list[float], tolerance: int, hit: float) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = PointingGame(tolerance)(PEAK_Z2_Y1_X3, boxes=[[box]])
    assert_values(result.values, [hit])
    assert result.points.tolist() == [[3, 1, 2]]


@pytest.mark.parametrize(("tolerance", "hit"), [(0, 0.0), (2, 0.0), (3, 1.0)])
def test_pointing_game_distance_in_a_volume(tolerance: int, hit: float) -> None:
    # The object is voxel (z 0, y 3, x 3): sqrt(2^2 + 2^2 + 0^2) = 2.83 voxels from the peak.
    masks = volume_with(3, 4, 5, z0y3x3=1.0) > 0
    result = PointingGame(tolerance)(PEAK_Z2_Y1_X3, masks=masks)
    assert_values(result.values, [hit])


def test_pointing_game_ties_in_a_volume_point_at_the_first_slice() -> None:
    # Maxima at (z 1, y 0, x 0) and (z 0, y 3, x 4): row-major order takes slice 0 first.
    volume = volume_with(2, 4, 5, z1y0x0=3.0, z0y3x4=3.0)
    result = PointingGame(0)(volume, boxes=[[[0, 0, 1, 1, 1, 2]]])
    assert result.points.tolist() == [[4, 3, 0]]
    assert_values(result.values, [0.0])


# 2 x 2 x 2 voxels: slice 0 holds 3, 8 / 1, 6 and slice 1 holds 5, 2 / 7, 4 (total 36).
MASS_VOLUME = torch.tensor([[[3.0, 8.0], [1.0, 6.0]], [[5.0, 2.0], [7.0, 4.0]]])[None, None]


@pytest.mark.parametrize(
    ("box", "mask", "energy"),
    [
        ([0, 0, 0, 2, 2, 1], [[[1, 1], [1, 1]], [[0, 0], [0, 0]]], 18 / 36),  # slice 0
        ([1, 0, 0, 2, 2, 2], [[[0, 1], [0, 1]], [[0, 1], [0, 1]]], 20 / 36),  # column 1
        ([0, 1, 1, 1, 2, 2], [[[0, 0], [0, 0]], [[0, 0], [1, 0]]], 7 / 36),  # one voxel
    ],
)
def test_energy_in_a_volume_by_hand(box: list[float], mask: list[Any], energy: float) -> None:
    from_box = EnergyPointingGame()(MASS_VOLUME, boxes=[[box]])
    from_mask = EnergyPointingGame()(MASS_VOLUME, masks=torch.tensor(mask)[None, None])
    assert_values(from_box.values, [energy])
    assert_values(from_mask.values, [energy])


def test_box_accuracy_in_a_volume_with_two_blobs_by_hand() -> None:
    # Blob A: the 8 voxels of slices 0-1, rows 0-1, columns 0-1, at 1. Blob B: the one voxel
    # (z 3, y 4, x 5) at 2. At t = 0 the whole 4 x 5 x 6 frame is foreground, at t = 0.4 (0.8
    # and up) both blobs and A is the larger, at t = 0.6 (1.2 and up) B alone.
    volume = torch.zeros(1, 1, 4, 5, 6, dtype=torch.float64)
    volume[0, 0, :2, :2, :2] = 1.0
    volume[0, 0, 3, 4, 5] = 2.0
    result = BoxAccuracy(thresholds=[0.0, 0.4, 0.6])(volume, boxes=[[[0, 0, 0, 2, 2, 2]]])
    assert result.map_boxes.tolist() == [
        [[0, 0, 0, 6, 5, 4], [0, 0, 0, 2, 2, 2], [5, 4, 3, 6, 5, 4]]
    ]
    assert_values(result.ious, [[8 / 120, 1.0, 0.0]])
    assert_values(result.hits, [[0.0, 1.0, 0.0]])
    assert result.best() == BestThreshold(threshold=0.4, accuracy=1.0, index=1)
    # Blob B's box as the object, given as a mask of its one voxel: hit at t = 0.6 only.
    masks = volume == 2.0
    by_mask = BoxAccuracy(thresholds=[0.0, 0.4, 0.6])(volume, masks=masks)
    assert_values(by_mask.ious, [[1 / 120, 0.0, 1.0]])


def test_box_accuracy_regions_of_voxels_touching_by_a_corner_are_one() -> None:
    # Voxels (0, 0, 0), (1, 1, 1), (2, 2, 2) touch by their corners: one region of 3 under
    # 26-connectivity (three regions of 1 under 6-connectivity), larger than the 2 face
    # neighbours (z 3, y 0, x 3) and (z 3, y 0, x 4), two rows away from (2, 2, 2).
    volume = volume_with(4, 4, 5, z0y0x0=1.0, z1y1x1=1.0, z2y2x2=1.0, z3y0x3=1.0, z3y0x4=1.0)
    result = BoxAccuracy(thresholds=[0.5])(volume, boxes=[[[0, 0, 0, 3, 3, 3]]])
    assert result.map_boxes.tolist() == [[[0, 0, 0, 3, 3, 3]]]
    assert_values(result.hits, [[1.0]])
    # Touching by an edge: (0, 0, 0) and (0, 1, 1); by a face: (1, 1, 1) below (0, 1, 1).
    edge = volume_with(2, 3, 3, z0y0x0=1.0, z0y1x1=1.0, z1y1x1=1.0)
    found = BoxAccuracy(thresholds=[0.5])(edge, boxes=[[[0, 0, 0, 1, 1, 1]]]).map_boxes
    assert found.tolist() == [[[0, 0, 0, 2, 2, 2]]]


def test_volume_mask_components_are_26_connected_boxes() -> None:
    # The mask: a corner-linked pair (z 0, y 0, x 0) - (z 1, y 1, x 1), one component whose
    # box is (0, 0, 0, 2, 2, 2), and the voxel (z 3, y 3, x 4) alone. The map's region at
    # t = 0.5 is that voxel: IoU 1 with the second component, 1/8 at most with the first.
    masks = volume_with(4, 4, 5, z0y0x0=1.0, z1y1x1=1.0, z3y3x4=1.0) > 0
    volume = volume_with(4, 4, 5, z3y3x4=1.0)
    result = BoxAccuracy(thresholds=[0.5])(volume, masks=masks)
    assert_values(result.ious, [[1.0]])
    # The pair as the map: its box is the first component's.
    pair = volume_with(4, 4, 5, z0y0x0=1.0, z1y1x1=1.0)
    assert_values(BoxAccuracy(thresholds=[0.5])(pair, masks=masks).ious, [[1.0]])


def test_box_accuracy_in_volumes_matches_scipy_labelling() -> None:
    # SciPy (a test extra only) labels 26-connected regions with a 3 x 3 x 3 structure.
    ndimage = pytest.importorskip("scipy.ndimage")
    import numpy as np

    generator = torch.Generator().manual_seed(1)
    thresholds = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    metric = BoxAccuracy(thresholds=thresholds)
    for trial in range(10):
        depth, height, width = (int(v) for v in torch.randint(1, 9, (3,), generator=generator))
        maps = torch.rand(2, 1, depth, height, width, generator=generator, dtype=torch.float64)
        if trial % 2:
            coarse = maps[..., :3, :3, :3]
            maps = torch.nn.functional.interpolate(
                coarse, size=(depth, height, width), mode="trilinear"
            )
        flat = maps.flatten(1)
        if bool((flat.amax(1) == flat.amin(1)).any()):
            continue
        result = metric(maps, boxes=[[[0, 0, 0, 1, 1, 1]]] * 2)
        for example in range(2):
            volume = maps[example, 0].numpy()
            for step, threshold in enumerate(thresholds):
                foreground = volume >= threshold * volume.max()
                labels, _ = ndimage.label(foreground, np.ones((3, 3, 3)))
                sizes = np.bincount(labels.ravel())[1:]
                # SciPy numbers regions in row-major order of their first voxel.
                z, y, x = np.nonzero(labels == int(np.argmax(sizes)) + 1)
                expected = [x.min(), y.min(), z.min(), x.max() + 1, y.max() + 1, z.max() + 1]
                assert result.map_boxes[example, step].tolist() == expected, (trial, example)
        # The masks' components, against SciPy's.
        masks = maps > 0.5
        boxes, valid = localisation._component_boxes(masks[:, 0])
        for example in range(2):
            labels, found = ndimage.label(masks[example, 0].numpy(), np.ones((3, 3, 3)))
            expected = sorted(
                [s[2].start, s[1].start, s[0].start, s[2].stop, s[1].stop, s[0].stop]
                for s in ndimage.find_objects(labels)
            )
            assert sorted(boxes[example][valid[example]].tolist()) == expected
            assert int(valid[example].sum()) == found


def test_signals_by_hand() -> None:
    # 8 samples: a run of 3 at 0.6 (samples 1-3), a run of 1 at 1.0 (sample 6).
    signal = torch.tensor([0.0, 0.6, 0.6, 0.6, 0.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    maps = signal[None, None]
    pointing = PointingGame(0)(maps, boxes=[[[6, 7]]])
    assert pointing.points.tolist() == [[6]]
    assert_values(pointing.values, [1.0])
    assert_values(PointingGame(1)(maps, boxes=[[[4, 5.5]]]).values, [1.0])  # samples 4, 5
    assert_values(PointingGame(0)(maps, boxes=[[[4, 5.5]]]).values, [0.0])
    # The mass in samples 1-3: 1.8 of 2.8.
    assert_values(EnergyPointingGame()(maps, boxes=[[[1, 4]]]).values, [1.8 / 2.8])
    assert_values(EnergyPointingGame()(maps, masks=(maps == 0.6)).values, [1.8 / 2.8])
    # t = 0.5: the runs 1-3 and 6, the longer kept; t = 0.7: sample 6 alone.
    result = BoxAccuracy(thresholds=[0.5, 0.7])(maps, boxes=[[[1, 4]]])
    assert result.map_boxes.tolist() == [[[1, 4], [6, 7]]]
    assert_values(result.ious, [[1.0, 0.0]])


@pytest.mark.parametrize(
    ("maps", "boxes", "match"),
    [
        (PEAK_Z2_Y1_X3, [[[0, 0, 1, 1]]], r"boxes\[0\] must be K x 6, one box x1, y1, z1, x2, "),
        (PEAK_Z2_Y1_X3, [[[0, 0, 1, 1]]], r"for N x 1 x D x H x W maps; got shape \(1, 4\)"),
        (PEAK_Z2_Y1_X3, [[[0, 0, 2, 1, 1, 2]]], r"x1 < x2, y1 < y2 and z1 < z2"),
        (torch.ones(1, 1, 5), [[[0, 0, 1, 1]]], r"boxes\[0\] must be K x 2, one box x1, x2 a row"),
        (torch.ones(1, 1, 5), [[[3, 1]]], r"boxes\[0\]\[0\] is \[3.0, 1.0\].*with x1 < x2$"),
    ],
)
def test_boxes_of_another_width_than_the_maps_are_refused(
    maps: Tensor, boxes: Any, match: str
) -> None:
    for metric in (PointingGame(), EnergyPointingGame(), BoxAccuracy()):
        with pytest.raises(ValueError, match=match):
            metric(maps, boxes=boxes)


def test_volume_masks_need_the_channel_axis() -> None:
    masks = torch.zeros(1, 3, 4, 5, dtype=torch.bool)
    with pytest.raises(
        ValueError,
        match=r"masks must be N x 1 x D x H x W like the attributions, \(1, 1, 3, 4, 5\); got "
        r"\(1, 3, 4, 5\) \(add the channel axis: masks\[:, None\]\)",
    ):
        PointingGame()(PEAK_Z2_Y1_X3, masks=masks)
    with pytest.raises(TypeError, match=r"K x 6 boxes x1, y1, z1, x2, y2, z2.*N x 1 x D x H x W"):
        PointingGame()(PEAK_Z2_Y1_X3)


@pytest.mark.parametrize(
    ("attributions", "match"),
    [
        (torch.ones(1, 2, 3, 4, 5), "reduce the channels to one"),
        (torch.ones(1, 3, 4, 5), r"reduce the channels.*or add the channel dimension"),
        (torch.ones(1, 1, 1, 2, 3, 4), r"N x 1 x D x H x W for volumes or N x 1 x L for signals"),
    ],
)
def test_bad_volume_maps_are_refused(attributions: Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PointingGame()(attributions, boxes=[[[0, 0, 0, 1, 1, 1]]])


def test_an_image_as_a_volume_of_one_slice_gives_the_images_values() -> None:
    maps = maps_of(PEAK_Y1_X4, MASS)
    boxes = [[[4, 1, 5, 2]], [[0, 0, 3, 2]]]
    volume_boxes = [[[x1, y1, 0, x2, y2, 1] for x1, y1, x2, y2 in entry] for entry in boxes]
    pointing = PointingGame(1)(maps, boxes=boxes)
    lifted = PointingGame(1)(maps[:, :, None], boxes=volume_boxes)
    assert lifted.values.equal(pointing.values)
    assert lifted.points.tolist() == [[x, y, 0] for x, y in pointing.points.tolist()]
    energy = EnergyPointingGame()(maps, boxes=boxes)
    assert EnergyPointingGame()(maps[:, :, None], boxes=volume_boxes).values.equal(energy.values)
    thresholds = [0.0, 0.3, 0.6, 0.9]
    image = BoxAccuracy(thresholds=thresholds)(maps, boxes=boxes)
    volume = BoxAccuracy(thresholds=thresholds)(maps[:, :, None], boxes=volume_boxes)
    assert volume.hits.equal(image.hits) and volume.ious.equal(image.ious)
    assert volume.map_boxes[..., [0, 1, 3, 4]].equal(image.map_boxes)
