"""Image folders, list and label files, and the paper's preprocessing."""

from __future__ import annotations

import hashlib
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from captum_polycam.resources import EvaluationError, ImageFolder, Preprocessing, bundled_images
from captum_polycam.resources.images import image_list_digest, read_image


def _folder(tmp_path: Path) -> Path:
    Image.new("RGB", (30, 10), (255, 0, 0)).save(tmp_path / "b.jpg")
    Image.new("L", (5, 5), 128).save(tmp_path / "a.PNG")
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_a_folder_lists_its_images_sorted_and_preprocesses_them(tmp_path: Path) -> None:
    folder = ImageFolder(_folder(tmp_path))
    assert folder.names == ["a.PNG", "b.jpg"] and len(folder) == 2
    sample = folder[1]
    assert sample.name == "b.jpg" and sample.label is None and sample.error is None
    assert sample.inputs.shape == (3, 224, 224)  # squashed, not cropped
    red = torch.tensor([(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0 - 0.406) / 0.225])
    torch.testing.assert_close(sample.inputs[:, 5, 100], red, atol=2e-2, rtol=0)


def test_list_and_label_files_in_the_papers_format(tmp_path: Path) -> None:
    _folder(tmp_path)
    (tmp_path / "images.txt").write_text("b.jpg\n")
    (tmp_path / "labels.txt").write_text("b.jpg 7 n01234567\na.PNG 2\n")
    folder = ImageFolder(
        tmp_path, tmp_path / "images.txt", tmp_path / "labels.txt", Preprocessing(size=(8, 12))
    )
    assert folder.names == ["b.jpg"]
    assert folder[0].label == 7 and folder[0].inputs.shape == (3, 8, 12)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"images.txt": "a.PNG\na.PNG\n"}, "names appear twice: a.PNG"),
        ({"labels.txt": "# classes\n\na.PNG seven\n"}, "line 3 of .* is not 'file_name class_"),
    ],
)
def test_bad_list_and_label_files_name_the_problem(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    _folder(tmp_path)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    image_list = tmp_path / "images.txt" if "images.txt" in files else None
    labels = tmp_path / "labels.txt" if "labels.txt" in files else None
    with pytest.raises(EvaluationError, match=message):
        ImageFolder(tmp_path, image_list, labels)


def test_missing_folders_and_empty_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="is not a folder"):
        ImageFolder(tmp_path / "nowhere")
    with pytest.raises(EvaluationError, match="no image files"):
        ImageFolder(tmp_path)
    with pytest.raises(EvaluationError, match="image_list: cannot read"):
        ImageFolder(_folder(tmp_path), tmp_path / "missing.txt")


def test_a_listed_file_that_is_missing_becomes_an_error_sample(tmp_path: Path) -> None:
    folder = ImageFolder(_folder(tmp_path), ["gone.jpg", "b.jpg"])
    assert folder[0].inputs is None and "gone.jpg" in folder[0].error
    assert folder[1].error is None


def test_preprocessing_is_checked() -> None:
    with pytest.raises(EvaluationError, match="size must be"):
        Preprocessing(size=(0, 3))
    for std in ((1.0, 0.0, 1.0), (1.0, float("inf"), 1.0), (1.0, 1.0)):
        with pytest.raises(
            EvaluationError,
            match=re.escape(
                f"std must be three finite positive numbers, one per channel; got {std}"
            ),
        ):
            Preprocessing(std=std)
    # A NaN statistic makes every input NaN: refused here, not reported as a model's failure.
    with pytest.raises(
        EvaluationError,
        match=re.escape("mean must be three finite numbers, one per channel; got (nan, 0.0, 0.0)"),
    ):
        Preprocessing(mean=(float("nan"), 0.0, 0.0))
    assert Preprocessing(mean=(-1.0, 0.0, 2.0)).mean == (-1.0, 0.0, 2.0)  # any finite mean


def test_a_name_given_two_classes_is_refused_naming_the_file_and_both_lines(
    tmp_path: Path,
) -> None:
    _folder(tmp_path)
    labels = tmp_path / "labels.txt"
    labels.write_text("# name class\nb.jpg 1\na.PNG 2\n\nb.jpg 2 n01\n")
    message = f"labels: '{labels}' gives 'b.jpg' two classes, 1 on line 2 and 2 on line 5; keep one"
    with pytest.raises(EvaluationError, match=re.escape(message)):
        ImageFolder(tmp_path, labels=labels)
    labels.write_text("b.jpg 1\na.PNG 2\nb.jpg 1 n01\n")  # the same class again: no conflict
    assert ImageFolder(tmp_path, labels=labels).labels == {"b.jpg": 1, "a.PNG": 2}


