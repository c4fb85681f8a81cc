"""Ground truth from the files people have: each format's reading and box convention, matching
a run's images, the classes that count, carrying boxes and masks into the input frame, and a
one-line error naming the file, the image and the fault for every bad input."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from captum_polycam.resources import (
    FORMATS,
    IMAGENET_WNIDS,
    Annotation,
    EvaluationError,
    GroundTruth,
    Preprocessing,
    boxes_for_class,
    imagenet_class_index,
    in_input_frame,
    read_ground_truth,
)


def _xml(
    name: str, objects: list[tuple[str, tuple[object, ...]]], size: tuple[object, object]
) -> str:
    """A Pascal VOC / ImageNet annotation: ``objects`` of ``(class, (xmin, ymin, xmax, ymax))``;
    ``size`` is ``(width, height)``."""
    parts = [
        f"<object><name>{label}</name><bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin>"
        f"<xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object>"
        for label, box in objects
    ]
    return (
        f"<annotation><folder>val</folder><filename>{name}</filename><size><width>{size[0]}"
        f"</width><height>{size[1]}</height><depth>3</depth></size>{''.join(parts)}</annotation>"
    )


def _boxes(*rows: tuple[float, float, float, float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 4)


def _error(call: object, *fragments: str) -> str:
    """The message of the EvaluationError that ``call()`` raises, checked to be one line that
    holds every fragment."""
    with pytest.raises(EvaluationError) as raised:
        call()  # type: ignore[operator]
    message = str(raised.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# Reading each format.


def test_imagenet_xml_counts_pixels_from_0_and_keys_images_by_file_stem(tmp_path: Path) -> None:
    folder = tmp_path / "val"
    folder.mkdir()
    first = _xml(
        "ILSVRC2012_val_00000001",
        [("n01751748", (0, 10, 499, 374)), ("n01440764", (5, 6, 7, 8))],
        (500, 375),
    )
    (folder / "ILSVRC2012_val_00000001.xml").write_text(first)
    (folder / "ILSVRC2012_val_00000002.xml").write_text(
        _xml("ILSVRC2012_val_00000002", [("n15075141", (3, 3, 3, 3))], (20, 10))
    )
    truth = read_ground_truth(folder)
    assert isinstance(truth, GroundTruth) and truth.format == "xml" and len(truth) == 2
    one = truth.annotations["ILSVRC2012_val_00000001"]
    # Inclusive indices from 0: the last pixel of a 500 x 375 image is (499, 374).
    torch.testing.assert_close(one.boxes, _boxes((0, 10, 500, 375), (5, 6, 8, 9)))
    assert one.boxes.dtype == torch.float64
    assert one.labels == ("n01751748", "n01440764") and one.size == (375, 500) and one.mask is None
    # A one-pixel box (xmin == xmax) covers that pixel.
    two = truth.annotations["ILSVRC2012_val_00000002"]
    torch.testing.assert_close(two.boxes, _boxes((3, 3, 4, 4)))
    assert two.size == (10, 20)
    # The folder's digest: its sorted relative names, each with its bytes' SHA-256.
    expected = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        expected.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    assert truth.sha256 == expected.hexdigest()
    with pytest.raises(TypeError):
        truth.annotations["x"] = one  # type: ignore[index]


def test_pascal_voc_xml_counts_pixels_from_1(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    # The whole of a 40 x 30 image is xmin=1..xmax=40, ymin=1..ymax=30.
    (tmp_path / "000005.xml").write_text(
        _xml("000005.jpg", [("chair", (1, 1, 40, 30)), ("n01440764", (11, 21, 20, 25))], (40, 30))
    )
    # No filename element, no size, and one image of the folder in a subfolder.
    (tmp_path / "sub" / "000007.xml").write_text(
        "<annotation><object><name> car </name><bndbox><xmin>2.5</xmin><ymin>3</ymin>"
        "<xmax>9</xmax><ymax>7</ymax></bndbox></object></annotation>"
    )
    truth = read_ground_truth(tmp_path, "xml")
    five = truth.annotations["000005"]
    torch.testing.assert_close(five.boxes, _boxes((0, 0, 40, 30), (10, 20, 20, 25)))
    assert five.labels == ("chair", "n01440764") and five.size == (30, 40)
    seven = truth.annotations["000007"]
    torch.testing.assert_close(seven.boxes, _boxes((1.5, 2, 9, 7)))
    assert seven.labels == ("car",) and seven.size is None
    assert seven.source == str(tmp_path / "sub" / "000007.xml")


def test_imagenet_loc_csv_reads_every_box_of_its_prediction_strings(tmp_path: Path) -> None:
    path = tmp_path / "LOC_val_solution.csv"
    path.write_text(
        "ImageId,PredictionString\n"
        "ILSVRC2012_val_00008726,n02119789 255 142 454 329 n02119789 44 21 322 295 \n"
        "ILSVRC2012_val_00000001,n01751748 0 0 499 374\n"
    )
    truth = read_ground_truth(path)
    assert truth.format == "imagenet-csv" and truth.path == str(path)
    assert truth.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    fox = truth.annotations["ILSVRC2012_val_00008726"]
    torch.testing.assert_close(fox.boxes, _boxes((255, 142, 455, 330), (44, 21, 323, 296)))
    assert fox.labels == ("n02119789", "n02119789") and fox.size is None
    torch.testing.assert_close(
        truth.annotations["ILSVRC2012_val_00000001"].boxes, _boxes((0, 0, 500, 375))
    )


def test_coco_boxes_are_corner_and_size_from_0_with_category_names(tmp_path: Path) -> None:
    path = tmp_path / "instances_val.json"
    data = {
        "images": [
            {"id": 7, "file_name": "000000000007.jpg", "width": 640, "height": 480},
            {"id": 9, "file_name": "000000000009.jpg", "width": 10, "height": 20},
        ],
        "annotations": [
            {"id": 1, "image_id": 7, "bbox": [10.5, 20, 100, 50.25], "category_id": 17},
            {"id": 2, "image_id": 7, "bbox": [0, 0, 640, 480], "category_id": 1, "iscrowd": 1},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 17, "name": "cat"}],
    }
    path.write_text(json.dumps(data))
    truth = read_ground_truth(path)
    assert truth.format == "coco"
    seven = truth.annotations["000000000007.jpg"]
    # A crowd region is kept: it is where people are.
    torch.testing.assert_close(seven.boxes, _boxes((10.5, 20, 110.5, 70.25), (0, 0, 640, 480)))
    assert seven.labels == ("cat", "person") and seven.size == (480, 640)
    nine = truth.annotations["000000000009.jpg"]  # listed, with no object
    assert nine.boxes.shape == (0, 4) and nine.labels == () and nine.size == (20, 10)


def test_a_plain_csv_takes_boxes_as_they_are_with_an_optional_class(tmp_path: Path) -> None:
    path = tmp_path / "boxes.csv"
    path.write_text(
        "\ufeffImage, x1 ,y1,x2,y2,class,note\n"
        "sub/cat.jpg,10,20,110,220,281,first\n"
        "\n"
        "sub/cat.jpg,0.5,1.5,2.5,3.5,,second\n"
        "dog.png,1,2,3,4,n02085620,\n"
    )
    truth = read_ground_truth(path)
    assert truth.format == "csv"
    cat = truth.annotations["sub/cat.jpg"]
    torch.testing.assert_close(cat.boxes, _boxes((10, 20, 110, 220), (0.5, 1.5, 2.5, 3.5)))
    assert cat.labels == ("281", "")
    assert truth.annotations["dog.png"].labels == ("n02085620",)
    path.write_text("image,x1,y1,x2,y2\na.jpg,1,2,3,4\n")
    assert read_ground_truth(path).annotations["a.jpg"].labels == ("",)


def test_a_folder_of_masks_reads_each_as_a_bool_mask_by_file_stem(tmp_path: Path) -> None:
    values = np.zeros((3, 4), dtype=np.uint8)
    values[1, 1:3] = 255
    Image.fromarray(values).save(tmp_path / "cat.png")
    Image.fromarray(values // 255).save(tmp_path / "dog.png")  # 0 and 1
    Image.fromarray(values).convert("1").save(tmp_path / "owl.png")  # 1-bit
    Image.fromarray(values).convert("RGB").save(tmp_path / "eel.bmp")  # grey saved in colour
    Image.fromarray(np.zeros((2, 2), dtype=np.uint8)).save(tmp_path / "empty.png")
    truth = read_ground_truth(tmp_path)
    assert truth.format == "masks" and sorted(truth.annotations) == [
        "cat",
        "dog",
        "eel",
        "empty",
        "owl",
    ]
    for key in ("cat", "dog", "owl", "eel"):
        annotation = truth.annotations[key]
        assert annotation.mask is not None and annotation.mask.dtype == torch.bool
        assert torch.equal(annotation.mask, torch.from_numpy(values > 0)), key
        assert annotation.boxes.shape == (0, 4) and annotation.size is None
    assert not truth.annotations["empty"].mask.any()


def test_the_format_is_recognised_from_the_path_or_refused_with_the_formats(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.json").write_text('{"images": []}')
    (tmp_path / "loc.csv").write_text("ImageId , PredictionString\n")
    (tmp_path / "b.csv").write_text("image,x1,y1,x2,y2\n")
    assert read_ground_truth(tmp_path / "a.json").format == "coco"
    assert read_ground_truth(tmp_path / "loc.csv").format == "imagenet-csv"
    assert read_ground_truth(tmp_path / "b.csv").format == "csv"
    assert read_ground_truth(tmp_path / "b.csv", format="csv").annotations == {}
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "a.xml").write_text("<annotation/>")
    Image.new("L", (2, 2)).save(tmp_path / "mixed" / "a.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    for path, reason in [
        (tmp_path / "mixed", "it holds both XML and image files"),
        (tmp_path / "empty", "it holds no XML or image file"),
        (tmp_path / "notes.txt", "a .txt file is none of them"),
    ]:
        _error(
            lambda path=path: read_ground_truth(path),
            f"cannot tell the format of {str(path)!r} ({reason})",
            "xml (a folder",
            "masks (a folder of binary mask images): pass format",
        )
    # Told the format, a mixed folder reads the files of that format.
    assert read_ground_truth(tmp_path / "mixed", "xml").annotations["a"].boxes.shape == (0, 4)
    _error(
        lambda: read_ground_truth(tmp_path / "b.csv", format="yolo"),
        f"format must be one of {', '.join(FORMATS)}; got 'yolo'",
    )
    _error(lambda: read_ground_truth(tmp_path / "gone.csv"), "cannot read", "no such file")
    _error(lambda: read_ground_truth(tmp_path / "empty", "xml"), "holds no xml file")


# Classes.


def test_the_imagenet_wnids_are_the_1000_classes_in_sorted_order() -> None:
    assert len(IMAGENET_WNIDS) == len(set(IMAGENET_WNIDS)) == 1000
    assert list(IMAGENET_WNIDS) == sorted(IMAGENET_WNIDS)
    assert all(re.fullmatch(r"n\d{8}", wnid) for wnid in IMAGENET_WNIDS)
    assert imagenet_class_index("n01440764") == 0  # tench
    assert imagenet_class_index("n15075141") == 999  # toilet tissue
    assert imagenet_class_index("n02119789") == 278  # kit fox
    _error(lambda: imagenet_class_index("n99999999"), "'n99999999' is not one of ImageNet-1k's")


def _annotation(*labels: str) -> Annotation:
    rows = [(float(i), 0.0, float(i) + 1, 1.0) for i in range(len(labels))]
    return Annotation(_boxes(*rows), labels, image="cat", source="boxes.csv")


def test_the_boxes_that_count_are_the_targets_where_the_file_names_classes() -> None:
    wnids = _annotation("n01440764", "n15075141", "n01440764")
    torch.testing.assert_close(boxes_for_class(wnids, 0), _boxes((0, 0, 1, 1), (2, 0, 3, 1)))
    torch.testing.assert_close(boxes_for_class(wnids, 999), _boxes((1, 0, 2, 1)))
    assert boxes_for_class(wnids, 5).shape == (0, 4)  # named classes, none the target's
    numbers = _annotation("3", "", "4")  # a CSV class column, one row without a class
    torch.testing.assert_close(boxes_for_class(numbers, 4), _boxes((2, 0, 3, 1)))
    # VOC or COCO names, or no class at all, name no model class: every box counts.
    for names in (_annotation("cat", "dog"), _annotation("", "")):
        torch.testing.assert_close(boxes_for_class(names, 7), names.boxes)
    voc = _annotation("cat", "dog", "cat")
    # Given classes, only the boxes whose label maps to the target count, even where none does.
    torch.testing.assert_close(boxes_for_class(voc, 1, {"dog": 1}), _boxes((1, 0, 2, 1)))
    assert boxes_for_class(voc, 2, {"dog": 1}).shape == (0, 4)
    by_function = boxes_for_class(voc, 8, lambda label: 8 if label == "cat" else None)
    torch.testing.assert_close(by_function, _boxes((0, 0, 1, 1), (2, 0, 3, 1)))
    _error(
        lambda: boxes_for_class(_annotation("n99999999"), 0),
        "'boxes.csv', image 'cat'",
        "label 'n99999999' is not one of ImageNet-1k's 1000 class wnids; pass classes",
    )


# Into the input frame.


def test_boxes_are_carried_into_the_input_frame_clipped_and_emptied_ones_dropped() -> None:
    # A 400-wide, 300-high photo squashed to 224 x 224: x scales by 0.56, y by 224 / 300.
    annotation = Annotation(
        _boxes((40, 30, 200, 150), (-20, -30, 500, 150), (410, 0, 450, 100), (0, 0, 10, 10)),
        ("n01440764", "n01440764", "n01440764", "n15075141"),
        size=(300, 400),
        image="ILSVRC2012_val_00000001",
        source="val/ILSVRC2012_val_00000001.xml",
    )
    boxes, mask, dropped = in_input_frame(annotation, (300, 400), Preprocessing(), target=0)
    # The first box by hand; the second cut by the frame; the third, right of the photo,
    # left with no width and dropped; the fourth is another class's.
    expected = _boxes((22.4, 22.4, 112.0, 112.0), (0.0, 0.0, 224.0, 112.0))
    torch.testing.assert_close(boxes, expected)
    assert mask is None and dropped == 1 and boxes.dtype == torch.float64
    _error(
        lambda: in_input_frame(annotation, (400, 300), Preprocessing(), 0),
        "'val/ILSVRC2012_val_00000001.xml', image 'ILSVRC2012_val_00000001'",
        "gives its size as 300 x 400 (height x width) but the image is 400 x 300",
    )


def test_a_mask_is_carried_by_nearest_neighbour_and_stays_binary(tmp_path: Path) -> None:
    values = np.zeros((30, 40), dtype=np.uint8)
    values[10:20, 0:20] = 255  # rows 10-19, the left half
    Image.fromarray(values).save(tmp_path / "cat.png")
    annotation = read_ground_truth(tmp_path).annotations["cat"]
    boxes, mask, dropped = in_input_frame(annotation, (30, 40), Preprocessing(size=(60, 20)), 3)
    assert boxes.shape == (0, 4) and dropped == 0
    assert mask is not None and mask.dtype == torch.bool and mask.shape == (60, 20)
    expected = torch.zeros(60, 20, dtype=torch.bool)
    expected[20:40, 0:10] = True
    assert torch.equal(mask, expected)
    _error(
        lambda: in_input_frame(annotation, (40, 30), Preprocessing(), 3),
        f"mask {str(tmp_path / 'cat.png')!r} of image 'cat'",
        "is 30 x 40 (height x width) but the image is 40 x 30",
    )


# Matching a run's images.


def _truth(*keys: str) -> GroundTruth:
    annotations = {key: Annotation(_boxes(), (), image=key) for key in keys}
    return GroundTruth("truth.csv", "csv", "0" * 64, annotations)


def test_images_match_by_name_then_without_suffix_then_by_stem() -> None:
    truth = _truth("sub/cat.jpg", "sub/dog", "ILSVRC2012_val_00000001", "owl.v2", "eel.png")
    assert truth.find("sub/cat.jpg") is truth.annotations["sub/cat.jpg"]
    assert truth.find("sub/dog.JPEG") is truth.annotations["sub/dog"]
    assert truth.find("sub/cat.png") is truth.annotations["sub/cat.jpg"]  # same image, other file
    found = truth.find("val/ILSVRC2012_val_00000001.JPEG")
    assert found is truth.annotations["ILSVRC2012_val_00000001"]
    assert truth.find("other/eel.jpg") is truth.annotations["eel.png"]
    assert truth.find("owl.v2.png") is truth.annotations["owl.v2"]  # only image suffixes go
    assert truth.find("owl.jpg") is None and truth.find("sub/cow.jpg") is None
    _error(
        lambda: _truth("a/cat.jpg", "b/cat.png").find("cat.jpg"),
        "'truth.csv' has several entries that image 'cat.jpg' may be ('a/cat.jpg', 'b/cat.png')",
    )
    found_all, missing = truth.match(["sub/cat.jpg", "x.jpg", "sub/dog.png", "y.png"])
    assert list(found_all) == ["sub/cat.jpg", "sub/dog.png"] and missing == ["x.jpg", "y.png"]


def test_ground_truth_of_none_of_the_runs_images_is_refused() -> None:
    truth = _truth("ILSVRC2012_val_00000001", "ILSVRC2012_val_00000002")
    _error(
        lambda: truth.match(["cat.jpg", "dog.jpg", "owl.jpg"]),
        "no image of the run has annotations in 'truth.csv' (3 of 3 images have none)",
        "it names images as 'ILSVRC2012_val_00000001', the run as 'cat.jpg'",
    )


# Every bad input: one line naming the file, the image and the fault.


def test_bad_boxes_are_refused_naming_the_file_the_image_and_the_values(tmp_path: Path) -> None:
    path = tmp_path / "boxes.csv"
    for row, fault in [
        ("cat.jpg,10,20,10,30", "line 3: box has no width, its right edge not right of its left"),
        ("cat.jpg,10,20,15,5", "line 3: box has no height, its bottom not below its top"),
        ("cat.jpg,nan,20,15,30", "line 3: box is not finite: x1=nan"),
        ("cat.jpg,1,2,inf,4", "line 3: box is not finite"),
        ("cat.jpg,1,two,3,4", "line 3: y1 is not a number: 'two'"),
        ("cat.jpg,1,2,3", "line 3: y2 is not a number: missing"),
    ]:
        path.write_text(f"image,x1,y1,x2,y2\ndog.jpg,0,0,1,1\n{row}\n")
        _error(lambda: read_ground_truth(path), f"{str(path)!r}, image 'cat.jpg', {fault}")
    path.write_text("image,x,y1,x2\n")
    _error(
        lambda: read_ground_truth(path),
        f"{str(path)!r} lacks the column(s) x1, y2",
        "got 'image,x,y1,x2'",
    )


def test_bad_xml_annotations_are_refused(tmp_path: Path) -> None:
    file = tmp_path / "ILSVRC2012_val_00000003.xml"
    where = f"{str(file)!r}, image 'ILSVRC2012_val_00000003'"
    for text, fault in [
        (
            "<annotation><object><name>n01440764</name></object></annotation>",
            ", object 1 (n01440764): no bndbox",
        ),
        (
            _xml("x", [("cat", (5, 9, 10, 2))], (20, 20)),
            ", object 1 (cat): box has no height, its bottom not below its top: xmin=5 ymin=9 "
            "xmax=10 ymax=2",
        ),
        (
            _xml("x", [("cat", (1, 1, 2, 2)), ("dog", (9, 1, 3, 2))], (20, 20)),
            ", object 2 (dog): box has no width",
        ),
        (_xml("x", [("cat", ("a", 1, 2, 2))], (20, 20)), ", object 1 (cat): xmin is not a number"),
        (_xml("x", [], ("wide", 20)), ": size width is not a number: 'wide'"),
        ("<annotation><object>", ": not well-formed XML"),
        (
            "<svg/>",
            ": not an ImageNet or Pascal VOC annotation: its root element is <svg>, not "
            "<annotation>",
        ),
    ]:
        file.write_text(text)
        _error(lambda: read_ground_truth(tmp_path), f"{where}{fault}")
    file.write_text("<annotation/>")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / file.name).write_text("<annotation/>")
    _error(
        lambda: read_ground_truth(tmp_path),
        f"{str(file)!r} and {str(tmp_path / 'sub' / file.name)!r} both annotate image "
        "'ILSVRC2012_val_00000003'",
    )


def test_bad_loc_and_coco_files_are_refused(tmp_path: Path) -> None:
    loc = tmp_path / "LOC_val_solution.csv"
    loc.write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n01440764 1 2 3\n")
    _error(
        lambda: read_ground_truth(loc),
        f"{str(loc)!r}, image 'ILSVRC2012_val_00000001', line 2: PredictionString holds 4 "
        "values, not groups of 5",
    )
    loc.write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n01440764 9 2 3 4\n")
    _error(
        lambda: read_ground_truth(loc),
        f"{str(loc)!r}, image 'ILSVRC2012_val_00000001', line 2, box 1 (n01440764): box has "
        "no width",
    )
    _error(lambda: read_ground_truth(loc, "coco"), f"{str(loc)!r} is not valid JSON")
    coco = tmp_path / "instances.json"
    images = [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 8}]
    for annotation, fault in [
        (
            {"id": 5, "image_id": 2, "bbox": [0, 0, 1, 1], "category_id": 1},
            "annotation 1 (id 5): its image_id 2 is not in images",
        ),
        (
            {"id": 5, "image_id": 1, "bbox": [0, 0, 0, 1], "category_id": 1},
            "image 'a.jpg', annotation 1: box has no width, its right edge not right of its "
            "left: bbox=[0, 0, 0, 1]",
        ),
        (
            {"id": 5, "image_id": 1, "bbox": [0, 0, 1], "category_id": 1},
            "image 'a.jpg', annotation 1: bbox must be [x, y, width, height]; got [0, 0, 1]",
        ),
        (
            {"id": 5, "image_id": 1, "bbox": [0, 0, 1, 1], "category_id": 3},
            "image 'a.jpg', annotation 1: category_id 3 is not in categories",
        ),
    ]:
        data = {"images": images, "annotations": [annotation], "categories": [{"id": 1}]}
        coco.write_text(json.dumps(data))
        _error(lambda: read_ground_truth(coco), f"{str(coco)!r}", fault)
    coco.write_text("[]")
    _error(lambda: read_ground_truth(coco), "is not a COCO instances file")


def test_masks_that_are_not_binary_are_refused_with_the_values_found(tmp_path: Path) -> None:
    values = np.zeros((4, 4), dtype=np.uint8)
    values[0, 0], values[1, 1] = 255, 128
    Image.fromarray(values).save(tmp_path / "cat.png")
    _error(
        lambda: read_ground_truth(tmp_path),
        f"{str(tmp_path / 'cat.png')!r}, image 'cat': the mask is not binary (0 and 255, or 0 "
        "and 1): it holds the values 0, 128, 255",
    )
    colours = np.zeros((4, 4, 3), dtype=np.uint8)
    colours[0, 0] = (255, 0, 0)
    Image.fromarray(colours).save(tmp_path / "cat.png")
    _error(lambda: read_ground_truth(tmp_path), "image 'cat': the mask has colours")
    (tmp_path / "cat.png").write_bytes(b"not a png")
    _error(
        lambda: read_ground_truth(tmp_path),
        "image 'cat': cannot read the mask: not a supported image file",
    )
