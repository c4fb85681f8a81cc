"""End to end on the real pretrained EfficientNet-Lite0 and real photographs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from captum_polycam import PolyCam
from tests.reference import reference_polycam

pytestmark = pytest.mark.slow


def test_top1_classes(lite0: nn.Module, photos: Tensor) -> None:
    assert lite0(photos).argmax(dim=1).tolist() == [285, 967]  # Egyptian cat, espresso


@pytest.mark.parametrize("variant", ["plus", "minus", "plusminus"])
def test_every_variant_gives_non_degenerate_maps(lite0, photos, variant: str) -> None:
    model = lite0.to(memory_format=torch.channels_last)
    inputs = photos.contiguous(memory_format=torch.channels_last)
    maps, stages = PolyCam(model, variant=variant).attribute(inputs, return_stages=True)
    assert len(stages) == 5
    for stage in stages:
        peaks = stage.amax(dim=(1, 2, 3))
        assert float(peaks.min()) > 0.5, "a stage is all zero"
    spread = maps.flatten(1).std(dim=1)
    assert float(spread.min()) > 0.05, "a map is flat"


def test_matches_reference_on_the_pretrained_network(lite0: nn.Module, photos: Tensor) -> None:
    names = ["_blocks.0._swish", "_blocks.4._swish", "_blocks.10._swish"]
    layers = [lite0.get_submodule(name) for name in names]
    # Two of these module objects are called twice; the reference hook keeps the last call.
    _, stages = PolyCam(lite0, names, "plusminus").attribute(
        photos[:1], target=285, return_stages=True
    )
    expected = reference_polycam(lite0, photos[:1], layers, 285, "plusminus")
    for stage, reference in zip(stages, expected, strict=True):
        np.testing.assert_allclose(stage[0, 0].numpy(), reference, atol=1e-3)