def test_labels_may_leave_images_out_which_are_then_unlabelled(tmp_path: Path) -> None:
    _folder(tmp_path)
    (tmp_path / "labels.txt").write_text("b.jpg 4\n")
    folder = ImageFolder(tmp_path, labels=tmp_path / "labels.txt")
    assert folder.unlabelled == ["a.PNG"]
    assert [(sample.name, sample.label) for sample in folder] == [("a.PNG", None), ("b.jpg", 4)]
    assert ImageFolder(tmp_path).unlabelled == []  # no labels at all: nothing is missing


@pytest.mark.parametrize("entry", ["../other/c.png", "{other}/c.png", "sub/../../other/c.png"])
def test_list_entries_that_lead_outside_the_folder_are_refused_with_their_line(
    tmp_path: Path, entry: str
) -> None:
    (tmp_path / "images").mkdir()
    root, other = _folder(tmp_path / "images"), tmp_path / "other"
    other.mkdir()
    Image.new("RGB", (4, 4)).save(other / "c.png")
    (root / "link.png").symlink_to(other / "c.png")  # a link to a file elsewhere
    (root / "up").symlink_to(other)  # a link to a folder elsewhere
    entry = entry.format(other=other)
    (tmp_path / "images.txt").write_text(f"b.jpg\n{entry}\n")
    message = (
        f"image_list: line 2 of '{tmp_path / 'images.txt'}', '{entry}', leads outside the "
        f"images folder '{root}'; list files inside it, by their paths relative to it"
    )
    with pytest.raises(EvaluationError, match=re.escape(message)):
        ImageFolder(root, tmp_path / "images.txt")
    with pytest.raises(EvaluationError, match=re.escape(f"image_list: entry 2, '{entry}', leads")):
        ImageFolder(root, ["b.jpg", entry])
    (root / "sub").mkdir()
    Image.new("RGB", (4, 4)).save(root / "sub" / "d.png")
    # Paths that stay inside, and links in the folder, followed as a folder without a list is.
    inside = ImageFolder(root, ["sub/d.png", "sub/../b.jpg", "link.png", "up/c.png"])
    assert [sample.error for sample in inside] == [None, None, None, None]


def test_entries_with_an_image_name_that_cannot_be_read_are_error_samples(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    (root / "gone.png").symlink_to("nowhere.png")  # a link to nothing
    (root / "folder.jpg").mkdir()
    (root / "notes.txt.d").mkdir()  # not an image's name: not listed
    folder = ImageFolder(root)
    assert folder.names == ["a.PNG", "b.jpg", "folder.jpg", "gone.png"]
    errors = {sample.name: sample.error for sample in folder}
    assert errors["folder.jpg"] == f"cannot read image '{root / 'folder.jpg'}': Is a directory"
    assert errors["gone.png"] == (
        f"cannot read image '{root / 'gone.png'}': a symbolic link to 'nowhere.png', which "
        "does not exist"
    )
    assert folder.digest(2) is None and folder.digest(3) is None


def test_the_bundled_photos_read_and_the_digest_follows_names_and_labels() -> None:
    photos = bundled_images()
    assert [p.name for p in photos] == ["astronaut.jpg", "chelsea.png", "coffee.jpg", "rocket.jpg"]
    assert image_list_digest(["a", "b"], [1, None]) != image_list_digest(["b", "a"], [1, None])
    assert image_list_digest(["a"], [1]) != image_list_digest(["a"], [2])


def _png16(path: Path, values: np.ndarray) -> Path:
    """A 16-bit PNG of ``H x W x 3`` (RGB) values, written by hand: Pillow writes no 16-bit RGB."""
    height, width, _ = values.shape
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in values)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)  # 16 bits, colour type RGB
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)
    return path


def _gradient(low: int, high: int, dtype: type = np.uint16) -> np.ndarray:
    return np.linspace(low, high, 24 * 32).reshape(24, 32).astype(dtype)


