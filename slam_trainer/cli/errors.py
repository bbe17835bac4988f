"""The error a sub-command raises for bad input; its own module so that sub-commands need not import `cli.main`."""

from slam_trainer.errors import ConfigError


class CommandError(ConfigError):
    """Bad input found by a sub-command (a flag's value or combination): `slam` prints it as one line on stderr and
    exits with status 2, as every `slam_trainer.errors.SlamTrainerError`."""
