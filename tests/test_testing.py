"""Poly-CAM explains a detection where the answer is known: the map's mass lies in the box."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from captum_polycam import Deletion, DetectionBoxScore, Insertion, PolyCam
from captum_polycam.resources.images import bundled_image, load_image
from captum_polycam.testing import KnownAnswerDetector

BOX = (48, 16, 80, 64)  # a 32 x 48 box in a 96 x 96 image: 1/6 of its area


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    return F.interpolate(load_image(bundled_image()), size=(96, 96), mode="bilinear")


def _inside(height: int, width: int, box: tuple[int, int, int, int]) -> torch.Tensor:
    x1, y1, x2, y2 = box
    inside = torch.zeros(height, width, dtype=torch.bool)
    inside[y1:y2, x1:x2] = True
    return inside


def test_the_detector_finds_its_box_only_from_its_pixels(photo) -> None:
    detector = KnownAnswerDetector([BOX]).eval()
    outside_only = photo * ~_inside(96, 96, BOX)
    found, nothing = detector(torch.cat([photo, outside_only]))
    assert found["boxes"].tolist() == [list(map(float, BOX))]
    assert len(nothing["boxes"]) == 0


@pytest.mark.parametrize(("variant", "least"), [("plus", 0.6), ("minus", 0.95), ("plusminus", 0.6)])
def test_the_map_puts_its_mass_in_the_box(photo, variant: str, least: float) -> None:
    detector = KnownAnswerDetector([BOX]).eval()
    score = DetectionBoxScore(torch.tensor([BOX], dtype=torch.float32), [1])
    polycam = PolyCam(detector, ["fine", "coarse"], variant=variant, score_fn=score)
    saliency = polycam.attribute(photo, target=0)[0, 0]
    assert saliency.shape == (96, 96)
    mass_inside = float(saliency[_inside(96, 96, BOX)].sum() / saliency.sum())
    assert mass_inside >= least  # the box is 1/6 of the image


def test_boxes_of_different_images_share_a_pass(photo) -> None:
    """Two inputs, each explained for its own box, in the same forward passes, give the maps
    that each gets alone; the flipped photo puts other evidence in each box."""
    other_box = (8, 56, 40, 88)
    boxes = torch.tensor([BOX, other_box], dtype=torch.float32)
    score = DetectionBoxScore(boxes, [1, 1])
    flipped = photo.flip(-1)
    model = KnownAnswerDetector([BOX, other_box]).eval()
    polycam = PolyCam(model, ["fine", "coarse"], variant="minus", score_fn=score)
    together = polycam.attribute(
        torch.cat([photo, flipped]), target=score.targets, perturbations_per_eval=3
    )
    alone = [
        polycam.attribute(image[None], target=t)[0]
        for t, image in enumerate([photo[0], flipped[0]])
    ]
    torch.testing.assert_close(together, torch.stack(alone))
    for map_, box in zip(together, [BOX, other_box], strict=True):
        # other_box is 1/9 of the image; the map puts more than half its mass there.
        assert float(map_[0][_inside(96, 96, box)].sum() / map_.sum()) > 0.5


def test_insertion_and_deletion_take_the_box_score(photo) -> None:
    detector = KnownAnswerDetector([BOX]).eval()
    score = DetectionBoxScore(torch.tensor([BOX], dtype=torch.float32), [1])
    inside = _inside(96, 96, BOX).float()[None, None]
    outside = 1.0 - inside
    insertion = Insertion(detector, n_steps=8, baseline="zeros", score_fn=score)
    deletion = Deletion(detector, n_steps=8, baseline="zeros", score_fn=score)
    good, bad = torch.cat([photo, photo]), torch.cat([inside, outside])
    ins = insertion(good, bad, target=0)
    dele = deletion(good, bad, target=0)
    # The box first: found from the start when inserted, lost at once when deleted.
    assert float(ins.auc[0]) > float(ins.auc[1])
    assert float(dele.auc[0]) < float(dele.auc[1])
