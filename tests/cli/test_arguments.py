"""Rules every command shares: ``--out`` never writes over an input and says what it replaces;
``--threads`` and ``--size`` are bounded by usage errors."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

from captum_polycam.cli import evaluate as cli_evaluate
from captum_polycam.cli import explain as cli_explain
from captum_polycam.cli import explain_detection as cli_explain_detection
from captum_polycam.cli import sanity as cli_sanity
from captum_polycam.cli.arguments import check_outputs
from captum_polycam.cli.main import build_parser, main
from captum_polycam.resources.errors import EvaluationError
from captum_polycam.resources.images import bundled_image
from tests.conftest import error_line

TINY_MODEL = "tests.evaluation.tiny_models:tiny_classifier"
DETECTOR = "tests.cli.test_explain_detection:known_answer_detector"
NEVER_OVER_INPUTS = "the command never writes over its inputs: give another --out"


def _photo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (10, 6), (60, 50, 200)).save(path)
    return path


def _record_loading(monkeypatch: pytest.MonkeyPatch, module: object, loader: str) -> list[str]:
    """Record the models ``module`` loads (then load them), to show how far a command got."""
    loaded: list[str] = []
    load: Callable[..., object] = getattr(module, loader)

    def recording(name: str, *args: object) -> object:
        loaded.append(name)
        return load(name, *args)

    monkeypatch.setattr(module, loader, recording)
    return loaded


def _spellings(tmp_path: Path, photo: Path) -> dict[str, str]:
    """Other ways of naming ``photo``, for ``--out``."""
    (tmp_path / "link.png").symlink_to(photo)
    os.link(photo, tmp_path / "hard.png")
    (tmp_path / "sub").mkdir()
    return {
        "same": str(photo),
        "symlink": str(tmp_path / "link.png"),
        "hard link": str(tmp_path / "hard.png"),
        "dot-dot": str(tmp_path / "sub" / ".." / photo.name),
        "relative": photo.name,  # the working folder is tmp_path
    }


@pytest.mark.parametrize("spelling", ["same", "symlink", "hard link", "dot-dot", "relative"])
def test_explain_refuses_an_out_that_is_its_image(tmp_path, capsys, monkeypatch, spelling) -> None:
    monkeypatch.chdir(tmp_path)
    photo = _photo(tmp_path / "photo.png")
    before = photo.read_bytes()
    out = _spellings(tmp_path, photo)[spelling]
    loaded = _record_loading(monkeypatch, cli_explain, "load_model")
    command = ["explain", str(photo), "--model", TINY_MODEL, "--target", "1", "--quiet"]
    assert main([*command, "--out", out]) == 2
    assert error_line(capsys) == (
        f"captum-polycam: error: --out: {out!r} is the image {str(photo)!r}; {NEVER_OVER_INPUTS}\n"
    )
    assert photo.read_bytes() == before
    assert loaded == []  # refused before the model is loaded


def test_explain_refuses_an_out_that_is_any_of_its_images(tmp_path, capsys) -> None:
    first, second = _photo(tmp_path / "a.png"), _photo(tmp_path / "b.jpg")
    before = second.read_bytes()
    command = ["explain", str(first), str(second), "--model", TINY_MODEL, "--quiet"]
    assert main([*command, "--out", str(second)]) == 2
    assert f"--out: {str(second)!r} is the image {str(second)!r}" in error_line(capsys)
    assert second.read_bytes() == before


@pytest.mark.parametrize("spelling", ["same", "symlink", "hard link"])
def test_explain_detection_refuses_an_out_that_is_its_image(
    tmp_path, capsys, monkeypatch, spelling
) -> None:
    photo = tmp_path / "street.png"
    photo.write_bytes(bundled_image().read_bytes())
    before = photo.read_bytes()
    out = _spellings(tmp_path, photo)[spelling]
    loaded = _record_loading(monkeypatch, cli_explain_detection, "load_detector")
    command = ["explain-detection", str(photo), "--model", DETECTOR, "--score-threshold", "0.1"]
    assert main([*command, "--layers", "fine", "coarse", "--quiet", "--out", out]) == 2
    assert error_line(capsys) == (
        f"captum-polycam: error: --out: {out!r} is the image {str(photo)!r}; {NEVER_OVER_INPUTS}\n"
    )
    assert photo.read_bytes() == before
    assert loaded == []


@pytest.mark.parametrize("linked", [False, True])
def test_sanity_refuses_an_out_that_would_write_over_its_image(
    tmp_path, capsys, monkeypatch, linked
) -> None:
    """``sanity`` writes sanity.png in its --out folder: an image of that name is an input."""
    out = tmp_path / "results"
    written = out / "sanity.png"
    if linked:  # the folder holds a link to the photo, which writing would follow
        photo = _photo(tmp_path / "photo.png")
        out.mkdir()
        written.symlink_to(photo)
    else:
        photo = _photo(written)
    before = photo.read_bytes()
    loaded = _record_loading(monkeypatch, cli_sanity, "load_model")
    command = ["sanity", str(photo), "--model", TINY_MODEL, "--methods", "random", "--blocks", "1"]
    assert main([*command, "--device", "cpu", "--out", str(out), "--quiet"]) == 2
    assert error_line(capsys) == (
        f"captum-polycam: error: --out: {str(written)!r} is the image {str(photo)!r}; "
        f"{NEVER_OVER_INPUTS}\n"
    )
    assert photo.read_bytes() == before
    assert loaded == []


def test_explain_says_which_existing_figure_it_replaces(tmp_path, capsys) -> None:
    photo = _photo(tmp_path / "photo.png")
    out = tmp_path / "maps.png"
    out.write_bytes(b"an older figure")
    command = ["explain", str(photo), "--model", TINY_MODEL, "--target", "1", "--quiet"]
    assert main([*command, "--out", str(out)]) == 0
    assert capsys.readouterr().err == (
        f"captum-polycam: --out: {str(out)!r} exists and will be replaced\n"
    )
    assert out.read_bytes().startswith(b"\x89PNG")
    assert main([*command, "--out", str(tmp_path / "new.png")]) == 0
    assert capsys.readouterr().err == ""  # a new file: nothing to say


def test_explain_detection_says_which_existing_figure_it_replaces(tmp_path, capsys) -> None:
    out = tmp_path / "boxes.png"
    out.write_bytes(b"an older figure")
    command = ["explain-detection", str(bundled_image()), "--model", DETECTOR, "--quiet"]
    command += ["--layers", "fine", "coarse", "--score-threshold", "0.1"]
    assert main([*command, "--out", str(out)]) == 0
    assert capsys.readouterr().err == (
        f"captum-polycam: --out: {str(out)!r} exists and will be replaced\n"
    )
    with Image.open(out) as figure:  # the photo with its box, then the map
        assert figure.size == (2 * figure.height, figure.height)


def test_sanity_says_which_existing_files_it_replaces(tmp_path, capsys) -> None:
    photo = _photo(tmp_path / "photo.png")
    out = tmp_path / "results"
    command = ["sanity", str(photo), "--model", TINY_MODEL, "--methods", "random", "--blocks", "1"]
    command += ["--device", "cpu", "--out", str(out), "--quiet"]
    assert main(command) == 0
    assert capsys.readouterr().err == ""
    assert main(command) == 0
    names = ", ".join(repr(str(out / name)) for name in ("sanity.csv", "sanity.md", "sanity.png"))
    assert capsys.readouterr().err == f"captum-polycam: --out: {names} exist and will be replaced\n"


def test_an_output_folder_that_is_an_input_folder_is_refused(tmp_path, capsys) -> None:
    """The rule ``evaluate`` applies to its --out folder and its --images folder."""
    images = tmp_path / "val"
    images.mkdir()
    (tmp_path / "results").symlink_to(images)
    inputs = [("the --images folder", images), ("the --labels file", None)]
    with pytest.raises(EvaluationError) as refused:
        check_outputs([tmp_path / "results"], inputs)
    assert str(refused.value) == (
        f"--out: {str(tmp_path / 'results')!r} is the --images folder {str(images)!r}; "
        f"{NEVER_OVER_INPUTS}"
    )
    check_outputs([tmp_path / "other"], inputs)  # a new folder: no error, nothing said
    assert capsys.readouterr().err == ""


_COMMANDS = {
    "explain": (cli_explain, []),
    "explain-detection": (cli_explain_detection, ["street.png"]),
    "evaluate": (cli_evaluate, []),
    "sanity": (cli_sanity, []),
}


def _never_run(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace every command's ``run``: argparse must refuse before any of them starts."""
    ran: list[str] = []
    for name, (module, _) in _COMMANDS.items():
        monkeypatch.setattr(module, "run", lambda args, name=name: ran.append(name) or 0)
    return ran


