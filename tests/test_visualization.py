"""The public visualisation module: overlays, photos as model inputs, the summary figure, checked
on tiny tensors whose blended colours are computed by hand."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageOps

from captum_polycam.cli import figure as cli_figure
from captum_polycam.resources.errors import EvaluationError
from captum_polycam.visualization import (
    FIGURE_FORMATS,
    figure,
    figure_format,
    load_image,
    montage,
    overlay,
    preprocess,
    save,
    slices,
)

MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
PNG = b"\x89PNG\r\n\x1a\n"


def _rgb(colormap: str, value: float) -> np.ndarray:
    return np.asarray(colormaps[colormap](value)[:3], dtype=np.float64)


def _half_map(height: int = 4, width: int = 4) -> torch.Tensor:
    """A ``1 x 1 x H x W`` map: 0 on the left half, 1 on the right."""
    heat = torch.zeros(1, 1, height, width)
    heat[..., width // 2 :] = 1.0
    return heat


def _photo_u8(height: int = 4, width: int = 5) -> np.ndarray:
    """An ``H x W x 3`` uint8 photo with distinct values."""
    return (np.arange(height * width * 3).reshape(height, width, 3) * 3 % 256).astype(np.uint8)


def _png(path: Path, height: int = 6, width: int = 10) -> Path:
    Image.fromarray(_photo_u8(height, width)).save(path)
    return path


# overlay


@pytest.mark.parametrize(("colormap", "alpha"), [("jet", 0.5), ("viridis", 0.3), ("gray", 1.0)])
def test_overlay_blends_by_hand(colormap: str, alpha: float) -> None:
    photo = torch.full((3, 4, 4), 0.25)
    blended = overlay(photo, _half_map(), colormap=colormap, alpha=alpha)
    assert blended.shape == (1, 4, 4, 3) and blended.dtype == np.float32
    cold = (1 - alpha) * 0.25 + alpha * _rgb(colormap, 0.0)
    hot = (1 - alpha) * 0.25 + alpha * _rgb(colormap, 1.0)
    np.testing.assert_allclose(blended[0, :, :2], np.broadcast_to(cold, (4, 2, 3)), atol=1e-6)
    np.testing.assert_allclose(blended[0, :, 2:], np.broadcast_to(hot, (4, 2, 3)), atol=1e-6)


def test_overlay_alpha_zero_is_the_photo() -> None:
    photo = torch.rand(3, 4, 5, generator=torch.Generator().manual_seed(0))
    blended = overlay(photo, torch.rand(1, 1, 4, 5))
    assert not np.allclose(blended[0], photo.permute(1, 2, 0).numpy())
    np.testing.assert_allclose(
        overlay(photo, torch.rand(1, 1, 4, 5), alpha=0.0)[0], photo.permute(1, 2, 0).numpy()
    )


def test_pil_array_and_tensor_photos_agree() -> None:
    pixels = _photo_u8()
    heat = torch.rand(1, 1, 4, 5, generator=torch.Generator().manual_seed(1))
    from_tensor = overlay(torch.from_numpy(pixels).permute(2, 0, 1).float() / 255, heat)
    from_array = overlay(pixels.astype(np.float32) / 255, heat)
    from_pil = overlay(Image.fromarray(pixels), heat)
    from_batch = overlay(torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255, heat)
    for other in (from_array, from_pil, from_batch):
        np.testing.assert_allclose(other, from_tensor, atol=1e-7)


def test_integer_photos_are_scaled_from_0_to_255() -> None:
    # np.array(Image.open(...)) gives uint8 pixels: they used to be clamped, a white photo.
    pixels = _photo_u8()
    as_tensor = torch.from_numpy(pixels).permute(2, 0, 1)
    photos = [pixels, as_tensor, as_tensor[None], Image.fromarray(pixels)]
    for photo in photos:
        # With alpha 0 the overlay is the photo: each pixel v as v / 255.
        np.testing.assert_allclose(
            overlay(photo, torch.zeros(1, 4, 5), alpha=0.0)[0], pixels / 255.0, atol=1e-7
        )
    heat = torch.rand(1, 1, 4, 5, generator=torch.Generator().manual_seed(1))
    expected = overlay(pixels.astype(np.float32) / 255, heat)
    for photo in photos:
        np.testing.assert_allclose(overlay(photo, heat), expected, atol=1e-7)


def test_16_bit_photos_are_scaled_from_0_to_65535() -> None:
    grey = np.array([[0, 1000], [32768, 65535]], dtype=np.uint16)
    expected = np.repeat((grey / 65535.0)[..., None], 3, axis=2)  # 32768 is 0.500008
    pil = Image.fromarray(grey)
    assert pil.mode == "I;16"  # Pillow's conversion to RGB would clip it at 255, as load_image says
    for photo in (
        pil,
        np.repeat(grey[..., None], 3, axis=2),
        torch.from_numpy(grey).expand(3, 2, 2),
    ):
        np.testing.assert_allclose(
            overlay(photo, torch.zeros(1, 2, 2), alpha=0.0)[0], expected, atol=1e-7
        )


def test_a_pil_photo_is_drawn_upright_as_preprocess_reads_it() -> None:
    # Stored 2 wide and 1 high, with an EXIF orientation of 6: taken as 1 wide and 2 high.
    stored = Image.fromarray(np.array([[[255, 0, 0], [0, 0, 255]]], dtype=np.uint8))
    exif = stored.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    buffer = io.BytesIO()
    stored.save(buffer, "PNG", exif=exif)
    photo = Image.open(buffer)
    blended = overlay(photo, torch.zeros(1, 2, 1), alpha=0.0)
    assert blended.shape == (1, 2, 1, 3)  # upright: 2 high and 1 wide
    upright = np.asarray(ImageOps.exif_transpose(photo), dtype=np.float32) / 255
    np.testing.assert_allclose(blended[0], upright, atol=1e-6)
    assert blended[0, 0, 0, 0] > 0.5 > blended[0, 1, 0, 0]  # red on top, blue below


_FLOAT_PHOTO = (
    "image: a float photo must hold pixels in [0, 1]; got values from {low} to {high}: divide "
    "0 to 255 pixels by 255, or pass the photo as it was before preprocess"
)


@pytest.mark.parametrize(
    ("photo", "message"),
    [
        # A float photo in 0 to 255 used to be clamped to white.
        # The 4 x 5 x 3 values 0, 3, ..., 177 of _photo_u8, as floats.
        (_photo_u8().astype(np.float32), _FLOAT_PHOTO.format(low=0, high=177)),
        (torch.full((3, 4, 5), 2.0), _FLOAT_PHOTO.format(low=2, high=2)),
        # The model's input: 0 becomes -0.485 / 0.229 = -2.12, 1 becomes 0.594 / 0.225 = 2.64.
        (
            preprocess(torch.tensor([0.0, 1.0]).view(1, 1, 2).expand(3, 2, 2).clone()),
            _FLOAT_PHOTO.format(low=-2.12, high=2.64),
        ),
        (torch.full((3, 4, 5), math.nan), _FLOAT_PHOTO.format(low="nan", high="nan")),
        (
            _photo_u8().astype(np.int64),
            "image: integer pixels must be uint8 (0 to 255) or uint16 (0 to 65535); got "
            "torch.int64: convert them to one of these, or to floats in [0, 1]",
        ),
    ],
)
def test_photos_outside_their_range_are_refused(photo: object, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        overlay(photo, torch.zeros(1, 2, 2))
    assert str(raised.value) == message


@pytest.mark.parametrize("shape", [(1, 1, 2, 3), (1, 2, 3), (2, 3)])
def test_maps_are_resized_bilinearly_to_the_photo(shape: tuple[int, ...]) -> None:
    heat = torch.tensor([[0.0, 0.5, 1.0], [1.0, 0.5, 0.0]]).reshape(shape)
    photo = torch.zeros(3, 8, 12)
    blended = overlay(photo, heat, colormap="viridis", alpha=1.0)
    assert blended.shape == (1, 8, 12, 3)
    resized = F.interpolate(heat.reshape(1, 1, 2, 3), size=(8, 12), mode="bilinear")
    expected = colormaps["viridis"](resized[0, 0].numpy())[..., :3]
    np.testing.assert_allclose(blended[0], expected, atol=1e-6)


def test_one_photo_serves_every_map() -> None:
    photo = torch.full((1, 3, 4, 4), 0.5)
    heat = torch.stack([torch.full((1, 4, 4), value) for value in (0.0, 0.5, 1.0)])
    blended = overlay(photo, heat)
    assert blended.shape == (3, 4, 4, 3)
    for row, value in enumerate((0.0, 0.5, 1.0)):
        np.testing.assert_array_equal(blended[row], overlay(photo, heat[row])[0])
        np.testing.assert_allclose(blended[row, 0, 0], 0.25 + 0.5 * _rgb("jet", value), atol=1e-6)


def test_one_photo_per_map() -> None:
    photos = torch.stack([torch.zeros(3, 4, 4), torch.ones(3, 4, 4)])
    blended = overlay(photos, torch.zeros(2, 1, 4, 4), alpha=0.0)
    np.testing.assert_array_equal(blended[:, 0, 0, 0], [0.0, 1.0])


def test_maps_outside_the_unit_range_are_clipped() -> None:
    photo = torch.zeros(3, 2, 2)
    heat = torch.tensor([[[-1.0, 2.0], [0.25, 0.0]]])
    blended = overlay(photo, heat, alpha=1.0)
    np.testing.assert_allclose(blended[0, 0, 0], _rgb("jet", 0.0), atol=1e-6)
    np.testing.assert_allclose(blended[0, 0, 1], _rgb("jet", 1.0), atol=1e-6)
    np.testing.assert_allclose(blended[0, 1, 0], _rgb("jet", 0.25), atol=1e-6)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_maps_are_refused(bad: float) -> None:
    # A NaN map used to be drawn as zeros, an infinite one as ones: as the metrics do, refuse.
    heat = torch.zeros(2, 1, 2, 2)
    heat[1, 0, 1, 0] = bad
    with pytest.raises(ValueError) as raised:
        overlay(torch.zeros(3, 2, 2), heat)
    assert str(raised.value) == (
        "maps: map 1 holds NaN or Inf values; only finite maps can be drawn"
    )
    with pytest.raises(ValueError) as raised:
        figure(torch.zeros(3, 2, 2), torch.zeros(2, 1, 2, 2), [torch.zeros(2, 1, 2, 2), heat])
    assert str(raised.value) == (
        "stages[1]: map 1 holds NaN or Inf values; only finite maps can be drawn"
    )


@pytest.mark.parametrize(
    ("image", "maps", "options", "message"),
    [
        (
            torch.zeros(3, 4, 4),
            torch.zeros(1, 4, 4),
            {"alpha": 1.5},
            "alpha must be in [0, 1]; got 1.5",
        ),
        (torch.zeros(3, 4, 4), torch.zeros(1, 4, 4), {"alpha": -0.1}, "alpha must be in [0, 1]"),
        (
            torch.zeros(3, 4, 4),
            torch.zeros(1, 4, 4),
            {"colormap": "no-such-map"},
            "colormap must be a matplotlib colormap name; got 'no-such-map'",
        ),
        (np.zeros((4, 4)), torch.zeros(1, 4, 4), {}, "image: an array must be H x W x 3"),
        (
            torch.zeros(2, 4, 4),
            torch.zeros(1, 4, 4),
            {},
            "image: a tensor must be 3 x H x W or N x 3 x H x W; got (2, 4, 4)",
        ),
        (
            torch.zeros(3, 4, 4),
            torch.zeros(1, 2, 4, 4),
            {},
            "maps must be N x 1 x h x w, N x h x w or h x w; got (1, 2, 4, 4)",
        ),
        (
            torch.zeros(2, 3, 4, 4),
            torch.zeros(3, 1, 4, 4),
            {},
            "image: give one photo or one per map; got 2 for 3 maps",
        ),
    ],
)
def test_overlay_names_what_is_wrong(
    image: object, maps: torch.Tensor, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError) as raised:
        overlay(image, maps, **options)
    assert message in str(raised.value)


def test_overlay_refuses_other_photo_types() -> None:
    with pytest.raises(TypeError, match="image must be a tensor, an array or a PIL image"):
        overlay([[0.0]], torch.zeros(1, 4, 4))


# load_image and preprocess


def test_load_image_squashes_to_224(tmp_path: Path) -> None:
    photo = load_image(_png(tmp_path / "photo.png"))
    assert photo.shape == (1, 3, 224, 224) and photo.dtype == torch.float32
    assert float(photo.min()) >= 0.0 and float(photo.max()) <= 1.0


def test_load_image_keeps_the_files_size(tmp_path: Path) -> None:
    photo = load_image(_png(tmp_path / "photo.png"), size=None)
    expected = torch.from_numpy(_photo_u8(6, 10)).permute(2, 0, 1)[None].float() / 255
    assert photo.shape == (1, 3, 6, 10)
    torch.testing.assert_close(photo, expected)
    assert load_image(tmp_path / "photo.png", size=(12, 7)).shape == (1, 3, 12, 7)


def test_load_image_names_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match=r"cannot read image .*missing\.png"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(EvaluationError, match="not a supported image file"):
        load_image(tmp_path / "text.png")


def test_preprocess_normalises_by_hand() -> None:
    pixels = torch.rand(2, 3, 5, 4, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(preprocess(pixels), (pixels - MEAN) / STD)
    single = preprocess(pixels[0])
    assert single.shape == (1, 3, 5, 4)
    torch.testing.assert_close(single[0], (pixels[0] - MEAN) / STD)


def test_preprocess_of_a_pil_image_matches_load_image(tmp_path: Path) -> None:
    path = _png(tmp_path / "photo.png")
    with Image.open(path) as opened:
        inputs = preprocess(opened)
    assert inputs.shape == (1, 3, 224, 224)
    torch.testing.assert_close(inputs, preprocess(load_image(path)))
    torch.testing.assert_close(inputs, (load_image(path) - MEAN) / STD)


@pytest.mark.parametrize(
    ("image", "error", "message"),
    [
        (torch.zeros(1, 3, 4), ValueError, "image: a tensor must be 3 x H x W or N x 3 x H x W"),
        (torch.zeros(3, 4, 4, dtype=torch.uint8), ValueError, "must hold float pixels"),
        (torch.full((3, 4, 4), 255.0), ValueError, r"pixels must be in \[0, 1\], not normalised"),
        (torch.full((3, 4, 4), -0.5), ValueError, r"got values from -0\.5 to -0\.5"),
        (np.zeros((4, 4, 3)), TypeError, "image must be a tensor or a PIL image"),
    ],
)
def test_preprocess_names_what_is_wrong(image: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        preprocess(image)  # type: ignore[arg-type]


# figure and save


def _decomposition(count: int = 2, stages: int = 3) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(3)
    photos = torch.rand(count, 3, 8, 8, generator=generator)
    maps = torch.rand(count, 1, 8, 8, generator=generator)
    layers = [torch.rand(count, 1, 2 << k, 2 << k, generator=generator) for k in range(stages)]
    return photos, maps, *layers


@pytest.mark.parametrize(("stages", "colorbar"), [(0, False), (0, True), (3, False), (3, True)])
def test_figure_has_a_panel_per_photo_overlay_and_stage(stages: int, colorbar: bool) -> None:
    photos, maps, *layers = _decomposition(2, stages)
    drawn = figure(photos, maps, layers or None, colorbar=colorbar)
    assert isinstance(drawn, Figure) and isinstance(drawn.canvas, FigureCanvasAgg)
    assert len(drawn.axes) == 2 * (2 + stages) + colorbar


def test_figure_draws_the_overlay_and_the_stages_on_the_unit_range() -> None:
    photos, maps, *layers = _decomposition(2, 2)
    drawn = figure(
        photos,
        maps,
        layers,
        titles=["tabby", "lynx"],
        stage_titles=["deepest", "all"],
        colormap="viridis",
        alpha=0.4,
        colorbar=False,
    )
    blended = overlay(photos, maps, colormap="viridis", alpha=0.4)
    for row in range(2):
        photo, over, deepest, _ = drawn.axes[4 * row : 4 * row + 4]
        np.testing.assert_array_equal(photo.images[0].get_array(), photos[row].permute(1, 2, 0))
        np.testing.assert_array_equal(over.images[0].get_array(), blended[row])
        assert over.get_title() == ["tabby", "lynx"][row]
        assert deepest.get_title() == "deepest"
        stage = deepest.images[0]
        assert stage.get_array().shape == (8, 8)  # resized to the photo's size
        assert stage.get_clim() == (0.0, 1.0) and stage.get_cmap().name == "viridis"


def test_figure_uses_one_photo_for_every_map() -> None:
    photos, maps, *_ = _decomposition(3, 0)
    drawn = figure(photos[:1], maps, colorbar=False)
    assert len(drawn.axes) == 6
    for row in range(3):
        np.testing.assert_array_equal(
            drawn.axes[2 * row].images[0].get_array(), photos[0].permute(1, 2, 0)
        )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"titles": ["one"]}, r"titles: give one per map \(2\); got 1"),
        ({"stage_titles": ["a", "b"]}, r"stage_titles: give one per stage \(1\); got 2"),
        ({"alpha": 2.0}, r"alpha must be in \[0, 1\]"),
    ],
)
def test_figure_names_what_is_wrong(options: dict[str, object], message: str) -> None:
    photos, maps, layer = _decomposition(2, 1)
    with pytest.raises(ValueError, match=message):
        figure(photos, maps, [layer], **options)


def test_figure_needs_a_stage_map_per_row() -> None:
    photos, maps, layer = _decomposition(2, 1)
    with pytest.raises(ValueError, match=r"stages: each needs one map per row \(2\); got \[1\]"):
        figure(photos, maps, [layer[:1]])
    with pytest.raises(ValueError, match="maps: no map to draw"):
        figure(photos[:1], maps[:0])


@pytest.mark.parametrize(
    ("name", "start"),
    [("figure.png", PNG), ("figure.SVG", b"<?xml"), ("figure.pdf", b"%PDF-"), ("figure", PNG)],
)
def test_save_writes_the_format_of_the_suffix(tmp_path: Path, name: str, start: bytes) -> None:
    photos, maps, *layers = _decomposition(1, 2)
    out = tmp_path / name
    assert save(out, photos, maps, layers, titles=["tabby"]) is None
    content = out.read_bytes()
    assert content.startswith(start)
    if name.lower().endswith(".svg"):
        assert b"<svg" in content


def test_save_keeps_the_panel_size(tmp_path: Path) -> None:
    photos, maps, *layers = _decomposition(2, 1)
    save(tmp_path / "plain.png", photos, maps, layers, colorbar=False)
    with Image.open(tmp_path / "plain.png") as written:
        assert written.size == (900, 600)  # 3 panels of 3 inches a row, 2 rows, 100 dpi
    save(tmp_path / "bar.png", photos, maps, layers)
    with Image.open(tmp_path / "bar.png") as written:
        assert written.size == (980, 600)


def test_save_refuses_an_unknown_suffix_before_drawing(tmp_path: Path) -> None:
    photos, maps, *_ = _decomposition(1, 0)
    out = tmp_path / "figure.bmp"
    with pytest.raises(EvaluationError, match=r"path: cannot write a '\.bmp' figure; use png, "):
        save(out, photos, maps, alpha=5.0)  # the format is checked first
    assert not out.exists()


def test_the_command_line_shares_the_figure_formats() -> None:
    assert cli_figure.FIGURE_FORMATS is FIGURE_FORMATS
    assert cli_figure.figure_format is figure_format
    assert "png" in FIGURE_FORMATS and "svg" in FIGURE_FORMATS
    assert figure_format("maps.JPG") == "jpg" and figure_format("maps") == "png"
    with pytest.raises(EvaluationError, match=r"^--out: cannot write a '\.gif' figure"):
        figure_format("maps.gif")


def test_the_command_lines_detection_figure_draws_overlays(tmp_path: Path) -> None:
    photo = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    maps = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(5))
    boxes = torch.tensor([[1.0, 1.0, 8.0, 8.0], [4.0, 2.0, 15.0, 12.0]])
    out = tmp_path / "boxes.png"
    cli_figure.save_detection_figure(out, photo, maps, boxes, ["cat 0.90", "dog 0.80"])
    with Image.open(out) as written:
        assert written.size == (900, 300)


# slices and montage: a volume's map over its scan

VOLUME_SHAPE = (6, 7, 8)
PEAK = (2, 5, 3)


def _scan_and_map(
    shape: tuple[int, int, int] = VOLUME_SHAPE, peak: tuple[int, int, int] = PEAK
) -> tuple[torch.Tensor, torch.Tensor]:
    """A scan in [0, 1] and a map below 0.5 everywhere but 1 at ``peak``."""
    generator = torch.Generator().manual_seed(6)
    scan = torch.rand(shape, generator=generator)
    heat = torch.rand(shape, generator=generator) * 0.5
    heat[peak] = 1.0
    return scan, heat


def _titles(drawn: Figure) -> list[str]:
    return [axes.get_title() for axes in drawn.axes]


def test_slices_draws_the_three_planes_through_the_maximum() -> None:
    scan, heat = _scan_and_map()
    drawn = slices(scan, heat)
    assert isinstance(drawn, Figure) and isinstance(drawn.canvas, FigureCanvasAgg)
    assert _titles(drawn) == ["axis 0, slice 2", "axis 1, slice 5", "axis 2, slice 3"]
    planes = [(scan[2], heat[2]), (scan[:, 5], heat[:, 5]), (scan[:, :, 3], heat[:, :, 3])]
    for axes, (grey, plane) in zip(drawn.axes, planes, strict=True):
        expected = overlay(grey.expand(3, *grey.shape), plane, alpha=0.5)[0]
        np.testing.assert_allclose(np.asarray(axes.images[0].get_array()), expected, atol=1e-6)
    # The crosshair crosses at the maximum: (h, w) on axis 0, (d, w) on axis 1, (d, h) on 2.
    for axes, (row, column) in zip(drawn.axes, [(5, 3), (2, 3), (2, 5)], strict=True):
        lines = [line.get_xydata() for line in axes.get_lines()]
        assert any(np.all(line[:, 1] == row) for line in lines)
        assert any(np.all(line[:, 0] == column) for line in lines)


@pytest.mark.parametrize("peak", [(0, 0, 0), (5, 6, 7), (4, 1, 6)])
def test_slices_follow_the_maximum_wherever_it_is(peak: tuple[int, int, int]) -> None:
    scan, heat = _scan_and_map(peak=peak)
    drawn = slices(scan.numpy(), heat[None, None])  # an array, and PolyCam's 1 x 1 x D x H x W
    assert _titles(drawn) == [f"axis {axis}, slice {index}" for axis, index in enumerate(peak)]


def test_slices_options_change_the_blend() -> None:
    scan, heat = _scan_and_map()
    drawn = slices(scan[None], heat[None], alpha=1.0, colormap="viridis")
    expected = colormaps["viridis"](heat[2].numpy())[..., :3]
    np.testing.assert_allclose(np.asarray(drawn.axes[0].images[0].get_array()), expected, atol=1e-6)


def test_slices_and_a_montage_save_as_png(tmp_path: Path) -> None:
    scan, heat = _scan_and_map()
    slices(scan, heat).savefig(tmp_path / "x.png")
    assert (tmp_path / "x.png").read_bytes().startswith(PNG)
    with Image.open(tmp_path / "x.png") as written:
        assert written.format == "PNG" and written.size == (900, 300)  # 3 panels of 3 inches
    montage(scan, heat, count=4).savefig(tmp_path / "y.png")
    with Image.open(tmp_path / "y.png") as written:
        assert written.format == "PNG" and written.size == (600, 600)  # 2 x 2 panels


@pytest.mark.parametrize(
    ("axis", "count", "indices"),
    [
        (0, 16, [0, 1, 2, 3, 4, 5]),  # fewer slices than asked: all of them
        (2, 4, [1, 3, 5, 7]),  # middles of runs of 2 of the 8
        (1, 3, [1, 3, 5]),  # runs of 7 / 3
        (2, 1, [4]),  # the middle slice
        (1, 7, [0, 1, 2, 3, 4, 5, 6]),
    ],
)
def test_montage_draws_evenly_spaced_slices(axis: int, count: int, indices: list[int]) -> None:
    scan, heat = _scan_and_map()
    drawn = montage(scan, heat, axis=axis, count=count)
    assert _titles(drawn) == [f"axis {axis}, slice {index}" for index in indices]
    for axes, index in zip(drawn.axes, indices, strict=True):
        grey, plane = scan.select(axis, index), heat.select(axis, index)
        expected = overlay(grey.expand(3, *grey.shape), plane, alpha=0.5)[0]
        np.testing.assert_allclose(np.asarray(axes.images[0].get_array()), expected, atol=1e-6)


@pytest.mark.parametrize(("count", "grid"), [(1, (1, 1)), (3, (2, 2)), (5, (2, 3)), (6, (2, 3))])
def test_montage_lays_the_slices_in_a_near_square_grid(count: int, grid: tuple[int, int]) -> None:
    scan, heat = _scan_and_map()
    drawn = montage(scan, heat, count=count)
    assert len(drawn.axes) == count  # no empty panels
    rows, columns = grid
    assert drawn.axes[0].get_subplotspec().get_gridspec().get_geometry() == (rows, columns)
    width, height = drawn.get_size_inches()
    assert (width, height) == (3.0 * columns, 3.0 * rows)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (
            {"maps": torch.zeros(6, 7, 9)},
            ValueError,
            r"maps: shape \(6, 7, 9\) differs from the volume's \(6, 7, 8\)",
        ),
        (
            {"volume": torch.full((6, 7, 8), 40.0)},
            ValueError,
            r"volume: values must be in \[0, 1\]; got values from 40 to 40: scale the scan first "
            "with window",
        ),
        ({"maps": torch.full((6, 7, 8), -0.5)}, ValueError, r"maps: values must be in \[0, 1\]"),
        (
            {"maps": torch.full((6, 7, 8), math.nan)},
            ValueError,
            r"maps: values must be in \[0, 1\]",
        ),
        (
            {"volume": torch.zeros(6, 7)},
            ValueError,
            r"volume must be a non-empty D x H x W volume .*got \(6, 7\)",
        ),
        (
            {"volume": torch.zeros(2, 1, 6, 7, 8)},
            ValueError,
            "volume must be a non-empty D x H x W",
        ),
        ({"volume": [[[0.5]]]}, TypeError, "volume must be a tensor or an array"),
        ({"alpha": 1.5}, ValueError, r"alpha must be in \[0, 1\]; got 1.5"),
        (
            {"colormap": "nope"},
            ValueError,
            "colormap must be a matplotlib colormap name; got 'nope'",
        ),
    ],
)
def test_slices_and_montage_name_what_is_wrong(
    options: dict[str, object], error: type, message: str
) -> None:
    scan, heat = _scan_and_map()
    arguments = {"volume": scan, "maps": heat, **options}
    volume, maps = arguments.pop("volume"), arguments.pop("maps")
    for draw in (slices, montage):
        with pytest.raises(error, match=message):
            draw(volume, maps, **arguments)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"axis": 3}, "axis must be 0, 1 or 2 .*got 3"),
        ({"axis": -1}, "axis must be 0, 1 or 2 .*got -1"),
        ({"axis": True}, "axis must be 0, 1 or 2 .*got True"),
        ({"count": 0}, "count must be a positive int; got 0"),
        ({"count": 2.5}, "count must be a positive int; got 2.5"),
        ({"count": True}, "count must be a positive int; got True"),
    ],
)
def test_montage_names_a_bad_axis_or_count(options: dict[str, object], message: str) -> None:
    scan, heat = _scan_and_map()
    with pytest.raises(ValueError, match=message):
        montage(scan, heat, **options)  # type: ignore[arg-type]


def test_the_figures_show_in_a_notebook_as_png_without_pyplot() -> None:
    # IPython shows a cell's value by its _repr_png_; a bare matplotlib Figure has none until
    # pyplot's inline backend registers one.
    photo, maps = torch.rand(3, 16, 16), torch.rand(1, 1, 16, 16)
    volume, heat = torch.rand(8, 8, 8), torch.rand(8, 8, 8)
    for drawn in (figure(photo, maps), slices(volume, heat), montage(volume, heat, count=4)):
        with Image.open(io.BytesIO(drawn._repr_png_())) as shown:
            assert shown.format == "PNG"
            assert shown.size == tuple(round(side) for side in drawn.bbox.size)
