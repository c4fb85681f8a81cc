"""What is scored: the model output turned into scores, and the target of each example."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from captum_polycam._compat import TargetType

__all__ = ["ExampleTargets", "ScoreFn", "resolve_score_fn"]

ScoreFn = str | Callable[[Tensor], Tensor]


def _probability(output: Tensor) -> Tensor:
    # A single output unit is a binary classifier: its probability is the sigmoid.
    if output.dim() == 1 or output.shape[1] == 1:
        return output.sigmoid()
    return output.softmax(dim=1)


def resolve_score_fn(score_fn: ScoreFn) -> Callable[[Tensor], Tensor]:
    """``"softmax"`` (sigmoid for a single output unit), ``"logit"`` or a callable.

    A callable receives the model's output for a batch and returns a tensor whose first
    dimension is the batch; the target then picks one value per example from it (or it
    returns one value per example and no target is given).
    """
    if score_fn == "softmax":
        return _probability
    if score_fn == "logit":
        return _as_tensor
    if callable(score_fn):
        return score_fn
    raise ValueError(f"score_fn must be 'softmax', 'logit' or a callable; got {score_fn!r}")


def _as_tensor(output: Tensor) -> Tensor:
    return output


class ExampleTargets:
    """The target of every example, as an ``N x d`` index into the scored output.

    ``d`` is the number of output dimensions after the batch that the target indexes: 1 for a
    class index, more for Captum's tuple targets, 0 for a model that already returns one score
    per example. Kept as a tensor on the device so that scoring a batch of perturbations whose
    rows come from several examples is one gather, with no host synchronisation.
    """

    def __init__(self, index: Tensor) -> None:
        self.index = index

    @classmethod
    def resolve(cls, target: TargetType, scores: Tensor) -> ExampleTargets:
        """Validate a Captum ``TargetType`` against the clean scores ``(N, ...)``.

        ``None`` picks each example's top-1 class of a ``(N, classes)`` output, and nothing for
        an output with one value per example.
        """
        count, device = scores.shape[0], scores.device
        if target is None:
            if scores.dim() == 1:
                return cls(torch.zeros(count, 0, dtype=torch.long, device=device))
            if scores.dim() == 2:
                if scores.shape[1] == 1:
                    return cls(torch.zeros(count, 1, dtype=torch.long, device=device))
                return cls(scores.argmax(dim=1, keepdim=True))
            raise ValueError(
                "target=None picks the top-1 class, which needs an (N, classes) output; the "
                f"scored output has shape {tuple(scores.shape)}: pass target"
            )
        if isinstance(target, bool) or not isinstance(target, (int, tuple, list, Tensor)):
            raise TypeError(
                "target must be an int, a tuple, a list or a tensor of per-example targets, "
                f"or None; got {type(target).__name__}"
            )
        if isinstance(target, Tensor):
            if target.is_floating_point() or target.is_complex():
                raise TypeError(f"target must hold integers; got dtype {target.dtype}")
            if target.numel() == 1:
                index = target.reshape(1, 1).expand(count, 1)
            elif target.dim() == 1 and target.numel() == count:
                index = target.reshape(count, 1)
            else:
                raise ValueError(
                    f"target: a tensor target needs one entry per example ({count}); "
                    f"got shape {tuple(target.shape)}"
                )
            index = index.to(device=device, dtype=torch.long)
        else:
            per_example = target if isinstance(target, list) else [target] * count
            if len(per_example) != count:
                raise ValueError(
                    f"target: the list has {len(per_example)} entries for {count} examples"
                )
            rows = [(t,) if isinstance(t, int) else t for t in per_example]
            if not all(isinstance(r, tuple) and all(isinstance(i, int) for i in r) for r in rows):
                raise TypeError("target: list entries must be ints or tuples of ints")
            if len({len(r) for r in rows}) > 1:
                raise ValueError("target: all tuples must have the same length")
            index = torch.tensor(rows, dtype=torch.long, device=device).reshape(count, -1)
        cls._check_range(index, scores)
        return cls(index)

    @staticmethod
    def _check_range(index: Tensor, scores: Tensor) -> None:
        dims = index.shape[1]
        if dims != scores.dim() - 1:
            raise ValueError(
                f"target must pick one value per example from the scored output of shape "
                f"{tuple(scores.shape)}, which takes {scores.dim() - 1} index(es); got {dims}"
            )
        if index.numel() == 0:
            return
        limits = torch.tensor(scores.shape[1:], device=index.device)
        if bool(((index < 0) | (index >= limits)).any()):
            raise ValueError(
                f"target is out of range for the model output of shape {tuple(scores.shape)}"
            )

    def select(self, scores: Tensor, rows: Tensor) -> Tensor:
        """The target score of each row of ``scores``; ``rows`` are the rows' example indices."""
        positions = torch.arange(scores.shape[0], device=scores.device)
        return scores[(positions, *self.index[rows].unbind(1))]
