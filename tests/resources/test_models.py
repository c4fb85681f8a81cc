"""Models by name: a user's factory that fails, and a classifier where a detector is expected."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from torch import nn

from captum_polycam.resources import EvaluationError
from captum_polycam.resources.models import load_detector, load_model


def broken_factory() -> nn.Module:
    """A ``package.module:callable`` that fails, as one needing a missing checkpoint does."""
    raise RuntimeError("checkpoint.pt not found")


_BROKEN = f"{__name__}:broken_factory"


@pytest.mark.parametrize("load", [load_model, load_detector])
def test_a_factory_that_raises_names_itself_and_its_error(
    load: Callable[[str, str], object],
) -> None:
    message = f"model {_BROKEN!r}: the factory raised RuntimeError: checkpoint.pt not found"
    with pytest.raises(EvaluationError, match=re.escape(message)):
        load(_BROKEN, "cpu")


@pytest.mark.parametrize("load", [load_model, load_detector])
def test_a_factory_that_is_not_callable_is_named(load: Callable[[str, str], object]) -> None:
    with pytest.raises(
        EvaluationError, match=re.escape("model 'math:pi': math.pi is not callable")
    ):
        load("math:pi", "cpu")


@pytest.mark.parametrize("load", [load_model, load_detector])
def test_a_factory_without_a_module_name_cannot_be_imported(
    load: Callable[[str, str], object],
) -> None:
    with pytest.raises(EvaluationError, match=re.escape("model ':resnet18': cannot import it")):
        load(":resnet18", "cpu")


@pytest.mark.parametrize("name", ["efficientnet-lite0", "resnet18"])
def test_a_classifier_is_not_a_detector(name: str) -> None:
    expected = (
        f"{name!r} is an image classifier, not an object detector (explain it with: "
        f"captum-polycam explain --model {name})"
    )
    with pytest.raises(EvaluationError, match=re.escape(expected)):
        load_detector(name, "cpu")
