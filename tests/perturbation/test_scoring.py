"""The batched perturbation engine: batch preparation, plans, per-example targets."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from captum_polycam.metrics import InsertionDeletion
from captum_polycam.perturbation import (
    ExampleTargets,
    PerturbationPlan,
    PerturbationScorer,
    PreparedBatch,
    ScoringOptions,
    tuning,
)
from captum_polycam.perturbation.scoring import _LOWERED
from tests.conftest import BatchSizes, DropsRowsWhenPerturbed, zero_logits


class Linear(nn.Module):
    """logits = [sum(x), 2 * sum(x), 0]: hand-computable scores."""

    def forward(self, x: Tensor, scale: Tensor | None = None) -> Tensor:
        total = x.sum(dim=(1, 2, 3)) * (1 if scale is None else scale)
        return torch.stack([total, 2 * total, torch.zeros_like(total)], dim=1)


def _scaling_plan(inputs: Tensor, factors: Tensor, example_of: Tensor) -> PerturbationPlan:
    """Item ``i`` is its example multiplied by ``factors[i]``."""

    def fill(start: int, stop: int, out: Tensor) -> None:
        rows = example_of[start:stop]
        out.copy_(inputs[rows] * factors[start:stop, None, None, None])

    return PerturbationPlan(example_of, fill)


@pytest.mark.parametrize("per_eval", [1, 2, 5, 100])
def test_scores_every_item_by_hand(per_eval: int) -> None:
    inputs = torch.tensor([1.0, -2.0]).reshape(2, 1, 1, 1)
    example_of = torch.tensor([0, 0, 1, 1, 1])
    factors = torch.tensor([1.0, 0.5, 1.0, 0.0, 3.0])
    scorer = PerturbationScorer(Linear(), "logit", ScoringOptions(per_eval))
    batch = scorer.prepare(inputs, target=[1, 0])
    scores = scorer.score(batch, _scaling_plan(inputs, factors, example_of))
    # Example 0 scores 2 * x, example 1 scores x.
    torch.testing.assert_close(scores, torch.tensor([2.0, 1.0, -2.0, 0.0, -6.0]))


def test_prepare_runs_the_clean_pass_and_resolves_targets() -> None:
    inputs = torch.tensor([1.0, -2.0]).reshape(2, 1, 1, 1)
    batch = PerturbationScorer(Linear(), "logit").prepare((inputs,), None, torch.tensor([1, 3]))
    assert isinstance(batch, PreparedBatch) and len(batch) == 2
    assert batch.inputs is inputs  # Captum's 1-tuple form, unpacked
    torch.testing.assert_close(batch.scores, torch.tensor([[1.0, 2.0, 0.0], [-6.0, -12.0, 0.0]]))
    assert batch.targets.index.tolist() == [[1], [2]]  # top-1 of each example
    torch.testing.assert_close(batch.target_scores, torch.tensor([2.0, 0.0]))
    assert batch.per_example == (True,)


def test_softmax_scores_by_hand() -> None:
    inputs = torch.tensor([0.5]).reshape(1, 1, 1, 1)
    scorer = PerturbationScorer(Linear(), "softmax", ScoringOptions(4))
    batch = scorer.prepare(inputs, target=2)
    scores = scorer.score(batch, _scaling_plan(inputs, torch.ones(1), torch.tensor([0])))
    expected = 1 / (torch.exp(torch.tensor(0.5)) + torch.exp(torch.tensor(1.0)) + 1)
    torch.testing.assert_close(scores, expected.reshape(1))
    torch.testing.assert_close(batch.target_scores, expected.reshape(1))


def test_per_example_forward_args_follow_their_rows() -> None:
    inputs = torch.tensor([1.0, 1.0]).reshape(2, 1, 1, 1)
    example_of = torch.tensor([1, 0, 1])
    scale = torch.tensor([10.0, -1.0])
    scorer = PerturbationScorer(Linear(), "logit", ScoringOptions(1))
    batch = scorer.prepare(inputs, [0, 0], (scale,))
    scores = scorer.score(batch, _scaling_plan(inputs, torch.ones(3), example_of))
    torch.testing.assert_close(scores, torch.tensor([-1.0, 10.0, -1.0]))


@pytest.mark.parametrize(("per_eval", "sizes"), [(1, [3, 3, 3, 3]), (2, [6, 6]), (5, [12])])
def test_a_pass_holds_perturbations_per_eval_per_example(per_eval: int, sizes: list[int]):
    forward = BatchSizes(zero_logits)
    inputs = torch.rand(3, 1, 2, 2)
    example_of = torch.arange(3).repeat_interleave(4)
    scorer = PerturbationScorer(forward, "logit", ScoringOptions(per_eval))
    batch = scorer.prepare(inputs, 0)
    scorer.score(batch, _scaling_plan(inputs, torch.ones(12), example_of))
    assert forward.sizes == [3, *sizes]  # the clean pass, then the perturbed ones


def test_default_aims_at_four_inputs_per_pass_on_the_cpu() -> None:
    for count in (1, 3, 8):
        forward = BatchSizes(zero_logits)
        inputs = torch.rand(count, 1, 2, 2)
        example_of = torch.arange(count).repeat_interleave(5)
        scorer = PerturbationScorer(forward, "logit")
        scorer.score(
            scorer.prepare(inputs, 0), _scaling_plan(inputs, torch.ones(5 * count), example_of)
        )
        assert max(forward.sizes[1:]) == max(4 // count, 1) * count


def test_call_overrides_the_constructor_budget() -> None:
    forward = BatchSizes(zero_logits)
    inputs = torch.rand(1, 1, 2, 2)
    scorer = PerturbationScorer(forward, "logit", ScoringOptions(1))
    plan = _scaling_plan(inputs, torch.ones(6), torch.zeros(6, dtype=torch.long))
    scorer.score(scorer.prepare(inputs, 0), plan, perturbations_per_eval=4)
    assert forward.sizes == [1, 4, 2]


class TestBadModels:
    """Models that misbehave get an error that says what is wrong, not a deep traceback."""

    inputs = torch.rand(2, 3, 4, 4)

    def test_logits_under_their_name_are_scored_and_others_need_score_fn(self) -> None:
        def logits_model(x: Tensor) -> dict[str, Tensor]:
            return {"logits": x.sum(dim=(2, 3)).bfloat16()}

        def scores_model(x: Tensor) -> dict[str, Tensor]:
            return {"scores": x.sum(dim=(2, 3))}

        # The softmax of the logits, at full precision even when they come in bf16.
        scores = PerturbationScorer(logits_model).prepare(self.inputs).scores
        expected = self.inputs.sum(dim=(2, 3)).bfloat16().float().softmax(dim=1)
        torch.testing.assert_close(scores, expected)
        assert scores.dtype == torch.float32
        with pytest.raises(TypeError, match=r"returned a dict.*pass score_fn.*out\['scores'\]"):
            PerturbationScorer(scores_model).prepare(self.inputs)
        scorer = PerturbationScorer(scores_model, lambda out: out["scores"].softmax(dim=-1))
        assert scorer.prepare(self.inputs).scores.shape == (2, 3)

    @pytest.mark.parametrize("bad", [float("nan"), float("inf")])
    def test_non_finite_clean_output(self, bad: float) -> None:
        def model(x: Tensor) -> Tensor:
            logits = x.sum(dim=(2, 3))
            logits[0, 1] = bad
            return logits

        with pytest.raises(ValueError, match="clean inputs contain NaN or Inf"):
            PerturbationScorer(model, "logit").prepare(self.inputs)

    def test_non_finite_perturbed_output_is_caught_after_the_loop(self) -> None:
        calls = []

        def model(x: Tensor) -> Tensor:
            calls.append(len(x))
            logits = x.sum(dim=(2, 3))
            return torch.where(x.sum(dim=(1, 2, 3))[:, None] == 0, torch.nan, logits)

        scorer = PerturbationScorer(model, "logit", ScoringOptions(1))
        batch = scorer.prepare(self.inputs, 0)
        plan = _scaling_plan(
            self.inputs, torch.tensor([1.0, 0.0, 1.0, 1.0]), torch.tensor([0, 0, 1, 1])
        )
        with pytest.raises(ValueError, match=r"NaN or Inf on some of the 4 perturbed inputs"):
            scorer.score(batch, plan)
        assert calls == [2, 2, 2]  # every chunk ran: the check waits for the end

    @pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
    def test_inputs_of_another_dtype_than_the_model(self, dtype: torch.dtype) -> None:
        model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Flatten()).eval()
        with pytest.raises(
            TypeError,
            match=rf"inputs are {dtype} but the model's parameters "
            r"are torch.float32",
        ):
            PerturbationScorer(model).prepare(self.inputs.to(dtype))

    def test_other_runtime_errors_pass_through(self) -> None:
        def model(x: Tensor) -> Tensor:
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            PerturbationScorer(model).prepare(self.inputs)

    def test_forward_func_must_be_callable(self) -> None:
        with pytest.raises(TypeError, match="forward_func must be callable; got int"):
            PerturbationScorer(3)  # type: ignore[arg-type]

    def test_inputs_tuple_of_two_is_refused(self) -> None:
        with pytest.raises(TypeError, match="inputs must be a tensor or a 1-tuple"):
            PerturbationScorer(Linear()).prepare((self.inputs, self.inputs))


class TestExampleTargets:
    scores = torch.arange(12.0).reshape(3, 4)

    def test_none_is_top1(self) -> None:
        scores = torch.tensor([[0.1, 0.9], [0.8, 0.2]])
        assert ExampleTargets.resolve(None, scores).index.tolist() == [[1], [0]]

    def test_none_for_one_value_per_example(self) -> None:
        targets = ExampleTargets.resolve(None, torch.tensor([3.0, 4.0]))
        selected = targets.select(torch.tensor([3.0, 4.0, 5.0]), torch.tensor([0, 1, 1]))
        torch.testing.assert_close(selected, torch.tensor([3.0, 4.0, 5.0]))

    @pytest.mark.parametrize("target", [2, torch.tensor(2), [2, 2, 2], torch.tensor([2, 2, 2])])
    def test_forms(self, target) -> None:
        targets = ExampleTargets.resolve(target, self.scores)
        selected = targets.select(self.scores, torch.tensor([0, 1, 2]))
        torch.testing.assert_close(selected, torch.tensor([2.0, 6.0, 10.0]))

    def test_rows_pick_their_example_target(self) -> None:
        targets = ExampleTargets.resolve([0, 3, 1], self.scores)
        selected = targets.select(self.scores, torch.tensor([2, 2, 0]))
        torch.testing.assert_close(selected, torch.tensor([1.0, 5.0, 8.0]))

    def test_tuples_index_multidimensional_scores(self) -> None:
        scores = torch.arange(12.0).reshape(2, 2, 3)
        targets = ExampleTargets.resolve([(1, 2), (0, 1)], scores)
        torch.testing.assert_close(
            targets.select(scores, torch.tensor([0, 1])), torch.tensor([5.0, 7.0])
        )

    @pytest.mark.parametrize(
        "target", [np.int64(2), np.uint8(2), np.array(2), [np.int64(2)] * 3, [2, np.int32(2), 2]]
    )
    def test_numpy_integers_are_ints(self, target) -> None:
        targets = ExampleTargets.resolve(target, self.scores)
        assert targets.index.tolist() == [[2], [2], [2]]
        selected = targets.select(self.scores, torch.tensor([0, 1, 2]))
        torch.testing.assert_close(selected, torch.tensor([2.0, 6.0, 10.0]))

    def test_numpy_integers_in_tuples(self) -> None:
        scores = torch.arange(12.0).reshape(2, 2, 3)
        labels = np.array([[1, 2], [0, 1]])
        targets = ExampleTargets.resolve([tuple(row) for row in labels], scores)
        torch.testing.assert_close(
            targets.select(scores, torch.tensor([0, 1])), torch.tensor([5.0, 7.0])
        )

    @pytest.mark.parametrize("target", [np.True_, np.float64(2.0), [np.float32(1)] * 3, [True] * 3])
    def test_numpy_bools_and_floats_are_not(self, target) -> None:
        with pytest.raises(TypeError, match="target"):
            ExampleTargets.resolve(target, self.scores)


class AutocastRecorder(nn.Module):
    """A convolutional classifier that records, per call, the autocast type it ran under."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 5)
        self.calls: list[torch.dtype | None] = []

    def forward(self, x: Tensor) -> Tensor:
        enabled = torch.is_autocast_enabled(x.device.type)
        self.calls.append(torch.get_autocast_dtype(x.device.type) if enabled else None)
        return self.head(self.conv(x).relu().mean(dim=(2, 3)))