def test_a_16_bit_grey_png_is_scaled_to_its_range_not_clipped(tmp_path: Path) -> None:
    values = _gradient(0, 65535)
    Image.fromarray(values).save(tmp_path / "grey16.png")
    with Image.open(tmp_path / "grey16.png") as opened:
        assert opened.mode == "I;16"  # Pillow's RGB conversion of it clips at 255
    pixels = read_image(tmp_path / "grey16.png", size=None)[0]
    assert pixels.shape == (3, 24, 32)
    assert abs(pixels.mean().item() - values.mean() / 65535) < 1 / 255
    torch.testing.assert_close(pixels[0], pixels[2])
    torch.testing.assert_close(pixels[0], torch.from_numpy(values / 65535).float())


def test_a_16_bit_rgb_png_is_scaled_to_its_range(tmp_path: Path) -> None:
    values = np.stack([_gradient(0, 65535), _gradient(65535, 0), _gradient(1000, 20000)], axis=-1)
    pixels = read_image(_png16(tmp_path / "rgb16.png", values), size=None)[0]
    means = pixels.mean(dim=(1, 2)).numpy()
    np.testing.assert_allclose(means, values.mean(axis=(0, 1)) / 65535, atol=1 / 255)


def test_a_big_endian_16_bit_tiff_is_scaled_to_its_range(tmp_path: Path) -> None:
    values = _gradient(0, 40000)
    Image.fromarray(values.astype(">u2")).save(tmp_path / "grey16b.tiff")
    with Image.open(tmp_path / "grey16b.tiff") as opened:
        assert opened.mode == "I;16B"
    pixels = read_image(tmp_path / "grey16b.tiff", size=None)[0]
    assert abs(pixels.mean().item() - values.mean() / 65535) < 1 / 255


def test_a_16_bit_image_that_pillow_opens_as_32_bit_uses_the_16_bit_range(tmp_path: Path) -> None:
    values = _gradient(0, 30000)
    Image.fromarray(values).save(tmp_path / "grey16.pgm")
    with Image.open(tmp_path / "grey16.pgm") as opened:
        assert opened.mode == "I"
    pixels = read_image(tmp_path / "grey16.pgm", size=None)[0]
    assert abs(pixels.mean().item() - values.mean() / 65535) < 1 / 255


def test_32_bit_integer_and_float_images_are_scaled_to_their_range(tmp_path: Path) -> None:
    integers = _gradient(0, 2**31 - 1, np.int64).astype(np.int32)
    Image.fromarray(integers).save(tmp_path / "int32.tiff")
    pixels = read_image(tmp_path / "int32.tiff", size=None)[0]
    assert abs(pixels.mean().item() - integers.mean() / (2**31 - 1)) < 1 / 255
    floats = np.linspace(-0.5, 1.5, 24 * 32, dtype=np.float32).reshape(24, 32)
    Image.fromarray(floats).save(tmp_path / "float.tiff")
    pixels = read_image(tmp_path / "float.tiff", size=None)[0]
    assert pixels.min().item() == 0.0 and pixels.max().item() == 1.0
    assert abs(pixels.mean().item() - floats.clip(0, 1).mean()) < 1 / 255


def test_a_folder_reads_16_bit_images_in_range_too(tmp_path: Path) -> None:
    Image.fromarray(np.full((8, 8), 13107, np.uint16)).save(tmp_path / "grey16.png")  # 0.2
    sample = ImageFolder(tmp_path, preprocessing=Preprocessing(mean=(0, 0, 0), std=(1, 1, 1)))[0]
    torch.testing.assert_close(sample.inputs, torch.full((3, 224, 224), 0.2))


def test_samples_carry_the_digest_of_their_files_bytes(tmp_path: Path) -> None:
    folder = ImageFolder(_folder(tmp_path), ["a.PNG", "notes.txt", "gone.jpg"])
    expected = [
        hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
        for name in ("a.PNG", "notes.txt")
    ]
    readable, undecodable, missing = folder[0], folder[1], folder[2]
    assert readable.error is None and readable.digest == expected[0]
    # A file that is there but cannot be decoded still has bytes to identify it by.
    assert undecodable.inputs is None and "decode" in undecodable.error
    assert undecodable.digest == expected[1]
    assert missing.inputs is None and missing.digest is None
    assert [folder.digest(index) for index in range(3)] == [*expected, None]


