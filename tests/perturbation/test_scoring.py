"""The batched perturbation engine and per-example targets."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from captum_polycam import ExampleTargets, PerturbationScorer


class Linear(nn.Module):
    """logits = [sum(x), 2 * sum(x), 0]: hand-computable scores."""

    def forward(self, x: Tensor, scale: Tensor | None = None) -> Tensor:
        total = x.sum(dim=(1, 2, 3)) * (1 if scale is None else scale)
        return torch.stack([total, 2 * total, torch.zeros_like(total)], dim=1)


def _scale_fill(inputs: Tensor, factors: Tensor, example_of: Tensor):
    def fill(start: int, stop: int, out: Tensor) -> None:
        rows = example_of[start:stop]
        out.copy_(inputs[rows] * factors[start:stop, None, None, None])

    return fill


@pytest.mark.parametrize("per_eval", [1, 2, 5, 100])
def test_scores_every_item_by_hand(per_eval: int) -> None:
    inputs = torch.tensor([1.0, -2.0]).reshape(2, 1, 1, 1)
    example_of = torch.tensor([0, 0, 1, 1, 1])
    factors = torch.tensor([1.0, 0.5, 1.0, 0.0, 3.0])
    targets = ExampleTargets(torch.tensor([[1], [0]]))
    scorer = PerturbationScorer(Linear(), "logit", per_eval)
    scores = scorer.score_perturbations(
        inputs, 5, example_of, _scale_fill(inputs, factors, example_of), targets
    )
    # Example 0 scores 2 * x, example 1 scores x.
    torch.testing.assert_close(scores, torch.tensor([2.0, 1.0, -2.0, 0.0, -6.0]))


def test_softmax_scores_by_hand() -> None:
    inputs = torch.tensor([0.5]).reshape(1, 1, 1, 1)
    scorer = PerturbationScorer(Linear(), "softmax", 4)
    targets = ExampleTargets(torch.tensor([[2]]))
    scores = scorer.score_perturbations(
        inputs, 1, torch.tensor([0]), _scale_fill(inputs, torch.ones(1), torch.tensor([0])), targets
    )
    expected = 1 / (torch.exp(torch.tensor(0.5)) + torch.exp(torch.tensor(1.0)) + 1)
    torch.testing.assert_close(scores, expected.reshape(1))


def test_per_example_forward_args_follow_their_rows() -> None:
    inputs = torch.tensor([1.0, 1.0]).reshape(2, 1, 1, 1)
    example_of = torch.tensor([1, 0, 1])
    scale = torch.tensor([10.0, -1.0])
    scorer = PerturbationScorer(Linear(), "logit", 2)
    scores = scorer.score_perturbations(
        inputs, 3, example_of, _scale_fill(inputs, torch.ones(3), example_of),
        ExampleTargets(torch.tensor([[0], [0]])), (scale,),
    )  # fmt: skip
    torch.testing.assert_close(scores, torch.tensor([-1.0, 10.0, -1.0]))


def test_batches_never_exceed_perturbations_per_eval() -> None:
    sizes = []

    def forward(x: Tensor) -> Tensor:
        sizes.append(len(x))
        return torch.zeros(len(x), 2)

    inputs = torch.rand(3, 1, 2, 2)
    example_of = torch.arange(3).repeat_interleave(4)
    PerturbationScorer(forward, "logit", 5).score_perturbations(
        inputs, 12, example_of, _scale_fill(inputs, torch.ones(12), example_of),
        ExampleTargets(torch.zeros(3, 1, dtype=torch.long)),
    )  # fmt: skip
    assert sizes == [5, 5, 2]


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
