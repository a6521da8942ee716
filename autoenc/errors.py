"""Errors a user can act on.

Every error autoenc raises on purpose derives from ``AutoencError`` and carries
a complete message: what happened, the value received, what was expected and how
to fix it. The command line prints these as one paragraph instead of a traceback.
"""


class AutoencError(Exception):
    """Base class of the errors whose message is meant for the user."""


class InputError(AutoencError):
    """The input data cannot be used: no files, missing or unsupported columns."""


class ArtifactError(AutoencError):
    """A model directory or artifact is missing, incomplete or inconsistent."""


class ConfigError(AutoencError, ValueError):
    """A hyperparameter or option has a value outside its valid range."""


class BusyError(AutoencError):
    """Another run holds the output (or model version) this run would write."""


class ReconciliationError(AutoencError):
    """Row counts that must agree do not: rows were lost or duplicated; nothing was committed."""
