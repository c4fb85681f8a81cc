"""ScoringOptions: one value for how perturbed inputs are scored, validated once."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from captum_polycam import (
    ConfidenceChange,
    Deletion,
    Insertion,
    InsertionDeletion,
    PolyCam,
    ScoringOptions,
)
from captum_polycam.evaluation import EvaluationConfig, EvaluationError, build_methods
from captum_polycam.perturbation import PerturbationScorer
from captum_polycam.perturbation.options import default_perturbations_per_eval


def test_defaults_are_measured_fp32_eager() -> None:
    assert ScoringOptions() == ScoringOptions(None, "fp32", False)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"perturbations_per_eval": 0}, ValueError, "perturbations_per_eval must be a positive"),
        ({"perturbations_per_eval": 2.0}, ValueError, "perturbations_per_eval must be a positive"),
        ({"perturbations_per_eval": True}, ValueError, "perturbations_per_eval must be a positive"),
        ({"precision": "fp8"}, ValueError, "precision must be one of"),
        ({"compile": "yes"}, TypeError, "compile must be True or False"),
    ],
)
def test_bad_fields_are_named(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        ScoringOptions(**kwargs)


def test_a_numpy_integer_is_kept_as_an_int() -> None:
    options = ScoringOptions(perturbations_per_eval=np.int64(3))
    assert options == ScoringOptions(3) and type(options.perturbations_per_eval) is int
    assert repr(options) == repr(ScoringOptions(3))


def test_keywords_override_the_value_and_none_keeps_it() -> None:
    base = ScoringOptions(perturbations_per_eval=3, precision="bf16")
    assert ScoringOptions.of(base) is base
    assert ScoringOptions.of(base, precision="fp32") == ScoringOptions(3, "fp32", False)
    assert ScoringOptions.of(None, compile=True) == ScoringOptions(compile=True)
    with pytest.raises(TypeError, match="options must be a ScoringOptions; got dict"):
        ScoringOptions.of({"precision": "bf16"})  # type: ignore[arg-type]


def test_fixed_takes_the_given_size_or_the_device_default() -> None:
    cpu = torch.device("cpu")
    assert ScoringOptions(perturbations_per_eval=5).fixed(cpu, 8).perturbations_per_eval == 5
    assert ScoringOptions().fixed(cpu, 2).perturbations_per_eval == 2  # 4 inputs a pass, 2 each
    assert ScoringOptions().fixed(cpu, 8).perturbations_per_eval == 1  # at least one each
    assert default_perturbations_per_eval(torch.device("cuda"), 8) == 8


def test_every_scoring_class_takes_the_value_and_the_keywords(tiny_cnn: nn.Module) -> None:
    options = ScoringOptions(perturbations_per_eval=2, precision="bf16", compile=True)
    built = [
        PerturbationScorer(tiny_cnn, options=options),
        PolyCam(tiny_cnn, ["block1", "block3"], options=options)._scorer,
        InsertionDeletion(tiny_cnn, options=options).scorer,
        Insertion(tiny_cnn, options=options).metric.scorer,
        Deletion(tiny_cnn, options=options).metric.scorer,
        ConfidenceChange(tiny_cnn, options=options).scorer,
    ]
    assert all(scorer.options == options for scorer in built)
    loose = InsertionDeletion(tiny_cnn, perturbations_per_eval=2, precision="bf16", compile=True)
    assert loose.scorer.options == options
    overridden = ConfidenceChange(tiny_cnn, precision="fp32", options=options)
    assert overridden.scorer.options == ScoringOptions(2, "fp32", True)


def test_the_keywords_are_checked_where_they_are_given(tiny_cnn: nn.Module) -> None:
    with pytest.raises(ValueError, match=re.escape("precision must be one of")):
        PolyCam(tiny_cnn, precision="int8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="perturbations_per_eval must be a positive int"):
        Insertion(tiny_cnn, perturbations_per_eval=-1)
    with pytest.raises(EvaluationError, match="precision must be one of"):
        EvaluationConfig(precision="half")  # type: ignore[arg-type]
    with pytest.raises(EvaluationError, match="perturbations_per_eval must be a positive"):
        build_methods(["pcam+"], tiny_cnn, ["block1", "block3"], perturbations_per_eval=0)


def test_polycam_attribute_uses_the_options_pass_size(
    tiny_cnn: nn.Module, tiny_inputs: Tensor
) -> None:
    sizes: list[int] = []
    hook = tiny_cnn.register_forward_pre_hook(lambda _, args: sizes.append(len(args[0])))
    try:
        options = ScoringOptions(perturbations_per_eval=1)
        PolyCam(tiny_cnn, ["block1", "block3"], "plus", options=options).attribute(tiny_inputs)
    finally:
        hook.remove()
    # The clean pass, then masked passes of one input per example of the batch of three.
    assert sizes[0] == len(tiny_inputs)
    assert max(sizes[1:]) == len(tiny_inputs)


def test_evaluation_config_carries_precision_and_compile() -> None:
    config = EvaluationConfig(precision="bf16", compile=True)
    assert config.scoring == ScoringOptions(precision="bf16", compile=True)
    assert config.as_dict()["precision"] == "bf16"  # run.json keeps its fields
