"""Moved to :mod:`captum_polycam.resources.errors`: the old path still imports."""

from captum_polycam.resources.errors import *  # noqa: F403
from captum_polycam.resources.errors import __all__  # noqa: F401
