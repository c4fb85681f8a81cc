"""The one error type of the evaluation pipeline and the command line built on it."""

__all__ = ["EvaluationError"]


class EvaluationError(ValueError):
    """A problem with the user's arguments, files or output folder.

    The message names the argument or file and what was expected; the command line prints
    it in one line, without a traceback.
    """
