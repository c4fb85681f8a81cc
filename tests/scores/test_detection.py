"""DetectionBoxScore on hand-made detector outputs: IoU and label matching, several targets."""

from __future__ import annotations

import pytest
import torch

from captum_polycam import DetectionBoxScore, PolyCam
from captum_polycam.testing import KnownAnswerDetector


def _found(boxes: list[list[float]], labels: list[int], scores: list[float]) -> dict:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "scores": torch.tensor(scores, dtype=torch.float32),
    }


# Target 0: a 10 x 10 box of label 1; target 1: a 10 x 10 box of label 2, elsewhere.
TARGETS = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
LABELS = [1, 2]


def test_highest_confidence_of_matching_boxes() -> None:
    found = _found(
        [
            [0, 0, 10, 10],  # IoU 1 with target 0, label 1: matches, 0.6
            [0, 0, 10, 8],  # IoU 0.8, label 1: matches, 0.9 (the highest)
            [0, 0, 10, 4],  # IoU 0.4 < 0.5: no match despite 0.99
            [0, 0, 10, 10],  # label 3: no match
            [20, 20, 30, 30],  # IoU 1 with target 1 but label 1: no match
        ],
        [1, 1, 1, 3, 1],
        [0.6, 0.9, 0.99, 0.95, 0.7],
    )
    scores = DetectionBoxScore(TARGETS, LABELS)([found])
    torch.testing.assert_close(scores, torch.tensor([[0.9, 0.0]]))


def test_iou_threshold_is_inclusive() -> None:
    found = _found([[0, 0, 10, 5]], [1], [0.7])  # IoU exactly 0.5
    assert DetectionBoxScore(TARGETS, LABELS, iou_threshold=0.5)([found])[0, 0] == 0.7
    assert DetectionBoxScore(TARGETS, LABELS, iou_threshold=0.51)([found])[0, 0] == 0.0


def test_iou_times_confidence() -> None:
    found = _found([[0, 0, 10, 10], [0, 0, 10, 8]], [1, 1], [0.6, 0.9])
    score = DetectionBoxScore(TARGETS, LABELS, combine="iou_confidence")
    # max(1.0 * 0.6, 0.8 * 0.9) = 0.72
    torch.testing.assert_close(score([found]), torch.tensor([[0.72, 0.0]]))


def test_every_input_against_every_target() -> None:
    first = _found([[0, 0, 10, 10]], [1], [0.8])
    second = _found([[20, 20, 30, 31]], [2], [0.5])  # IoU 100 / 110 with target 1
    nothing = _found([], [], [])
    scores = DetectionBoxScore(TARGETS, LABELS)([first, second, nothing])
    torch.testing.assert_close(scores, torch.tensor([[0.8, 0.0], [0.0, 0.5], [0.0, 0.0]]))


def test_from_detections_keeps_the_confident_ones() -> None:
    found = _found([[0, 0, 10, 10], [20, 20, 30, 30], [5, 5, 9, 9]], [1, 2, 3], [0.9, 0.5, 0.2])
    score = DetectionBoxScore.from_detections(found, score_threshold=0.5)
    assert score.labels.tolist() == [1, 2]
    torch.testing.assert_close(score.boxes, TARGETS)
    assert score.targets.tolist() == [0, 1]


@pytest.mark.parametrize(
    ("found_box", "iou_threshold", "expected"),
    [
        ([50, 50, 60, 60], 0.0, 0.0),  # disjoint: IoU 0 is no overlap, even at threshold 0
        ([10, 0, 20, 10], 0.0, 0.0),  # sharing an edge only: IoU 0
        ([9, 0, 19, 10], 0.0, 0.9),  # IoU 10 / 190 > 0
        ([9, 0, 19, 10], 10 / 190, 0.9),  # IoU exactly the threshold
        ([9, 0, 19, 10], 0.06, 0.0),  # IoU 0.0526 below it
    ],
)
def test_iou_threshold_rule(found_box: list[float], iou_threshold: float, expected: float) -> None:
    found = _found([found_box], [1], [0.9])
    score = DetectionBoxScore(TARGETS, LABELS, iou_threshold=iou_threshold)
    torch.testing.assert_close(score([found]), torch.tensor([[expected, 0.0]]))


NO_BOX_MESSAGE = (
    "boxes: this DetectionBoxScore holds no target box ((0, 4)), so there is nothing to score; "
    "check len(score) before explaining (from_detections keeps no box when none reaches "
    "score_threshold)"
)


def test_no_target_box_is_built_but_refuses_to_score() -> None:
    # [] becomes a float32 tensor: zero boxes take an empty list of labels all the same.
    score = DetectionBoxScore(torch.zeros(0, 4), [])
    assert len(score) == 0 and score.labels.dtype == torch.int64 and score.targets.tolist() == []
    found = _found([[0, 0, 10, 10]], [1], [0.8])
    with pytest.raises(ValueError) as raised:
        score([found, _found([], [], [])])
    assert str(raised.value) == NO_BOX_MESSAGE


@pytest.mark.parametrize("target", [None, 0])
def test_no_target_box_as_a_poly_cam_score_is_refused(target: int | None) -> None:
    # It used to end in IndexError from the top-1 choice (argmax over no column).
    detector = KnownAnswerDetector([(8, 8, 24, 24)]).eval()
    score = DetectionBoxScore(torch.zeros(0, 4), [])
    polycam = PolyCam(detector, ["fine", "coarse"], score_fn=score)
    with pytest.raises(ValueError) as raised:
        polycam.attribute(torch.rand(2, 3, 32, 32), target=target)
    assert str(raised.value) == NO_BOX_MESSAGE