def test_digest_reads_without_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = ImageFolder(_folder(tmp_path))
    monkeypatch.setattr(Image, "open", lambda *args, **kwargs: pytest.fail("decoded"))
    assert folder.digest(1) == hashlib.sha256((tmp_path / "b.jpg").read_bytes()).hexdigest()


def test_a_decompression_bomb_becomes_an_error_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = ImageFolder(_folder(tmp_path))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # b.jpg has 300 pixels, over twice that
    sample = folder[1]
    assert sample.inputs is None and sample.name == "b.jpg"
    assert "'" + str(tmp_path / "b.jpg") + "'" in sample.error
    assert "exceeds limit of 200 pixels" in sample.error
    assert sample.digest == hashlib.sha256((tmp_path / "b.jpg").read_bytes()).hexdigest()
    assert folder[0].error is None  # a.PNG, 25 pixels


def test_a_decompression_bomb_warning_raised_as_an_error_is_an_evaluation_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _folder(tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)  # between the limits: only a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as python -W error
        with pytest.raises(EvaluationError, match=r"b\.jpg.*exceeds limit of 200 pixels"):
            read_image(tmp_path / "b.jpg")
    with pytest.warns(Image.DecompressionBombWarning):  # otherwise Pillow's warning, and it reads
        assert read_image(tmp_path / "b.jpg").shape == (1, 3, 224, 224)


@pytest.mark.parametrize("argument", ["image_list", "labels"])
def test_a_list_file_that_is_not_utf8_names_the_argument_and_file(
    tmp_path: Path, argument: str
) -> None:
    _folder(tmp_path)
    text = "b.jpg 1\n" if argument == "labels" else "b.jpg\n"
    (tmp_path / "list.txt").write_bytes(text.encode("utf-16"))
    files = {argument: tmp_path / "list.txt"}
    message = f"{argument}: '{tmp_path / 'list.txt'}' is not UTF-8 text"
    with pytest.raises(EvaluationError, match=re.escape(message)):
        ImageFolder(tmp_path, **files)


def test_a_list_file_may_start_with_a_byte_order_mark(tmp_path: Path) -> None:
    _folder(tmp_path)
    (tmp_path / "images.txt").write_text("\ufeffb.jpg\n", encoding="utf-8")
    (tmp_path / "labels.txt").write_text("\ufeffb.jpg 3\n", encoding="utf-8")
    folder = ImageFolder(tmp_path, tmp_path / "images.txt", tmp_path / "labels.txt")
    assert folder.names == ["b.jpg"] and folder[0].label == 3


def test_samples_record_the_original_size_before_preprocessing(tmp_path: Path) -> None:
    folder = ImageFolder(_folder(tmp_path), ["a.PNG", "b.jpg", "gone.png"])
    assert [sample.size for sample in folder] == [(5, 5), (10, 30), None]
    assert folder[1].inputs.shape == (3, 224, 224)


def test_boxes_and_masks_are_carried_as_the_pixels_are() -> None:
    preprocessing = Preprocessing(size=(224, 224))
    # A 400-wide, 300-high photo: the whole of it is the whole frame; x scales by 0.56, y by
    # 224 / 300; what leaves the frame is cut.
    boxes = torch.tensor([[0.0, 0.0, 400.0, 300.0], [40.0, 30.0, 200.0, 150.0], [-8, 0, 50, 600]])
    carried = preprocessing.boxes(boxes, (300, 400))
    expected = torch.tensor([[0.0, 0.0, 224.0, 224.0], [22.4, 22.4, 112.0, 112.0], [0, 0, 28, 224]])
    torch.testing.assert_close(carried, expected)
    assert type(carried) is torch.Tensor and carried.dtype == torch.float32
    mask = torch.zeros(3, 4, dtype=torch.bool)
    mask[1, 1:3] = True
    carried_mask = Preprocessing(size=(6, 8)).mask(mask)
    expected_mask = torch.zeros(6, 8, dtype=torch.bool)
    expected_mask[2:4, 2:6] = True
    assert type(carried_mask) is torch.Tensor and torch.equal(carried_mask, expected_mask)
    with pytest.raises(ValueError, match="K x 4"):
        preprocessing.boxes(torch.zeros(4), (3, 3))