@pytest.mark.parametrize("command", list(_COMMANDS))
@pytest.mark.parametrize("threads", ["100000", "1025", "0"])
def test_threads_out_of_range_is_a_usage_error(command, threads, capsys, monkeypatch) -> None:
    ran = _never_run(monkeypatch)
    before = torch.get_num_threads()
    assert main([command, *_COMMANDS[command][1], "--threads", threads]) == 2
    err = capsys.readouterr().err
    assert f"error: argument --threads: must be from 1 to 1024, got {threads}\n" in err
    assert ran == [] and torch.get_num_threads() == before


@pytest.mark.parametrize("command", list(_COMMANDS))
def test_threads_within_range_are_taken(command) -> None:
    parsed = build_parser().parse_args([command, *_COMMANDS[command][1], "--threads", "1024"])
    assert parsed.threads == 1024


@pytest.mark.parametrize("size", [["100000", "100000"], ["224", "8193"], ["0", "224"]])
def test_evaluate_size_out_of_range_is_a_usage_error(size, capsys, monkeypatch) -> None:
    ran = _never_run(monkeypatch)
    assert main(["evaluate", "--size", *size]) == 2
    wrong = next(side for side in size if not 1 <= int(side) <= 8192)
    err = capsys.readouterr().err
    assert f"error: argument --size: must be from 1 to 8192 pixels, got {wrong}\n" in err
    assert ran == []


def test_evaluate_size_within_range_is_taken() -> None:
    assert build_parser().parse_args(["evaluate", "--size", "8192", "1"]).size == [8192, 1]
