"""Moved to :mod:`captum_polycam.testing`: the old path still imports."""

from captum_polycam.testing import *  # noqa: F403
from captum_polycam.testing import __all__  # noqa: F401