@pytest.mark.parametrize(
    ("precision", "dtype"), [("bf16", torch.bfloat16), ("fp16", torch.float16)]
)
@pytest.mark.filterwarnings("ignore:precision=.* slower than fp32")  # as fast as this CPU is
def test_lower_precision_autocasts_only_the_perturbed_passes(
    precision: str, dtype: torch.dtype
) -> None:
    model = AutocastRecorder().eval()
    inputs = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    factors = torch.linspace(0, 1, 6)
    example_of = torch.tensor([0, 0, 0, 1, 1, 1])
    exact = PerturbationScorer(model, options=ScoringOptions(perturbations_per_eval=3))
    reference = exact.score(exact.prepare(inputs), _scaling_plan(inputs, factors, example_of))
    model.calls.clear()

    scorer = PerturbationScorer(model, options=ScoringOptions(1, precision))
    batch = scorer.prepare(inputs)
    scores = scorer.score(batch, _scaling_plan(inputs, factors, example_of))
    # The clean pass (targets, clean scores) at full precision, the perturbed ones lowered;
    # in between, on a CPU, one input timed in each precision (a set-up pass and two timed).
    assert model.calls == [None, *[None] * 3, *[dtype] * 3, dtype, dtype, dtype]  # 2 a pass
    assert batch.target_scores.dtype == torch.float32 and scores.dtype == torch.float32
    torch.testing.assert_close(scores, reference, atol=2e-2, rtol=0)
    assert not torch.equal(scores, reference)  # it did run in another precision


