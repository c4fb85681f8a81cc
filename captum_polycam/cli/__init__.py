"""The ``captum-polycam`` command line: explain images with Poly-CAM and save a figure."""

__all__ = ["CliError"]


class CliError(Exception):
    """A problem with the user's arguments or files, reported in one line without a traceback."""
