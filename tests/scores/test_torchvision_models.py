"""The scores on torchvision's real detection and segmentation architectures (random weights:
pretrained ones cannot be downloaded here): batched runs, maps of the input's size, no hooks
left behind, and a zero map where nothing is found."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import detection, segmentation

from captum_polycam import DetectionBoxScore, PolyCam, SegmentationScore
from tests.conftest import hooked_modules


@pytest.fixture(scope="module")
def segmenter() -> nn.Module:
    torch.manual_seed(0)
    return segmentation.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, aux_loss=False
    ).eval()


@pytest.mark.slow
def test_segmentation_regions_of_two_images_share_the_passes(segmenter) -> None:
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        output = segmenter(images)
    # Different regions for the two images: the left half of one, the bottom half of the other.
    regions = torch.zeros(2, 64, 64, dtype=torch.bool)
    regions[0, :, :32] = True
    regions[1, 32:] = True
    class_index = int(output["out"].argmax(dim=1).flatten().mode().values)
    score = SegmentationScore(class_index, regions)
    polycam = PolyCam(
        segmenter, ["backbone.1.block.0", "backbone.3.block.1"], score_fn=score, variant="plus"
    )
    together = polycam.attribute(images, target=score.targets, perturbations_per_eval=8)
    assert together.shape == (2, 1, 64, 64)
    assert float(together.amax()) > 0
    alone = torch.cat([polycam.attribute(images[i : i + 1], target=i) for i in range(2)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)
    assert hooked_modules(segmenter) == []


def _detector(**options) -> nn.Module:
    torch.manual_seed(0)
    return detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, min_size=96, max_size=96, **options
    ).eval()


SHALLOW_LAYERS = ["backbone.body.1.block.0", "backbone.body.3.block.1"]


@pytest.mark.slow
def test_boxes_of_a_real_detector_are_explained_batched() -> None:
    # Random weights find nothing at the usual threshold: keep every box for the test.
    model = _detector(box_score_thresh=0.0, box_detections_per_img=5)
    images = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        found = model(images)
    boxes = torch.stack([found[0]["boxes"][0], found[1]["boxes"][0]])
    labels = torch.stack([found[0]["labels"][0], found[1]["labels"][0]])
    score = DetectionBoxScore(boxes, labels)
    polycam = PolyCam(model, SHALLOW_LAYERS, variant="minus", score_fn=score)
    maps = polycam.attribute(images, target=score.targets, perturbations_per_eval=8)
    assert maps.shape == (2, 1, 96, 96)
    assert torch.isfinite(maps).all()
    assert float(maps.amax()) > 0
    assert hooked_modules(model) == []


@pytest.mark.slow
def test_an_image_where_nothing_is_found_gives_a_zero_map() -> None:
    model = _detector()
    image = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert len(model(image)[0]["boxes"]) == 0
    score = DetectionBoxScore(torch.tensor([[10.0, 10.0, 60.0, 60.0]]), [1])
    polycam = PolyCam(model, SHALLOW_LAYERS, variant="plus", score_fn=score)
    saliency = polycam.attribute(image, target=0, perturbations_per_eval=8)
    assert saliency.shape == (1, 1, 96, 96)
    assert float(saliency.abs().max()) == 0.0
    assert hooked_modules(model) == []
