"""Typed errors and exit statuses shared by every part.

The CLI turns any ``MlopsError`` into one line and exit status ``EXIT_ERROR``; 0 is success and 2 a usage
error (click's own).
"""

EXIT_ERROR = 1
EXIT_GATE_REJECTED = 3  # the quality gate rejected the candidate (mlops gate, mlops pipeline run)
EXIT_ALERT = 4  # a monitoring threshold was crossed (mlops monitor report)


class MlopsError(Exception):
    """Base class: an error the user can act on; its message says what to do next."""


class DataValidationError(MlopsError):
    """Input data broke the schema; the message names every offending row and column."""


class ParamsError(MlopsError):
    """``params.yaml`` (or an override) is missing, malformed or names an unknown key."""


class ModelDirError(MlopsError):
    """A model directory is missing files, or its ``model.joblib`` does not match its card."""
