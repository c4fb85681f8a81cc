"""Models of any number of spatial dimensions whose scores are known sums of the inputs, for
the metrics' hand-computed answers on signals, images and volumes."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TotalModel(nn.Module):
    """logits = [sum(x), 0] over every channel and position, whatever the inputs' dimensions:
    with score_fn="logit" and target 0 the score is the sum of the inputs."""

    def forward(self, x: Tensor) -> Tensor:
        total = x.flatten(1).sum(dim=1)
        return torch.stack([total, torch.zeros_like(total)], dim=1)


class EveryValueModel(nn.Module):
    """logits = the inputs flattened: target ``i`` scores the ``i``-th value (channel first,
    then the positions in row-major order)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1)


class LinearModel(nn.Module):
    """logits = the flattened inputs times a fixed random matrix: the same numbers for an
    image and for the volume of its one slice."""

    def __init__(self, values: int, classes: int = 3) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(values, classes, generator=generator))

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self.weight
