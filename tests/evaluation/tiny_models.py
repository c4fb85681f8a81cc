"""Models the evaluation tests load by ``package.module:callable``, as a user's would be."""

from __future__ import annotations

import torch
from torch import nn

from tests.conftest import TinyCNN


def tiny_classifier() -> nn.Module:
    """The seeded three-resolution :class:`TinyCNN` (5 classes), for 16 to 64 pixel inputs."""
    torch.manual_seed(0)
    return TinyCNN().eval()
