"""The error a sub-command raises for bad input; its own module so that sub-commands need not import `cli.main`."""


class CommandError(Exception):
    """Bad input found by a sub-command: `slam` prints it as one line on stderr and exits with status 2."""
