"""Moved to :mod:`captum_polycam.resources.models`: the old path still imports."""

from captum_polycam.resources.models import *  # noqa: F403
from captum_polycam.resources.models import __all__  # noqa: F401
