"""A classifier's class scores as ``explain`` reads them from the model's output and prints
them, for images and scans alike."""

from __future__ import annotations

from torch import Tensor

from captum_polycam.perturbation.targets import logits_of
from captum_polycam.resources.errors import EvaluationError

__all__ = ["class_scores", "print_classes"]


def class_scores(output: object, model_name: str, kind: str = "an image classifier") -> Tensor:
    """The model's ``N x classes`` logits (a tensor, or an output's ``logits``), or a usage
    error saying that the model is not ``kind`` and what it returned instead."""
    logits = logits_of(output)
    if logits is not None and logits.dim() == 2:
        return logits
    if isinstance(output, Tensor):
        returned = f"a tensor of shape {tuple(output.shape)}"
    else:
        returned = f"a {type(output).__name__}"
    raise EvaluationError(
        f"--model {model_name}: not {kind}: it returned {returned}; expected a "
        "tensor of class scores, N x classes (explain a detector with explain-detection)"
    )


def print_classes(name: str, probabilities: Tensor, target: int, categories: list[str]) -> None:
    """The five most probable classes of one input, then the class explained."""
    print(f"\n{name}")
    values, indices = probabilities.topk(min(5, len(probabilities)))
    for value, index in zip(values.tolist(), indices.tolist(), strict=True):
        print(f"  {index:>4}  {categories[index]:<28} {value:7.2%}")
    print(f"  explained: {target} {categories[target]}")
