"""The batched perturbation engine: batch preparation, plans, per-example targets."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from captum_polycam.perturbation import (
    ExampleTargets,
    PerturbationPlan,
    PerturbationScorer,
    PreparedBatch,
)
from tests.conftest import BatchSizes, zero_logits


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
    scorer = PerturbationScorer(Linear(), "logit", per_eval)
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
    scorer = PerturbationScorer(Linear(), "softmax", 4)
    batch = scorer.prepare(inputs, target=2)
    scores = scorer.score(batch, _scaling_plan(inputs, torch.ones(1), torch.tensor([0])))
    expected = 1 / (torch.exp(torch.tensor(0.5)) + torch.exp(torch.tensor(1.0)) + 1)
    torch.testing.assert_close(scores, expected.reshape(1))
    torch.testing.assert_close(batch.target_scores, expected.reshape(1))


def test_per_example_forward_args_follow_their_rows() -> None:
    inputs = torch.tensor([1.0, 1.0]).reshape(2, 1, 1, 1)
    example_of = torch.tensor([1, 0, 1])
    scale = torch.tensor([10.0, -1.0])
    scorer = PerturbationScorer(Linear(), "logit", 1)
    batch = scorer.prepare(inputs, [0, 0], (scale,))
    scores = scorer.score(batch, _scaling_plan(inputs, torch.ones(3), example_of))
    torch.testing.assert_close(scores, torch.tensor([-1.0, 10.0, -1.0]))


@pytest.mark.parametrize(("per_eval", "sizes"), [(1, [3, 3, 3, 3]), (2, [6, 6]), (5, [12])])
def test_a_pass_holds_perturbations_per_eval_per_example(per_eval: int, sizes: list[int]):
    forward = BatchSizes(zero_logits)
    inputs = torch.rand(3, 1, 2, 2)
    example_of = torch.arange(3).repeat_interleave(4)
    scorer = PerturbationScorer(forward, "logit", per_eval)
    batch = scorer.prepare(inputs, 0)
    scorer.score(batch, _scaling_plan(inputs, torch.ones(12), example_of))
    assert forward.sizes == [3, *sizes]  # the clean pass, then the perturbed ones


def test_default_aims_at_four_inputs_per_pass_on_the_cpu() -> None:
    for count in (1, 3, 8):
        forward = BatchSizes(zero_logits)
        inputs = torch.rand(count, 1, 2, 2)
        example_of = torch.arange(count).repeat_interleave(5)
        scorer = PerturbationScorer(forward, "logit")
        scorer.score(scorer.prepare(inputs, 0), _scaling_plan(inputs, torch.ones(5 * count),
                                                                example_of))  # fmt: skip
        assert max(forward.sizes[1:]) == max(4 // count, 1) * count


def test_call_overrides_the_constructor_budget() -> None:
    forward = BatchSizes(zero_logits)
    inputs = torch.rand(1, 1, 2, 2)
    scorer = PerturbationScorer(forward, "logit", 1)
    plan = _scaling_plan(inputs, torch.ones(6), torch.zeros(6, dtype=torch.long))
    scorer.score(scorer.prepare(inputs, 0), plan, perturbations_per_eval=4)
    assert forward.sizes == [1, 4, 2]


class TestBadModels:
    """Models that misbehave get an error that says what is wrong, not a deep traceback."""

    inputs = torch.rand(2, 3, 4, 4)

    def test_dict_output_asks_for_score_fn(self) -> None:
        def dict_model(x: Tensor) -> dict[str, Tensor]:
            return {"logits": x.sum(dim=(2, 3))}

        with pytest.raises(TypeError, match=r"returned a dict.*pass score_fn.*out\['logits'\]"):
            PerturbationScorer(dict_model).prepare(self.inputs)
        scorer = PerturbationScorer(dict_model, lambda out: out["logits"].softmax(dim=-1))
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

        scorer = PerturbationScorer(model, "logit", 1)
        batch = scorer.prepare(self.inputs, 0)
        plan = _scaling_plan(self.inputs, torch.tensor([1.0, 0.0, 1.0, 1.0]),
                             torch.tensor([0, 0, 1, 1]))  # fmt: skip
        with pytest.raises(ValueError, match=r"NaN or Inf on some of the 4 perturbed inputs"):
            scorer.score(batch, plan)
        assert calls == [2, 2, 2]  # every chunk ran: the check waits for the end

    @pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
    def test_inputs_of_another_dtype_than_the_model(self, dtype: torch.dtype) -> None:
        model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Flatten()).eval()
        with pytest.raises(TypeError, match=rf"inputs are {dtype} but the model's parameters "
                                            r"are torch.float32"):  # fmt: skip
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
        torch.testing.assert_close(targets.select(scores, torch.tensor([0, 1])),
                                   torch.tensor([5.0, 7.0]))  # fmt: skip


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


@pytest.mark.parametrize(("precision", "dtype"), [("bf16", torch.bfloat16),
                                                  ("fp16", torch.float16)])  # fmt: skip
def test_lower_precision_autocasts_only_the_perturbed_passes(
    precision: str, dtype: torch.dtype
) -> None:
    model = AutocastRecorder().eval()
    inputs = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    factors = torch.linspace(0, 1, 6)
    example_of = torch.tensor([0, 0, 0, 1, 1, 1])
    exact = PerturbationScorer(model, perturbations_per_eval=3)
    reference = exact.score(exact.prepare(inputs), _scaling_plan(inputs, factors, example_of))
    model.calls.clear()

    scorer = PerturbationScorer(model, perturbations_per_eval=1, precision=precision)
    batch = scorer.prepare(inputs)
    scores = scorer.score(batch, _scaling_plan(inputs, factors, example_of))
    # The clean pass (targets, clean scores) at full precision, the perturbed ones lowered.
    assert model.calls == [None, dtype, dtype, dtype]  # 6 items, 2 a pass
    assert batch.target_scores.dtype == torch.float32 and scores.dtype == torch.float32
    torch.testing.assert_close(scores, reference, atol=2e-2, rtol=0)
    assert not torch.equal(scores, reference)  # it did run in another precision


def test_precision_is_checked() -> None:
    with pytest.raises(ValueError, match=r"precision must be one of .*'fp32'.*; got 'fp64'"):
        PerturbationScorer(zero_logits, precision="fp64")  # type: ignore[arg-type]
