"""What is scored: the model output turned into scores, and the target of each example."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from captum_polycam._compat import TargetType
from captum_polycam._conventions import as_int

__all__ = ["ExampleTargets", "ScoreFn", "resolve_score_fn"]

ScoreFn = str | Callable[[Tensor], Tensor]


def logits_of(output: Any) -> Tensor | None:
    """The logits a model returned: a tensor as it is, or the ``logits`` of a Hugging Face
    ``ModelOutput`` or of a dict; ``None`` for anything else."""
    if isinstance(output, Tensor):
        return output
    logits = output.get("logits") if isinstance(output, Mapping) else None
    if logits is None:
        logits = getattr(output, "logits", None)
    return logits if isinstance(logits, Tensor) else None


def _logits(output: Any) -> Tensor:
    logits = logits_of(output)
    # The engine checks the output before scoring it: only a caller of the score function
    # itself can get here with something else.
    if logits is None:
        raise TypeError(f"expected logits: a tensor or an output with .logits; got {output!r}")
    # Half-precision logits of a lowered pass inside an output object: score at full precision.
    return logits.float() if logits.dtype in (torch.bfloat16, torch.float16) else logits


def _probability(output: Any) -> Tensor:
    logits = _logits(output)
    # A single output unit is a binary classifier: its probability is the sigmoid.
    if logits.dim() == 1 or logits.shape[1] == 1:
        return logits.sigmoid()
    return logits.softmax(dim=1)


def resolve_score_fn(score_fn: ScoreFn) -> Callable[[Tensor], Tensor]:
    """``"softmax"`` (sigmoid for a single output unit), ``"logit"`` or a callable.

    The two names score the model's logits: its output when that is a tensor, or the
    ``logits`` of a Hugging Face ``ModelOutput`` or of a dict.

    A callable receives the model's output for a batch and returns a tensor whose first
    dimension is the batch; the target then picks one value per example from it (or it
    returns one value per example and no target is given).
    """
    if score_fn == "softmax":
        return _probability
    if score_fn == "logit":
        return _logits
    if callable(score_fn):
        return score_fn
    raise ValueError(f"score_fn must be 'softmax', 'logit' or a callable; got {score_fn!r}")


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
        an output with one value per example. Wherever an int is taken (the target, a list
        entry, an index of a tuple), a NumPy integer or 0-d integer array is taken as well.
        """
        count, device = scores.shape[0], scores.device
        number = as_int(target)
        if number is not None:  # np.int64(1), say, as indexing an array of labels gives
            target = number
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
            rows = [(t,) if as_int(t) is not None else t for t in per_example]
            if not all(
                isinstance(r, tuple) and all(as_int(i) is not None for i in r) for r in rows
            ):
                raise TypeError("target: list entries must be ints or tuples of ints")
            rows = [tuple(as_int(i) for i in r) for r in rows]
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
