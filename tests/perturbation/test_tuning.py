"""Pass sizes and layouts chosen by measurement, remembered per model, halved on OOM."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from captum_polycam.perturbation import PerturbationPlan, PerturbationScorer, ScoringOptions
from captum_polycam.perturbation.scoring import _TUNER
from captum_polycam.perturbation.tuning import PassShape, cpu_flags, native_support, slowdown


class Timed(nn.Module):
    """Scores ``mean(x)`` in three classes, taking ``1 ms + 0.2 ms per input`` a pass (so a
    bigger pass is faster per input), but 4 ms per input above 8 inputs, and twice as long on
    channels-last inputs: the fastest pass holds 8 contiguous inputs. The time passes on the
    tuner's clock, not the machine's, so that its load cannot change the choice."""

    def __init__(self) -> None:
        super().__init__()
        self.passes: list[tuple[int, bool]] = []

    def forward(self, x: Tensor) -> Tensor:
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        self.passes.append((len(x), channels_last))
        seconds = 0.001 + len(x) * (0.0002 if len(x) <= 8 else 0.004)
        _CLOCK.now += seconds * (2 if channels_last else 1)
        mean = x.mean(dim=(1, 2, 3))
        return torch.stack([mean, -mean, torch.zeros_like(mean)], dim=1)


class RunsOutOfMemory(nn.Module):
    """A model whose passes of more than 3 inputs fail as a GPU's would."""

    def __init__(self) -> None:
        super().__init__()
        self.passes: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.passes.append(len(x))
        if len(x) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        mean = x.mean(dim=(1, 2, 3))
        return torch.stack([mean, -mean], dim=1)


def _plan(inputs: Tensor, count: int) -> PerturbationPlan:
    """Item ``i`` is example ``i % N`` scaled by ``i / count``."""
    example_of = torch.arange(count) % len(inputs)

    def fill(start: int, stop: int, out: Tensor) -> None:
        factors = torch.arange(start, stop, dtype=inputs.dtype, device=inputs.device) / count
        out.copy_(inputs[example_of[start:stop]] * factors[:, None, None, None])

    return PerturbationPlan(example_of, fill)


class _Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


_CLOCK = _Clock()


@pytest.fixture(autouse=True)
def _fresh_tuner(monkeypatch: pytest.MonkeyPatch) -> None:
    _TUNER.forget()
    monkeypatch.setattr(_TUNER, "clock", _CLOCK)


def test_the_fastest_pass_is_measured_then_remembered() -> None:
    model = Timed()
    inputs = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    scorer = PerturbationScorer(model)
    batch = scorer.prepare(inputs)
    model.passes.clear()
    first = scorer.score(batch, _plan(inputs, 400))
    assert {(8, False), (8, True)} <= set(model.passes)  # both layouts were timed
    key = ((3, 4, 4), torch.float32, "cpu", "fp32")
    assert _TUNER.chosen(model, key) == PassShape(8, channels_last=False)

    model.passes.clear()
    again = PerturbationScorer(model).score(batch, _plan(inputs, 400))  # another scorer
    assert {size for size, _ in model.passes[:-1]} == {8}  # remembered: no probe
    assert all(not channels_last for _, channels_last in model.passes)
    torch.testing.assert_close(again, first)


def test_measured_passes_give_the_fixed_passes_scores() -> None:
    model = Timed()
    inputs = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    fixed = PerturbationScorer(model, options=ScoringOptions(perturbations_per_eval=3))
    expected = fixed.score(fixed.prepare(inputs), _plan(inputs, 300))
    tuned = PerturbationScorer(model)
    torch.testing.assert_close(tuned.score(tuned.prepare(inputs), _plan(inputs, 300)), expected)


def test_an_explicit_perturbations_per_eval_wins_and_short_plans_use_the_default() -> None:
    model = Timed()
    inputs = torch.rand(2, 3, 4, 4)
    scorer = PerturbationScorer(model, options=ScoringOptions(perturbations_per_eval=5))
    batch = scorer.prepare(inputs)
    model.passes.clear()
    scorer.score(batch, _plan(inputs, 40))
    assert [size for size, _ in model.passes] == [10, 10, 10, 10]
    model.passes.clear()
    PerturbationScorer(model).score(batch, _plan(inputs, 12))  # too short to measure
    assert [size for size, _ in model.passes] == [4, 4, 4]  # 2 per example on a CPU


