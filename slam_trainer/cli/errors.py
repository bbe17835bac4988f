"""The error a sub-command raises for bad input; its own module so that sub-commands need not import `cli.main`."""

from slam_trainer.errors import ConfigError


class CommandError(ConfigError):
    """Bad input found by a sub-command (a flag's value or combination): `slam` prints it as one line on stderr and
    exits with status 2, as every `slam_trainer.errors.SlamTrainerError`."""


class in_flag_words:  # noqa: N801 - used as a context manager, named for how it reads: `with in_flag_words(...)`
    """Re-raise a library `ValueError` whose message names Python parameters as a `CommandError` naming the flags.

    `words` maps each text as the library writes it ("`target`", "policy='fixed'") to the user's spelling
    ("`--switch_target`", "--switch_policy fixed"); a message that names none of them passes through unchanged.
    """

    def __init__(self, words: dict[str, str]):
        self.words = words

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if kind is None or not issubclass(kind, ValueError):
            return False
        message = str(error)
        for python, flag in self.words.items():
            message = message.replace(python, flag)
        if message == str(error):
            return False
        raise CommandError(message) from None
