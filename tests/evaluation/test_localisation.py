"""``evaluate`` with ground truth: the localisation values per image, in the summary, on the page,
and every fault of the ground truth refused before the run claims its folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from captum_polycam.evaluation import EvaluationConfig, evaluate
from captum_polycam.evaluation.methods import centre_prior
from captum_polycam.evaluation.report import PRIOR_ROW
from captum_polycam.metrics import BoxAccuracy, EnergyPointingGame, PointingGame
from captum_polycam.resources import EvaluationError, Preprocessing
from tests.conftest import random_photos, read_csv
from tests.evaluation.tiny_models import tiny_classifier

SMALL = Preprocessing(size=(32, 32))
# Photo i is 40 wide and 30 + 10 i high; boxes in its own pixels.
NAMES = ("a.png", "b.png", "c.png", "d.png")
BOXES = (
    "image,x1,y1,x2,y2\n"
    "a.png,4,3,20,15\n"  # squashed 40 x 30 -> 32 x 32: (3.2, 3.2, 16, 16)
    "a.png,30,0,40,30\n"  # touches the right edge: (24, 0, 32, 32)
    "b.png,10,20,30,40\n"  # 40 x 40: (8, 16, 24, 32)
    "c.png,0,45,40,60\n"  # 40 x 50 -> (0, 28.8, 32, 38.4), cut by the frame to (0, 28.8, 32, 32)
    "c.png,0,52,40,60\n"  # below the frame: no area left in it, dropped and counted
)  # d.png has none: it is left out and counted, never a miss
EXPECTED = {
    "a.png": [[3.2, 3.2, 16.0, 16.0], [24.0, 0.0, 32.0, 32.0]],
    "b.png": [[8.0, 16.0, 24.0, 32.0]],
    "c.png": [[0.0, 28.8, 32.0, 32.0]],
    "d.png": [],
}


def _config(boxes: Path, **changes: object) -> EvaluationConfig:
    settings: dict[str, object] = {
        "model": "tiny",
        "methods": ("pcam+", "random"),
        "n_steps": 8,
        "batch_size": 3,
        "preprocessing": SMALL,
        "boxes": boxes,
    }
    settings.update(changes)
    return EvaluationConfig(**settings)  # type: ignore[arg-type]


def _run(photos: Path, out: Path, boxes: Path, **changes: object) -> None:
    evaluate(photos, out, _config(boxes, **changes), model=tiny_classifier(), num_workers=0)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_photos(
        tmp_path_factory.mktemp("photos"), NAMES, width=40, first_height=30, growth=10
    )


@pytest.fixture(scope="module")
def boxes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("truth") / "boxes.csv"
    path.write_text(BOXES)
    return path


@pytest.fixture(scope="module")
def finished(photos: Path, boxes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "out"
    _run(photos, out, boxes)
    return out


def _value(text: str) -> float:
    return math.nan if text == "" else float(text)


def test_boxes_follow_the_squash_into_the_input_frame(finished: Path) -> None:
    rows = {row["image"]: row for row in read_csv(finished / "csv" / "ground_truth_tiny.csv")}
    assert list(rows) == list(NAMES)
    for name, expected in EXPECTED.items():
        boxes = [
            [float(v) for v in box.split()] for box in rows[name]["x1 y1 x2 y2"].split(";") if box
        ]
        assert np.allclose(boxes, expected, atol=1e-4) if expected else boxes == []
        assert int(rows[name]["boxes"]) == len(expected)
    assert rows["d.png"]["excluded"] == "no ground truth in the file"
    assert [int(rows[name]["dropped"]) for name in NAMES] == [0, 0, 1, 0]
    assert all(rows[name]["excluded"] == "" for name in ("a.png", "b.png", "c.png"))


def test_scores_are_the_metrics_on_the_saved_maps_and_carried_boxes(finished: Path) -> None:
    for method in ("pcam+", "random"):
        maps = np.load(finished / "npz" / f"tiny_{method}.npz")
        rows = {r["image"]: r for r in read_csv(finished / "csv" / f"scores_tiny_{method}.csv")}
        hits = []
        for name in ("a.png", "b.png", "c.png"):
            image_map = torch.from_numpy(maps[name])[None, None]
            boxes = [torch.tensor(EXPECTED[name])]
            pointing = PointingGame()(image_map, boxes=boxes).values
            energy = EnergyPointingGame()(image_map, boxes=boxes).values
            assert _value(rows[name]["pointing_game"]) == pytest.approx(float(pointing[0]))
            assert _value(rows[name]["energy_pointing_game"]) == pytest.approx(
                float(energy[0]), abs=1e-6
            )
            hits.append(BoxAccuracy()(image_map, boxes=boxes).hits[0].float())
        # The box accuracy per image is its hit at the threshold best over the run.
        accuracy = torch.stack(hits).mean(dim=0)
        best = int(torch.argmax(accuracy))
        for name, hit in zip(("a.png", "b.png", "c.png"), hits, strict=True):
            assert _value(rows[name]["box_accuracy"]) == float(hit[best])
        # The image without ground truth has no value: it is not a miss.
        assert all(rows["d.png"][key] == "" for key in ("pointing_game", "box_accuracy"))


def test_the_summary_has_the_three_metrics_and_the_centre_prior(finished: Path) -> None:
    rows = read_csv(finished / "summary.csv")
    for method in ("pcam+", "random", PRIOR_ROW):
        metrics = {row["metric"]: row for row in rows if row["method"] == method}
        for key in ("pointing_game", "energy_pointing_game", "box_accuracy"):
            assert metrics[key]["better"] == "higher"
            assert int(metrics[key]["images"]) == 3  # d.png is left out
    prior = {row["metric"] for row in rows if row["method"] == PRIOR_ROW}
    assert prior == {"pointing_game", "energy_pointing_game", "box_accuracy"}
    markdown = (finished / "summary.md").read_text()
    assert "| localisation |" in markdown and PRIOR_ROW in markdown
    assert "1 image(s) have no ground truth for their class" in markdown
    assert "1 box(es) outside the input's frame were dropped" in markdown


def test_the_centre_priors_values_are_its_maps_against_the_boxes(finished: Path) -> None:
    rows = [r for r in read_csv(finished / "summary.csv") if r["method"] == PRIOR_ROW]
    energy = next(r for r in rows if r["metric"] == "energy_pointing_game")
    prior = centre_prior(1, (32, 32))
    expected = [
        float(EnergyPointingGame()(prior, boxes=[torch.tensor(EXPECTED[name])]).values[0])
        for name in ("a.png", "b.png", "c.png")
    ]
    assert float(energy["mean"]) == pytest.approx(sum(expected) / 3, abs=1e-5)


def test_box_accuracy_is_written_at_every_threshold(finished: Path) -> None:
    rows = read_csv(finished / "csv" / "box_accuracy_tiny.csv")
    assert list(rows[0]) == ["threshold", "pcam+", "random", PRIOR_ROW]
    thresholds = [float(row["threshold"]) for row in rows]
    assert thresholds == sorted(thresholds) and len(thresholds) == len(BoxAccuracy().thresholds)
    for row in rows:
        assert all(0 <= float(row[column]) <= 1 for column in ("pcam+", "random", PRIOR_ROW))


def test_run_json_records_the_ground_truth_by_content(finished: Path, boxes: Path) -> None:
    import hashlib

    recorded = json.loads((finished / "run.json").read_text())["configuration"]
    truth = recorded["ground_truth"]
    assert truth["format"] == "csv"
    assert truth["sha256"] == hashlib.sha256(boxes.read_bytes()).hexdigest()
    assert truth["images_annotated"] == 3
    assert "boxes" not in recorded  # the path is not the ground truth


def test_a_resume_with_other_ground_truth_is_refused(
    photos: Path, boxes: Path, finished: Path, tmp_path: Path
) -> None:
    other = tmp_path / "boxes.csv"
    other.write_text(BOXES.replace("a.png,4,3,20,15", "a.png,4,3,21,15"))
    with pytest.raises(EvaluationError, match="ground_truth"):
        _run(photos, finished, other)


def test_the_page_draws_the_boxes_and_sorts_by_the_localisation(finished: Path) -> None:
    page = (finished / "report.html").read_text()
    for key in ("pointing_game", "energy_pointing_game", "box_accuracy"):
        assert f'data-key="m0-{key}"' in page
    assert "csv" in page or "ground truth" in page
    overlay = np.asarray(Image.open(finished / "overlays" / "pcam+" / "b.png.png"))
    # b.png's box (8, 16, 24, 32): its top edge is row 16, columns 8 to 23, in white.
    assert (overlay[16, 8:24] == 255).all()
    assert not (overlay[15, 8:24] == 255).all()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("image,x1,y1,x2,y2\na.png,20,3,4,15\n", "a.png"),
        ("image,x1,y1,x2\na.png,4,3,20\n", "y2"),
        ("image,x1,y1,x2,y2\nz.png,4,3,20,15\n", "4 of 4"),
    ],
    ids=["x2 before x1", "missing column", "no image of the run"],
)
def test_faults_of_the_ground_truth_are_refused_before_the_folder_is_claimed(
    photos: Path, tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "boxes.csv"
    path.write_text(text)
    out = tmp_path / "out"
    with pytest.raises(EvaluationError, match=message) as error:
        _run(photos, out, path)
    assert "\n" not in str(error.value)
    assert not (out / "run.json").exists()


def test_a_mask_of_another_size_than_its_image_is_refused_first(
    photos: Path, tmp_path: Path
) -> None:
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(masks / "a.png")  # a.png: 30 x 40
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(masks / "b.png")  # b.png is 40 x 40
    out = tmp_path / "out"
    with pytest.raises(EvaluationError, match="b"):
        _run(photos, out, masks)
    assert not (out / "run.json").exists()


def test_masks_are_carried_and_measured(photos: Path, tmp_path: Path) -> None:
    masks = tmp_path / "masks"
    masks.mkdir()
    mask = np.zeros((40, 40), np.uint8)
    mask[20:40, 10:30] = 255  # b.png's box above, as a mask: (8, 16, 24, 32) in the input
    Image.fromarray(mask).save(masks / "b.png")
    out = tmp_path / "out"
    _run(photos, out, masks, methods=("random",))
    maps = np.load(out / "npz" / "tiny_random.npz")
    rows = {r["image"]: r for r in read_csv(out / "csv" / "scores_tiny_random.csv")}
    image_map = torch.from_numpy(maps["b.png"])[None, None]
    expected = EnergyPointingGame()(image_map, boxes=[torch.tensor(EXPECTED["b.png"])]).values
    assert _value(rows["b.png"]["energy_pointing_game"]) == pytest.approx(float(expected[0]))
    assert rows["a.png"]["energy_pointing_game"] == ""


def test_a_dataset_with_boxes_is_refused(tmp_path: Path, boxes: Path) -> None:
    dataset = [(torch.rand(3, 32, 32), "a.png")]
    with pytest.raises(EvaluationError, match="folder"):
        evaluate(dataset, tmp_path / "out", _config(boxes), model=tiny_classifier())  # type: ignore[arg-type]


def test_the_centre_prior_is_a_centred_gaussian() -> None:
    prior = centre_prior(2, (5, 7))
    assert prior.shape == (2, 1, 5, 7)
    assert prior[0, 0, 2, 3] == 1.0  # the centre
    assert torch.equal(prior, prior.flip(-1)) and torch.equal(prior, prior.flip(-2))
    # One pixel right of the centre: exp(-(1 / (0.25 * 7))^2 / 2).
    assert float(prior[0, 0, 2, 4]) == pytest.approx(math.exp(-((1 / 1.75) ** 2) / 2))


def test_box_classes_keep_the_boxes_of_the_class_explained(
    photos: Path, finished: Path, tmp_path: Path
) -> None:
    targets = {
        r["image"]: int(r["target"]) for r in read_csv(finished / "csv" / "ground_truth_tiny.csv")
    }
    path = tmp_path / "classes.csv"
    path.write_text(
        "image,x1,y1,x2,y2,class\na.png,4,3,20,15,thing\na.png,30,0,40,30,other\n"
        "b.png,10,20,30,40,other\n"
    )
    explained = targets["a.png"]
    classes = {"thing": explained, "other": (explained + 1) % 5}
    out = tmp_path / "out"
    _run(photos, out, path, methods=("random",), box_classes=classes)
    rows = {r["image"]: r for r in read_csv(out / "csv" / "ground_truth_tiny.csv")}
    assert rows["a.png"]["x1 y1 x2 y2"] == "3.2 3.2000003 16.0 16.0"  # the "thing" box only
    if targets["b.png"] != classes["other"]:
        assert rows["b.png"]["excluded"] == f"no box of class {targets['b.png']}"
    recorded = json.loads((out / "run.json").read_text())["configuration"]
    assert recorded["box_classes"] == classes
    with pytest.raises(EvaluationError, match="box_classes"):
        _config(None, box_classes=classes)  # type: ignore[arg-type]