def test_an_explicit_perturbations_per_eval_still_has_its_layout_measured() -> None:
    model = Timed()  # contiguous passes are the faster here
    inputs = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    inputs = inputs.contiguous(memory_format=torch.channels_last)
    fixed = PerturbationScorer(model, options=ScoringOptions(perturbations_per_eval=2))
    batch = fixed.prepare(inputs)
    model.passes.clear()
    scores = fixed.score(batch, _plan(inputs, 256))  # 64 passes of 4: enough to measure
    # Each layout sets up then times one pass on the first items, which are scored again.
    probe = [(4, False), (4, False), (4, True), (4, True)]
    assert model.passes == probe + [(4, False)] * 64
    key = ((3, 4, 4), torch.float32, "cpu", "fp32", 4)
    assert _TUNER.chosen(model, key) == PassShape(4, channels_last=False)
    model.passes.clear()
    again = fixed.score(batch, _plan(inputs, 256))
    assert model.passes == [(4, False)] * 64  # remembered
    torch.testing.assert_close(again, scores, rtol=0, atol=0)
    model.passes.clear()
    short = PerturbationScorer(model, options=ScoringOptions(perturbations_per_eval=3))
    short.score(batch, _plan(inputs, 378))  # 63 passes of 6: too short to measure
    assert model.passes == [(6, True)] * 63  # the caller's layout


def test_a_pass_that_runs_out_of_memory_is_halved_and_retried() -> None:
    model = RunsOutOfMemory()
    inputs = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    scorer = PerturbationScorer(model, options=ScoringOptions(perturbations_per_eval=4))
    batch = scorer.prepare(inputs)
    model.passes.clear()
    scores = scorer.score(batch, _plan(inputs, 10))
    assert model.passes[:3] == [8, 4, 2] and set(model.passes[3:]) == {2}
    exact = PerturbationScorer(model, options=ScoringOptions(perturbations_per_eval=1))
    torch.testing.assert_close(scores, exact.score(batch, _plan(inputs, 10)))


def test_one_input_that_runs_out_of_memory_is_an_error() -> None:
    class FitsOnlyTheCleanPass(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def forward(self, x: Tensor) -> Tensor:
            self.calls += 1
            if self.calls > 1:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return x.mean(dim=(1, 2, 3))[:, None].repeat(1, 2)

    scorer = PerturbationScorer(
        FitsOnlyTheCleanPass(), options=ScoringOptions(perturbations_per_eval=2)
    )
    batch = scorer.prepare(torch.rand(1, 3, 4, 4))
    with pytest.raises(torch.OutOfMemoryError):
        scorer.score(batch, _plan(batch.inputs, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_scoring_is_measured_and_close_to_the_cpu(precision: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    ).eval()
    inputs = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    cpu = PerturbationScorer(model)
    expected = cpu.score(cpu.prepare(inputs), _plan(inputs, 3000))
    gpu = PerturbationScorer(model.cuda(), options=ScoringOptions(precision=precision))
    scores = gpu.score(gpu.prepare(inputs.cuda()), _plan(inputs.cuda(), 3000))
    assert scores.device.type == "cuda" and scores.dtype == torch.float32
    # cuDNN's convolutions use TF32 by default, so even fp32 differs from the CPU's.
    torch.testing.assert_close(scores.cpu(), expected, atol=1e-2, rtol=0)
    key = ((3, 16, 16), torch.float32, "cuda:0", precision)
    assert _TUNER.chosen(model, key) is not None


# A lowered precision measured against fp32 on a CPU.


def test_slowdown_times_the_fastest_of_two_passes_after_a_set_up_pass() -> None:
    now = [0.0]
    durations = {False: iter([9.0, 2.0, 3.0]), True: iter([90.0, 40.0, 34.0])}  # set-up first
    calls: list[bool] = []

    def run(lowered: bool) -> None:
        calls.append(lowered)
        now[0] += next(durations[lowered])

    assert slowdown(run, clock=lambda: now[0]) == 17.0  # 34 / 2
    assert calls == [False] * 3 + [True] * 3


@pytest.mark.parametrize(
    ("precision", "flags", "native"),
    [
        ("bf16", {"avx", "avx2", "fma"}, False),  # this machine's AMD EPYC
        ("bf16", {"avx2", "avx512f", "avx512_bf16"}, True),  # Zen 4, Cooper Lake
        ("bf16", {"avx2", "amx_tile", "amx_bf16"}, True),  # Sapphire Rapids
        ("bf16", {"fp", "asimd", "bf16"}, True),  # an Arm Neoverse V1
        ("fp16", {"avx2", "amx_bf16"}, False),
        ("fp16", {"avx512_fp16"}, True),
        ("bf16", None, None),  # flags unknown
    ],
)
def test_native_support_reads_the_cpu_flags(precision, flags, native) -> None:
    assert native_support(precision, None if flags is None else frozenset(flags)) is native


def test_cpu_flags_come_from_proc_cpuinfo(tmp_path) -> None:
    x86 = tmp_path / "x86"
    x86.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx avx2\n\n"
        "processor\t: 1\nflags\t\t: fpu avx avx2\n"
    )
    assert cpu_flags(x86) == frozenset({"fpu", "avx", "avx2"})
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")
    assert cpu_flags(arm) == frozenset({"fp", "asimd", "bf16"})
    assert cpu_flags(tmp_path / "missing") is None
    assert cpu_flags(tmp_path) is None  # not a file
