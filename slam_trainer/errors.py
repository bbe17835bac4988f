"""The package's exceptions: the mistakes a user can fix, one type per kind, the same type on every rank.

`slam` prints these (and a missing file) as one line, `slam COMMAND: error: ...`, with exit status 2; any other
exception is a bug and keeps its traceback. Every class derives from `ValueError`, so code that caught the
`ValueError`s the package raised before keeps working.
"""

from __future__ import annotations


class SlamTrainerError(ValueError):
    """Base class: bad input the user can fix; the message says what was wrong and how to fix it."""


class ConfigError(SlamTrainerError):
    """An option or argument with a wrong value, type or combination (names the option as the user wrote it)."""


class DataError(SlamTrainerError):
    """A dataset file or row that cannot be used (names the file and the row)."""


class ModelError(SlamTrainerError):
    """A model that cannot be loaded or used as asked (unknown name, unmapped architecture, wrong base for a delta)."""


class ResumeError(SlamTrainerError):
    """An output folder that holds another run's work, so resuming into it would mix two runs."""


class MissingDependencyError(SlamTrainerError, ImportError):
    """An optional package the feature needs is not installed; the message names the extra that installs it."""
