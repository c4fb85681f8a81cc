"""One value of a metric that computes several from the same forward passes."""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from captum_polycam._repr import settings_repr

__all__ = ["MetricPart"]


class MetricPart:
    """A metric's single value, such as :class:`~captum_polycam.metrics.Insertion` of
    :class:`~captum_polycam.metrics.InsertionDeletion`: it takes the whole metric's
    arguments, keeps the whole metric as ``metric``, and shows its settings."""

    whole: ClassVar[type]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Documentation and editors show the arguments that the part forwards.
        cls.__signature__ = inspect.signature(cls.whole)  # type: ignore[attr-defined]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.metric = self.whole(*args, **kwargs)

    def __repr__(self) -> str:
        return settings_repr(type(self).__name__, **self.metric._settings())
