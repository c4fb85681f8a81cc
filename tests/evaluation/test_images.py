"""Image folders, list and label files, and the paper's preprocessing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from captum_polycam.evaluation import EvaluationError, ImageFolder, Preprocessing, bundled_images
from captum_polycam.evaluation.images import image_list_digest


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
    folder = ImageFolder(tmp_path, tmp_path / "images.txt", tmp_path / "labels.txt",
                         Preprocessing(size=(8, 12)))  # fmt: skip
    assert folder.names == ["b.jpg"]
    assert folder[0].label == 7 and folder[0].inputs.shape == (3, 8, 12)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"images.txt": "a.PNG\na.PNG\n"}, "names appear twice: a.PNG"),
        ({"labels.txt": "a.PNG seven\n"}, "line 1 of .* is not 'file_name class_index'"),
        ({"labels.txt": "a.PNG 1\n"}, "no class for 1 image"),
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
    with pytest.raises(EvaluationError, match="std positive"):
        Preprocessing(std=(1.0, 0.0, 1.0))


def test_the_bundled_photos_read_and_the_digest_follows_names_and_labels() -> None:
    photos = bundled_images()
    assert [p.name for p in photos] == ["astronaut.jpg", "chelsea.png", "coffee.jpg",
                                        "rocket.jpg"]  # fmt: skip
    assert image_list_digest(["a", "b"], [1, None]) != image_list_digest(["b", "a"], [1, None])
    assert image_list_digest(["a"], [1]) != image_list_digest(["a"], [2])
