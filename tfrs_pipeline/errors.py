"""Errors a user can cause, each with a message that names the offending input."""

from __future__ import annotations


class PipelineError(Exception):
    """Base class of every error the command line reports as one line, without a traceback."""


class DataError(PipelineError, ValueError):
    """Input data is missing, malformed or inconsistent; the message names file, line and value."""


class ConfigError(PipelineError, ValueError):
    """A configuration value or command-line option is not allowed."""


class ModelError(PipelineError):
    """An exported model is missing, incomplete or asked for something it does not know."""


class TrainingError(PipelineError):
    """Training went wrong in a way the user can act on (a loss that became NaN or infinite)."""


class ArgumentError(PipelineError, ValueError):
    """A value passed to a function or method is not allowed; the message names the argument and what is."""


class CappedWarning(UserWarning):
    """A ``k`` larger than what there is to return was capped (the answer has fewer columns than ``k``)."""


class UnknownMoviesWarning(UserWarning):
    """A visitor's history holds no movie the model knows: their list is the popular fallback."""


class NumericIdsWarning(UserWarning):
    """A DataFrame's id column holds numbers: ids are taken as their decimal text (leading zeros a file had are lost)."""