def test_precision_is_checked() -> None:
    with pytest.raises(ValueError, match=r"precision must be one of .*'fp32'.*; got 'fp64'"):
        PerturbationScorer(zero_logits, options=ScoringOptions(precision="fp64"))  # type: ignore[arg-type]


class DropsRowsScore:
    """A ``score_fn`` that keeps every row of the clean pass, then only the first one."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, output: Tensor) -> Tensor:
        self.calls += 1
        scores = output.softmax(dim=1)
        return scores if self.calls == 1 else scores[:1]


class TestRowsOfEveryPass:
    """Every pass must give one row of scores per input, as the clean pass did: a row fewer
    would be broadcast over the pass and its scores silently copied across examples."""

    inputs = torch.rand(2, 1, 2, 2, generator=torch.Generator().manual_seed(4))
    plan = staticmethod(
        lambda inputs: _scaling_plan(
            inputs, torch.linspace(0, 1, 6), torch.tensor([0, 0, 0, 1, 1, 1])
        )
    )

    def test_a_forward_func_that_drops_rows_is_refused(self) -> None:
        scorer = PerturbationScorer(DropsRowsWhenPerturbed(Linear()), options=ScoringOptions(2))
        batch = scorer.prepare(self.inputs, target=[0, 1])
        with pytest.raises(
            ValueError,
            match=re.escape(
                "forward_func (scored with score_fn='softmax') must give one row of scores per "
                "input on every pass, shaped as on the clean pass: a perturbed pass of 4 inputs "
                "gave shape (1, 3), expected (4, 3)"
            ),
        ):
            scorer.score(batch, self.plan(self.inputs))

    def test_a_score_fn_that_drops_rows_is_refused(self) -> None:
        scorer = PerturbationScorer(
            Linear(), DropsRowsScore(), options=ScoringOptions(perturbations_per_eval=1)
        )
        batch = scorer.prepare(self.inputs, target=[0, 1])
        with pytest.raises(
            ValueError,
            match=re.escape(
                "score_fn must give one row of scores per input on every pass, shaped as on the "
                "clean pass: a perturbed pass of 2 inputs gave shape (1, 3), expected (2, 3)"
            ),
        ):
            scorer.score(batch, self.plan(self.inputs))

    def test_other_columns_than_the_clean_pass_are_refused(self) -> None:
        calls = []

        def score_fn(output: Tensor) -> Tensor:
            calls.append(len(output))
            return output if len(calls) == 1 else output[:, :2]

        scorer = PerturbationScorer(
            Linear(), score_fn, options=ScoringOptions(perturbations_per_eval=3)
        )
        batch = scorer.prepare(self.inputs, target=[0, 1])
        with pytest.raises(ValueError, match=re.escape("gave shape (6, 2), expected (6, 3)")):
            scorer.score(batch, self.plan(self.inputs))

    def test_insertion_deletion_refuses_a_model_that_drops_rows(self, tiny_cnn, tiny_inputs):
        saliency = tiny_inputs.abs().sum(dim=1, keepdim=True)
        metric = InsertionDeletion(
            DropsRowsWhenPerturbed(tiny_cnn), n_steps=4, perturbations_per_eval=2
        )
        with pytest.raises(
            ValueError,
            match=re.escape(
                "forward_func (scored with score_fn='softmax') must give one row of scores per "
                "input on every pass, shaped as on the clean pass: a perturbed pass of 6 inputs "
                "gave shape (1, 5), expected (6, 5)"
            ),
        ):
            metric(tiny_inputs, saliency)


class TestSlowLoweredPrecisionOnTheCpu:
    """bf16 without native support runs 17 to 50 times slower than fp32 on a CPU: one pass
    of each, measured once per model and input shape, says so."""

    message = (
        "precision='bf16' runs 17x slower than fp32 on this CPU (AVX2, no native bf16), "
        "measured on one input of this model; use precision='fp32'. bf16 pays off on CPUs with "
        "AVX-512 BF16 or AMX (Intel Sapphire Rapids and later, AMD Zen 4 and later) and on GPUs"
    )

    @pytest.fixture(autouse=True)
    def _measured(self, monkeypatch: pytest.MonkeyPatch) -> list[float]:
        _LOWERED.forget()
        measured: list[float] = []

        def fake_slowdown(run, clock=None) -> float:
            run(False)
            run(True)
            measured.append(self.factor)
            return self.factor

        self.factor = 17.2
        monkeypatch.setattr(tuning, "slowdown", fake_slowdown)
        monkeypatch.setattr(tuning, "cpu_flags", lambda: frozenset({"avx", "avx2"}))
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
        return measured

    def _score(self, model: nn.Module, inputs: Tensor, precision: str = "bf16") -> None:
        scorer = PerturbationScorer(model, options=ScoringOptions(2, precision))
        batch = scorer.prepare(inputs)
        example_of = torch.arange(len(inputs)).repeat_interleave(2)
        scorer.score(batch, _scaling_plan(inputs, torch.ones(len(example_of)), example_of))

    def test_warns_once_per_model_and_input_shape(self, _measured: list[float]) -> None:
        model = AutocastRecorder().eval()
        inputs = torch.rand(2, 3, 8, 8)
        with pytest.warns(UserWarning, match=re.escape(self.message)) as record:
            self._score(model, inputs)
        assert len(record) == 1 and record[0].filename == __file__  # names the caller
        # One input in fp32, then in bf16, between the clean pass and the perturbed passes.
        assert model.calls == [None, None, torch.bfloat16, torch.bfloat16]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            self._score(model, inputs)  # another scorer of the same model and shape
            self._score(model, inputs[:1])  # the shape of one input is what counts
        assert _measured == [17.2]
        with pytest.warns(UserWarning, match=re.escape(self.message)):
            self._score(model, torch.rand(1, 3, 4, 4))  # another input shape
        assert _measured == [17.2, 17.2]

    def test_a_precision_that_is_not_much_slower_is_quiet(self, _measured: list[float]) -> None:
        self.factor = 1.9
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            self._score(AutocastRecorder().eval(), torch.rand(2, 3, 8, 8))
        assert _measured == [1.9]

    def test_fp32_is_not_measured(self, _measured: list[float]) -> None:
        model = AutocastRecorder().eval()
        self._score(model, torch.rand(2, 3, 8, 8), precision="fp32")
        assert _measured == [] and model.calls == [None, None]  # the clean pass, one pass

    def test_fp16_is_measured_and_named(self, _measured: list[float]) -> None:
        with pytest.warns(
            UserWarning,
            match=re.escape(
                "precision='fp16' runs 17x slower than fp32 on this CPU (AVX2, no native fp16), "
                "measured on one input of this model; use precision='fp32'. fp16 pays off on GPUs"
            ),
        ):
            self._score(AutocastRecorder().eval(), torch.rand(2, 3, 8, 8), precision="fp16")

    def test_a_cpu_with_native_bf16_that_is_still_slow(self, monkeypatch) -> None:
        monkeypatch.setattr(tuning, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
        self.factor = 2.46
        with pytest.warns(
            UserWarning,
            match=re.escape(
                "precision='bf16' runs 2.5x slower than fp32 on this CPU (AVX512, native bf16), "
            ),
        ):
            self._score(AutocastRecorder().eval(), torch.rand(2, 3, 8, 8))


def test_a_prepared_batch_serves_scorers_of_the_same_score_fn_only(tiny_cnn, tiny_inputs) -> None:
    first, second = PerturbationScorer(tiny_cnn), PerturbationScorer(tiny_cnn)
    prepared = first.prepare(tiny_inputs)
    assert second.reuse(prepared, tiny_inputs) is prepared
    with pytest.raises(ValueError, match="prepared: a batch prepared from other inputs"):
        second.reuse(prepared, tiny_inputs.clone())
    with pytest.raises(
        ValueError,
        match="prepared: made with score_fn='softmax'; this one scores with score_fn='logit'",
    ):
        PerturbationScorer(tiny_cnn, "logit").reuse(prepared, tiny_inputs)


def test_metrics_sharing_a_clean_pass_give_the_same_results(tiny_cnn, tiny_inputs) -> None:
    maps = torch.rand(len(tiny_inputs), 1, 4, 4, generator=torch.Generator().manual_seed(0))
    metric = InsertionDeletion(tiny_cnn, n_steps=4)
    prepared = metric.scorer.prepare(tiny_inputs)
    shared = metric(tiny_inputs, maps, prepared=prepared)
    alone = metric(tiny_inputs, maps)
    torch.testing.assert_close(shared.insertion.curve, alone.insertion.curve, rtol=0, atol=0)
    torch.testing.assert_close(shared.deletion.auc, alone.deletion.auc, rtol=0, atol=0)


class Normalised(nn.Module):
    """Convolution, batch norm and ReLU, then 3 classes: buffers that training mode moves."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.head = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def test_the_engine_gives_a_model_in_training_mode_its_buffers_back(tiny_inputs) -> None:
    model = Normalised().train()
    before = {name: buffer.clone() for name, buffer in model.named_buffers()}
    scorer = PerturbationScorer(model, "logit", ScoringOptions(2))
    batch = scorer.prepare(tiny_inputs, target=0)
    example_of = torch.tensor([0, 1, 2, 2])
    scores = scorer.score(batch, _scaling_plan(tiny_inputs, torch.rand(4), example_of))
    maps = torch.rand(len(tiny_inputs), 1, 4, 4, generator=torch.Generator().manual_seed(0))
    curves = InsertionDeletion(model, n_steps=4)(tiny_inputs, maps, target=0)  # every metric
    assert scores.shape == (4,) and bool(torch.isfinite(curves.insertion.curve).all())
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, before[name]), name
    assert int(model.features[1].num_batches_tracked) == 0 and model.training


def test_inputs_of_other_channels_are_told_on_the_clean_pass(tiny_cnn, tiny_inputs) -> None:
    with pytest.raises(
        ValueError,
        match=re.escape(
            "inputs have 2 channels but the model's first convolution, block1.0, takes 3: give "
            "the inputs 3 channels, in dimension 1 (convert grayscale or RGBA images to RGB)"
        ),
    ) as raised:
        PerturbationScorer(tiny_cnn).prepare(tiny_inputs[:, :2])
    assert isinstance(raised.value.__cause__, RuntimeError)


def test_numpy_integers_size_the_passes(tiny_inputs) -> None:
    forward = BatchSizes(zero_logits)
    scorer = PerturbationScorer(forward, options=ScoringOptions(perturbations_per_eval=np.int64(2)))
    assert type(scorer.perturbations_per_eval) is int
    batch = scorer.prepare(tiny_inputs)
    example_of = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    scorer.score(batch, _scaling_plan(tiny_inputs, torch.ones(7), example_of))
    scorer.score(
        batch,
        _scaling_plan(tiny_inputs, torch.ones(7), example_of),
        perturbations_per_eval=np.int32(1),
    )
    assert forward.sizes == [3, 6, 1, 3, 3, 1]