def test_detections_without_none_reaching_the_threshold_hold_no_box() -> None:
    found = _found([[0, 0, 10, 10]], [1], [0.4])
    assert len(DetectionBoxScore.from_detections(found, score_threshold=0.5)) == 0


@pytest.mark.parametrize(
    ("keys", "missing"),
    [(("boxes", "scores"), "'labels'"), (("boxes",), "'labels', 'scores'"), ((), "'boxes'")],
)
def test_detections_without_a_key_are_named(keys: tuple[str, ...], missing: str) -> None:
    found = _found([[0, 0, 10, 10]], [1], [0.9])
    partial = {key: found[key] for key in keys}
    with pytest.raises(ValueError) as raised:
        DetectionBoxScore.from_detections(partial)
    missing = missing if keys else "'boxes', 'labels', 'scores'"
    assert str(raised.value) == (
        "detections must hold 'boxes' (P, 4), 'labels' (P,) and 'scores' (P,), as a "
        f"torchvision detector's output dict in eval mode; missing {missing} (has {sorted(keys)})"
    )


def test_an_output_without_scores_is_named() -> None:
    found = _found([[0, 0, 10, 10]], [1], [0.9])
    without_scores = {"boxes": found["boxes"], "labels": found["labels"]}
    with pytest.raises(ValueError) as raised:
        DetectionBoxScore(TARGETS, LABELS)([found, without_scores])
    assert str(raised.value) == (
        "output[1] must hold 'boxes' (P, 4), 'labels' (P,) and 'scores' (P,), as a torchvision "
        "detector's output dict in eval mode; missing 'scores' (has ['boxes', 'labels'])"
    )


BOX = torch.tensor([[0.0, 0.0, 10.0, 10.0]])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"boxes": torch.zeros(2, 3), "labels": [1, 2]}, r"boxes must be a \(T, 4\) tensor"),
        ({"boxes": [[0, 0, 1, 1]], "labels": [1]}, r"boxes must be a \(T, 4\) tensor"),
        ({"boxes": [], "labels": []}, r"boxes must be a \(T, 4\) tensor .*; got list"),
        # x, y, width, height by mistake: x2 = 5 < x1 = 10.
        (
            {"boxes": torch.tensor([[10.0, 10, 5, 20]]), "labels": [1]},
            r"boxes must be x1, y1, x2, y2 with x1 < x2 and y1 < y2 .*; box 0 is "
            r"\(10\.0, 10\.0, 5\.0, 20\.0\)",
        ),
        (
            {"boxes": torch.tensor([[0.0, 0, 10, 10], [0, 5, 10, 5]]), "labels": [1, 2]},
            r"boxes must be x1, y1, x2, y2 with x1 < x2 and y1 < y2 .*; box 1 is",
        ),
        (
            {"boxes": torch.tensor([[0.0, 0, float("nan"), 10]]), "labels": [1]},
            r"boxes must be x1, y1, x2, y2 .* finite; box 0 is \(0\.0, 0\.0, nan, 10\.0\)",
        ),
        ({"boxes": torch.tensor([[0.0, 0, float("inf"), 10]]), "labels": [1]}, "boxes must be"),
        (
            {"boxes": BOX.repeat(2, 1), "labels": [1]},
            r"labels must be 2 integer class labels, one per box; got \[1\]",
        ),
        ({"boxes": BOX, "labels": [1.5]}, r"labels must be 1 integer class labels"),
        (
            {"boxes": BOX, "labels": ["cat"]},
            r"labels must be 1 integer class labels, one per box; got \['cat'\]",
        ),
        ({"boxes": BOX, "labels": [True]}, r"labels must be 1 integer class labels"),
        (
            {"boxes": BOX, "labels": [1], "iou_threshold": 1.5},
            r"iou_threshold must be a number in \[0, 1\]; got 1\.5",
        ),
        (
            {"boxes": BOX, "labels": [1], "iou_threshold": "0.5"},
            r"iou_threshold must be a number in \[0, 1\]; got '0\.5'",
        ),
        (
            {"boxes": BOX, "labels": [1], "iou_threshold": True},
            r"iou_threshold must be a number in \[0, 1\]; got True",
        ),
        ({"boxes": BOX, "labels": [1], "iou_threshold": float("nan")}, "iou_threshold must be"),
        ({"boxes": BOX, "labels": [1], "combine": "sum"}, "combine must be one of"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DetectionBoxScore(**kwargs)


def test_from_detections_names_a_bad_score_threshold() -> None:
    found = _found([[0, 0, 10, 10]], [1], [0.9])
    with pytest.raises(
        ValueError, match=r"score_threshold must be a number in \[0, 1\]; got '0.5'"
    ):
        DetectionBoxScore.from_detections(found, score_threshold="0.5")  # type: ignore[arg-type]


def test_a_tensor_output_is_refused_with_an_explanation() -> None:
    with pytest.raises(TypeError, match="list of dicts"):
        DetectionBoxScore(TARGETS, LABELS)(torch.zeros(2, 5))
