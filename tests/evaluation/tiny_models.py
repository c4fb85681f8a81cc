"""Models the evaluation tests load by ``package.module:callable``, as a user's would be."""

from __future__ import annotations

import torch
from captum.attr import Saliency
from torch import nn

from captum_polycam import PolyCam
from tests.conftest import FromChannelsLast, Restaged, TinyCNN, ToChannelsLast


def tiny_classifier() -> nn.Module:
    """The seeded three-resolution :class:`TinyCNN` (5 classes), for 16 to 64 pixel inputs."""
    torch.manual_seed(0)
    return TinyCNN().eval()


def unseeded_classifier() -> nn.Module:
    """:class:`TinyCNN` with whatever weights torch's generator gives, as a factory of random
    weights (``torchvision.models:resnet18``) builds them."""
    return TinyCNN().eval()


def channels_last_classifier() -> nn.Module:
    """:func:`tiny_classifier` with its stages channels-last, as Swin's are: the same weights
    and logits, so ``reshape="nhwc"`` must give its maps."""
    return Restaged(tiny_classifier(), ToChannelsLast, FromChannelsLast).eval()


class _TinyFlatViT(nn.Module):
    """A flat ViT in miniature: 8 x 8 patches embedded, a class token, then token blocks that
    keep one grid throughout, and a head on the mean token."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 6, 8, stride=8)
        self.class_token = nn.Parameter(torch.randn(1, 1, 6))
        self.blocks = nn.Sequential(nn.Linear(6, 6), nn.GELU(), nn.Linear(6, 6), nn.ReLU())
        self.head = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.class_token.expand(len(x), -1, -1), patches], dim=1)
        return self.head(self.blocks(tokens).mean(dim=1))


def tiny_flat_vit() -> nn.Module:
    """The seeded :class:`_TinyFlatViT`: tokens at one grid, which discovery cannot stack."""
    torch.manual_seed(0)
    return _TinyFlatViT().eval()


def fixed_size_classifier() -> nn.Module:
    """A classifier whose head takes only 16 x 16 inputs, as a model with a flatten does."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16 * 16, 5)
    ).eval()


def saliency(model: nn.Module) -> Saliency:
    """A custom method: Captum's ``Saliency``, whose ``repr`` holds a memory address."""
    return Saliency(model)


def failing_method(model: nn.Module) -> Saliency:
    """A custom method whose factory fails, as a user's code under development does."""
    raise RuntimeError("no weights for this model")


def polycam(model: nn.Module) -> PolyCam:
    """A custom method with a settings ``repr``: Poly-CAM on :class:`TinyCNN`'s blocks."""
    return PolyCam(model, ["block1", "block2", "block3"])


def tiny_volume_classifier() -> nn.Module:
    """A seeded 3D CNN of three resolutions (16, 8, 4 at a 16^3 scan), ReLU activations and 3
    classes, for ``1 x D x H x W`` scans."""
    return _tiny_nd_classifier(nn.Conv3d, nn.AdaptiveAvgPool3d)


def tiny_signal_classifier() -> nn.Module:
    """The same in 1D (64, 32, 16 for a 64-sample signal), for ``1 x L`` signals."""
    return _tiny_nd_classifier(nn.Conv1d, nn.AdaptiveAvgPool1d)


def _tiny_nd_classifier(conv: type[nn.Module], pool: type[nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        conv(1, 4, 3, padding=1),
        nn.ReLU(),
        conv(4, 6, 3, stride=2, padding=1),
        nn.ReLU(),
        conv(6, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        pool(1),
        nn.Flatten(),
        # Without a bias the top-1 logit is a positive sum of the last stage's channels: its
        # Grad-CAM has positive weights, and a map that is not all zero.
        nn.Linear(8, 3, bias=False),
    ).eval()
