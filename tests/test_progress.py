"""Progress that says something: status lines without a terminal, totals that are revised,
and the engine's passes counted by the job that runs them."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from captum_polycam import PolyCam
from captum_polycam._progress import Progress, current_progress, progress_mode
from captum_polycam.evaluation import EvaluationConfig, evaluate
from captum_polycam.resources import Preprocessing


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_mode_follows_the_stream() -> None:
    assert progress_mode(False, Terminal()) == "off"
    assert progress_mode(True, Terminal()) == "bar"
    assert progress_mode(True, io.StringIO()) == "lines"


def test_lines_come_at_the_interval_with_rate_and_time_left() -> None:
    clock, log = Clock(), io.StringIO()
    job = Progress("evaluate", 1000, mode="lines", interval=30, stream=log, clock=clock)
    job.describe("images 1-4 of 8")
    clock.now += 10
    job.update(100)  # 10 s in: no line yet
    assert log.getvalue() == ""
    clock.now += 20
    job.update(200)  # 30 s in: 300 done at 10 per second, 700 left
    assert log.getvalue() == (
        "evaluate: 300 of 1,000 passes (30%), 10.0 passes/s, about 1 min 10 s left, "
        "images 1-4 of 8\n"
    )
    job.expect(-400)  # dead channels: the batch cost less than guessed
    clock.now += 30
    job.update(300)
    assert log.getvalue().splitlines()[-1].startswith("evaluate: 600 of 600 passes (100%)")
    job.close()
    assert log.getvalue().splitlines()[-1] == "evaluate: done, 600 passes in 1 min 00 s (10.0/s)"


def test_off_writes_nothing_and_a_total_never_falls_below_what_is_done() -> None:
    log = io.StringIO()
    job = Progress("sanity", 10, mode="off", stream=log)
    job.update(8)
    job.expect(-5)
    assert job.total == 8
    job.close()
    assert log.getvalue() == ""


def test_a_job_counts_the_engines_passes_instead_of_a_bar_per_call(
    tiny_cnn: nn.Module, tiny_inputs: torch.Tensor
) -> None:
    log = io.StringIO()
    polycam = PolyCam(tiny_cnn, ["block1", "block3"], "plus")
    job = Progress("job", mode="lines", stream=log)
    with job.current():
        assert current_progress() is job
        result = polycam.decompose(tiny_inputs, show_progress=True)
    assert current_progress() is None
    # The masked inputs, and the black image that PCAM+ unveils from, one per example.
    assert job.done == result.passes + len(tiny_inputs)
    # One final line, the job's: the engine drew nothing of its own.
    assert re.fullmatch(rf"job: done, {job.done} passes in 0 s \(.*/s\)\n", log.getvalue())


def test_alone_the_engine_reports_its_call(
    tiny_cnn: nn.Module, tiny_inputs: torch.Tensor, capsys: pytest.CaptureFixture[str]
) -> None:
    result = PolyCam(tiny_cnn, ["block1", "block3"], "plus").decompose(
        tiny_inputs, show_progress=True
    )
    err = capsys.readouterr().err  # not a terminal: status lines, then the final one
    assert re.search(rf"done, {result.passes + len(tiny_inputs)} passes in \d+ s", err)


def test_a_headless_evaluation_reports_every_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    from tests.conftest import TinyCNN

    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(3):
        Image.new("RGB", (20, 20), (40 * index, 90, 200)).save(folder / f"p{index}.png")
    config = EvaluationConfig(
        model="tiny",
        methods=("pcam+", "random"),
        n_steps=8,
        batch_size=2,
        preprocessing=Preprocessing(size=(16, 16)),
    )
    evaluate(folder, tmp_path / "out", config, model=TinyCNN().eval(), num_workers=0)
    final = capsys.readouterr().err.strip().splitlines()[-1]
    done = int(re.fullmatch(r"evaluate: done, ([\d,]+) passes in \d+ s \(.*\)", final)[1])
    # Every pass but the clean ones: Poly-CAM's masked inputs, and for each image and method
    # its 2 x 8 insertion and deletion steps and its masked input.
    assert done > 3 * 2 * (2 * 8 + 1)
