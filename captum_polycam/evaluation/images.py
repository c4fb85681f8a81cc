"""Moved to :mod:`captum_polycam.resources.images`: the old path still imports."""

from captum_polycam.resources.images import *  # noqa: F403
from captum_polycam.resources.images import __all__  # noqa: F401
