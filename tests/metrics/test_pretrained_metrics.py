"""The metrics on the real pretrained EfficientNet-Lite0 and a real photograph."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from captum_polycam import PolyCam
from captum_polycam.metrics import InsertionDeletion

pytestmark = pytest.mark.slow


def test_polycam_beats_a_random_map(lite0: nn.Module, photos: Tensor) -> None:
    model = lite0.to(memory_format=torch.channels_last)
    cat = photos[:1].contiguous(memory_format=torch.channels_last)
    polycam = PolyCam(model, variant="plus").attribute(cat, target=285)
    random = torch.rand(1, 1, 224, 224, generator=torch.Generator().manual_seed(0))

    metric = InsertionDeletion(model)
    faithful = metric(cat, polycam, target=285)
    baseline = metric(cat, random, target=285)

    assert faithful.insertion.curve.shape == (1, 224)
    assert float(faithful.insertion.auc) > float(baseline.insertion.auc) + 0.1
    assert float(faithful.deletion.auc) < float(baseline.deletion.auc)
    # The last insertion step is the photo itself: the clean probability of the cat.
    clean = model(cat).softmax(dim=1)[0, 285]
    torch.testing.assert_close(faithful.insertion.curve[0, -1], clean.detach(), atol=1e-5, rtol=0)
