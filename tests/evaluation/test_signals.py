"""The evaluation of a dataset of 1-D signals: its maps, metrics and page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from captum_polycam.evaluation import EvaluationConfig, evaluate
from captum_polycam.visualization import overlay
from tests.evaluation.tiny_models import tiny_signal_classifier

LENGTH = 64


class _Signals(Dataset):
    """A user's dataset of ``(signal, name)`` items: a rising ramp and noise."""

    def __len__(self) -> int:
        return 3

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        if index == 0:
            return torch.linspace(0.0, 1.0, LENGTH)[None], "ramp"
        return torch.rand(1, LENGTH, generator=torch.Generator().manual_seed(index)), f"s{index}"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("signals") / "out"
    config = EvaluationConfig(
        model="tiny1d", methods=("pcam+", "gradcam"), n_steps=8, batch_size=2, preprocessing=None
    )
    evaluate(_Signals(), out, config, model=tiny_signal_classifier(), num_workers=0)
    return out


def test_each_signal_has_its_map_and_scores(finished: Path) -> None:
    for method in ("pcam+", "gradcam"):
        with np.load(finished / "npz" / f"tiny1d_{method}.npz") as archive:
            assert sorted(archive.files) == ["ramp", "s1", "s2"]
            assert all(archive[name].shape == (LENGTH,) for name in archive.files)
    assert (finished / "errors.csv").read_text().count("\n") == 1  # the header alone


def test_the_page_draws_the_signal_over_its_maps_band(finished: Path) -> None:
    assert 'src="overlays/pcam+/ramp.png"' in (finished / "report.html").read_text()
    with np.load(finished / "npz" / "tiny1d_pcam+.npz") as archive:
        heat = archive["ramp"]
    pixels = np.asarray(Image.open(finished / "overlays" / "pcam+" / "ramp.png").convert("RGB"))
    # A 64-sample signal is drawn 256 wide (the narrowest band) and 64 high.
    assert pixels.shape == (64, 256, 3)
    # The ramp rises from the bottom-left corner to the top-right one, in white.
    assert (pixels[63, 0] == 255).all() and (pixels[0, 255] == 255).all()
    # Elsewhere each column is the map resampled linearly to the width, coloured as overlays are.
    band = np.interp(np.linspace(0, LENGTH - 1, 256), np.arange(LENGTH), heat)
    expected = overlay(torch.zeros(3, 1, 256), band[None].astype(np.float32), alpha=1.0)[0, 0]
    bottom_right = np.rint(expected[200:] * 255).astype(np.uint8)
    np.testing.assert_allclose(pixels[63, 200:], bottom_right, atol=1)
