"""ScoringOptions: one value for how perturbed inputs are scored, validated once.

The public classes take Captum's keywords (``perturbations_per_eval``, ``precision``,
``compile``) and no ``options=``; the engine takes only the value built from them."""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from captum_polycam import (
    AverageDrop,
    ConfidenceChange,
    Deletion,
    IncreaseInConfidence,
    Insertion,
    InsertionDeletion,
    PolyCam,
    ScoringOptions,
)
from captum_polycam.evaluation import EvaluationConfig, build_methods
from captum_polycam.perturbation import PerturbationScorer
from captum_polycam.perturbation.options import default_perturbations_per_eval
from captum_polycam.resources import EvaluationError


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


def test_the_value_is_its_three_keywords_and_nothing_merges() -> None:
    options = ScoringOptions(perturbations_per_eval=3, precision="bf16")
    assert dataclasses.asdict(options) == {
        "perturbations_per_eval": 3,
        "precision": "bf16",
        "compile": False,
    }
    assert not hasattr(ScoringOptions, "of")  # one way in: the keywords, or the value inside


def test_fixed_takes_the_given_size_or_the_device_default() -> None:
    cpu = torch.device("cpu")
    assert ScoringOptions(perturbations_per_eval=5).fixed(cpu, 8).perturbations_per_eval == 5
    assert ScoringOptions().fixed(cpu, 2).perturbations_per_eval == 2  # 4 inputs a pass, 2 each
    assert ScoringOptions().fixed(cpu, 8).perturbations_per_eval == 1  # at least one each
    assert default_perturbations_per_eval(torch.device("cuda"), 8) == 8


PUBLIC = [PolyCam, InsertionDeletion, Insertion, Deletion, ConfidenceChange, AverageDrop]
PUBLIC += [IncreaseInConfidence]


@pytest.mark.parametrize("public", PUBLIC, ids=lambda cls: cls.__name__)
def test_public_classes_take_captums_keywords_and_no_options(public: type) -> None:
    parameters = inspect.signature(public).parameters
    fields = {field.name for field in dataclasses.fields(ScoringOptions)}
    assert fields <= set(parameters)
    assert "options" not in parameters


def test_the_keywords_become_the_engines_value(tiny_cnn: nn.Module) -> None:
    options = ScoringOptions(perturbations_per_eval=2, precision="bf16", compile=True)
    keywords = dataclasses.asdict(options)  # how a caller holding the value passes it
    built = [
        PerturbationScorer(tiny_cnn, options=options),
        PolyCam(tiny_cnn, ["block1", "block3"], **keywords)._scorer,
        InsertionDeletion(tiny_cnn, **keywords).scorer,
        Insertion(tiny_cnn, **keywords).metric.scorer,
        Deletion(tiny_cnn, **keywords).metric.scorer,
        ConfidenceChange(tiny_cnn, **keywords).scorer,
        AverageDrop(tiny_cnn, **keywords).metric.scorer,
    ]
    assert all(scorer.options == options for scorer in built)
    assert PolyCam(tiny_cnn, ["block1"], **keywords).options == options
    loose = InsertionDeletion(tiny_cnn, perturbations_per_eval=2, precision="bf16", compile=True)
    assert loose.scorer.options == options
    assert ConfidenceChange(tiny_cnn).scorer.options == ScoringOptions()  # the defaults


@pytest.mark.parametrize("public", PUBLIC, ids=lambda cls: cls.__name__)
def test_the_public_classes_refuse_options(public: type, tiny_cnn: nn.Module) -> None:
    with pytest.raises(TypeError, match="options"):
        public(tiny_cnn, options=ScoringOptions())


def test_the_engine_takes_only_the_value(tiny_cnn: nn.Module) -> None:
    with pytest.raises(TypeError, match="options must be a ScoringOptions; got int"):
        PerturbationScorer(tiny_cnn, "softmax", 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="options must be a ScoringOptions; got dict"):
        PerturbationScorer(tiny_cnn, options={"precision": "bf16"})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        PerturbationScorer(tiny_cnn, precision="bf16")  # type: ignore[call-arg]


def test_the_keywords_are_checked_where_they_are_given(tiny_cnn: nn.Module) -> None:
    with pytest.raises(ValueError, match=re.escape("precision must be one of")):
        PolyCam(tiny_cnn, precision="int8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="perturbations_per_eval must be a positive int"):
        Insertion(tiny_cnn, perturbations_per_eval=-1)
    with pytest.raises(ValueError, match="perturbations_per_eval must be a positive int"):
        PolyCam(tiny_cnn, perturbations_per_eval=0)
    with pytest.raises(ValueError, match=re.escape("precision must be one of")):
        ConfidenceChange(tiny_cnn, precision=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="compile must be True or False; got 'yes'"):
        InsertionDeletion(tiny_cnn, compile="yes")  # type: ignore[arg-type]
    with pytest.raises(EvaluationError, match="precision must be one of"):
        EvaluationConfig(precision="half")  # type: ignore[arg-type]
    # The evaluation passes the value: it is checked when it is made, before any method.
    with pytest.raises(ValueError, match="perturbations_per_eval must be a positive"):
        build_methods(["pcam+"], tiny_cnn, ["block1", "block3"], options=ScoringOptions(0))


def test_polycam_attribute_uses_the_constructors_pass_size(
    tiny_cnn: nn.Module, tiny_inputs: Tensor
) -> None:
    sizes: list[int] = []
    hook = tiny_cnn.register_forward_pre_hook(lambda _, args: sizes.append(len(args[0])))
    try:
        polycam = PolyCam(tiny_cnn, ["block1", "block3"], "plus", perturbations_per_eval=1)
        polycam.attribute(tiny_inputs)
    finally:
        hook.remove()
    # The clean pass, then masked passes of one input per example of the batch of three.
    assert sizes[0] == len(tiny_inputs)
    assert max(sizes[1:]) == len(tiny_inputs)


def test_evaluation_config_carries_precision_and_compile() -> None:
    config = EvaluationConfig(precision="bf16", compile=True)
    assert config.scoring == ScoringOptions(precision="bf16", compile=True)
    assert config.as_dict()["precision"] == "bf16"  # run.json keeps its fields
