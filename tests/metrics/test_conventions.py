"""What every metric shares: Captum's input forms, score directions, repr, clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from captum_polycam.metrics import (
    SCORE_DIRECTIONS,
    AverageDrop,
    BoxAccuracy,
    ConfidenceChange,
    Deletion,
    EnergyPointingGame,
    IncreaseInConfidence,
    Insertion,
    InsertionDeletion,
    PointingGame,
    ScoreDirection,
    Sensitivity,
)
from tests.conftest import BatchSizes, DictOutput

PERTURBATION_METRICS = [
    InsertionDeletion,
    Insertion,
    Deletion,
    ConfidenceChange,
    AverageDrop,
    IncreaseInConfidence,
]
FEW_STEPS = {metric: {"n_steps": 8} for metric in (InsertionDeletion, Insertion, Deletion)}


def _values(result) -> dict[str, Tensor]:
    if isinstance(result, Tensor):
        return {"value": result}
    return {k: v if isinstance(v, Tensor) else v.curve for k, v in result.as_dict().items()}


@pytest.mark.parametrize("metric_class", PERTURBATION_METRICS)
def test_captum_tuple_form_gives_the_same_values(metric_class, tiny_cnn, tiny_inputs) -> None:
    metric = metric_class(tiny_cnn, **FEW_STEPS.get(metric_class, {}))
    maps = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    plain = _values(metric(tiny_inputs, maps, [0, 1, 2]))
    tupled = _values(metric((tiny_inputs,), (maps,), [0, 1, 2]))
    assert plain.keys() == tupled.keys()
    for key, value in plain.items():
        torch.testing.assert_close(tupled[key], value, equal_nan=True)
        assert value.device == tiny_inputs.device


@pytest.mark.parametrize("metric_class", PERTURBATION_METRICS)
def test_forward_func_must_be_callable(metric_class) -> None:
    with pytest.raises(TypeError, match="forward_func must be callable; got str"):
        metric_class("resnet50")


def test_each_metric_says_which_direction_is_better() -> None:
    assert Insertion.score_direction is ScoreDirection.HIGHER
    assert Deletion.score_direction is ScoreDirection.LOWER
    assert AverageDrop.score_direction is ScoreDirection.LOWER
    assert IncreaseInConfidence.score_direction is ScoreDirection.HIGHER
    assert InsertionDeletion.score_directions == {
        "insertion": ScoreDirection.HIGHER,
        "deletion": ScoreDirection.LOWER,
        "insertion_minus_deletion": ScoreDirection.HIGHER,
    }
    assert ConfidenceChange.score_directions == {
        "average_drop": ScoreDirection.LOWER,
        "increase_in_confidence": ScoreDirection.HIGHER,
    }
    assert Sensitivity.score_directions == {
        "sensitivity_max": ScoreDirection.LOWER,
        "sensitivity_avg": ScoreDirection.LOWER,
    }
    for localisation in (PointingGame, EnergyPointingGame, BoxAccuracy):
        assert localisation.score_direction is ScoreDirection.HIGHER
    # Every scalar key a result reports has a direction.
    assert set(SCORE_DIRECTIONS) == {
        *InsertionDeletion.score_directions,
        *ConfidenceChange.score_directions,
        *Sensitivity.score_directions,
        PointingGame.key,
        EnergyPointingGame.key,
        BoxAccuracy.key,
    }


def test_results_use_the_shared_keys(tiny_cnn, tiny_inputs) -> None:
    maps = torch.rand(3, 1, 4, 4)
    curves = InsertionDeletion(tiny_cnn, n_steps=4)(tiny_inputs, maps)
    assert set(curves.as_dict()) == {
        "insertion",
        "deletion",
        "insertion_minus_deletion",
        "insertion_curve",
        "deletion_curve",
    }
    assert set(ConfidenceChange(tiny_cnn)(tiny_inputs, maps).as_dict()) == {
        "average_drop",
        "increase_in_confidence",
    }


def test_reprs_give_the_protocol(tiny_cnn) -> None:
    assert repr(InsertionDeletion(tiny_cnn)) == (
        "InsertionDeletion(n_steps=224, baseline='blur', score_fn='softmax', auc='mean', "
        "channel_reduction='sum', perturbations_per_eval=None, blur_kernel_size=11, "
        "blur_sigma=5.0, precision='fp32', compile=False)"
    )
    assert repr(Deletion(tiny_cnn, n_steps=10, baseline=torch.zeros(3, 1, 1))).startswith(
        "Deletion(n_steps=10, baseline=<tensor of shape (3, 1, 1)>, score_fn='softmax'"
    )
    assert repr(AverageDrop(tiny_cnn, "logit", perturbations_per_eval=2, precision="bf16")) == (
        "AverageDrop(score_fn='logit', channel_reduction='sum', perturbations_per_eval=2, "
        "precision='bf16', compile=False)"
    )

    def explain(x: Tensor) -> Tensor:
        return x

    assert repr(Sensitivity(explain)) == (
        "Sensitivity(explanation_func=explain, n_perturb_samples=10, perturb_radius=0.02, "
        "norm_ord='fro', max_examples_per_batch=None)"
    )


def test_perturbations_per_eval_counts_per_example(tiny_cnn, tiny_inputs) -> None:
    counting = BatchSizes(tiny_cnn)
    InsertionDeletion(counting, n_steps=5, perturbations_per_eval=2)(tiny_inputs, tiny_inputs)
    # One clean pass of 3, then 3 examples x 2 curves x 5 steps = 30 images, 2 x 3 at a time.
    assert counting.sizes == [3] + [6] * 5


def test_a_dict_with_logits_is_scored_and_another_is_told_to_pass_score_fn(
    tiny_cnn, dict_output_cnn, tiny_inputs
) -> None:
    maps = torch.rand(3, 1, 4, 4)
    plain = ConfidenceChange(tiny_cnn)(tiny_inputs, maps).masked
    torch.testing.assert_close(ConfidenceChange(dict_output_cnn)(tiny_inputs, maps).masked, plain)
    model = DictOutput(tiny_cnn, key="scores")
    with pytest.raises(TypeError, match="returned a dict, neither a tensor of scores nor an"):
        InsertionDeletion(model)(tiny_inputs, tiny_inputs)
    with_score = ConfidenceChange(model, score_fn=lambda out: out["scores"].softmax(dim=-1))
    torch.testing.assert_close(with_score(tiny_inputs, maps).masked, plain)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_metrics_in_lower_precision_stay_close_to_fp32(tiny_cnn, tiny_inputs, precision) -> None:
    saliency = tiny_inputs.abs().sum(dim=1, keepdim=True)
    exact = InsertionDeletion(tiny_cnn, n_steps=8)(tiny_inputs, saliency)
    lowered = InsertionDeletion(tiny_cnn, n_steps=8, precision=precision)(tiny_inputs, saliency)
    for kind in ("insertion", "deletion"):
        lowered_curve, exact_curve = getattr(lowered, kind).curve, getattr(exact, kind).curve
        assert lowered_curve.dtype == torch.float32
        torch.testing.assert_close(lowered_curve, exact_curve, atol=1e-2, rtol=0)
    drop = ConfidenceChange(tiny_cnn, precision=precision)(tiny_inputs, saliency)
    torch.testing.assert_close(drop.clean, ConfidenceChange(tiny_cnn)(tiny_inputs, saliency).clean)
