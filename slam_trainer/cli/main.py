"""The `slam` command: one entry point, one module per sub-command.

Usage:
    slam demo
    slam identify --model PATH --data FILE --output_dir out/
    slam train --config recipes/slam_tiny_cpu.yaml --num_train_epochs 2
    slam eval --model PATH --data ../shared/data/mgsm/mgsm.jsonl --languages en zh

Each sub-command module defines `make_parser(subparsers)` and `main(args)`; heavy imports stay inside `main`, and only
the module of the command being run is imported (all of them for `slam --help`). Every sub-command accepts `--config
FILE.yaml`: the file's keys become the parser's defaults (a key can stand in for a required option), flags given on
the command line win, and a key the sub-command does not know is an error (as TRL's `TrlParser` does). Expected
failures (bad input, a missing or unreadable file, bad YAML, a missing optional package) print one line, `slam
COMMAND: error: ...`, on stderr and exit with status 2 (`EXPECTED_ERRORS`: `slam_trainer.errors.SlamTrainerError` and
its subclasses, a missing file); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

import yaml

from slam_trainer.cli.errors import CommandError
from slam_trainer.errors import SlamTrainerError


# Sub-command name -> module. Modules are imported only when their command runs (or for --help).
COMMANDS = {
    "identify": "slam_trainer.cli.identify",
    "train": "slam_trainer.cli.train",
    "l2-build": "slam_trainer.cli.l2_build",
    "annotate": "slam_trainer.cli.annotate",
    "eval": "slam_trainer.cli.eval",
    "merge": "slam_trainer.cli.merge",
    "demo": "slam_trainer.cli.demo",
}

# The user's to fix, printed as one line with exit status 2: the package's errors (`CommandError` among them), a
# file that is missing or cannot be opened, bad YAML, a missing optional package. Anything else keeps its traceback.
EXPECTED_ERRORS = (
    SlamTrainerError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
    yaml.YAMLError,
    ModuleNotFoundError,
)


class SlamArgumentParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` whose errors are one-line `CommandError`s and which records the options it is given.

    The record (`actions_by_dest`, filled through the public `add_argument` calls, groups included) lets a YAML
    `--config` check its keys and stand in for required options without argparse's private `_actions`.
    """

    def __init__(self, *args, **kwargs):
        self.actions_by_dest: dict[str, argparse.Action] = {}  # before super().__init__, which adds --help
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs) -> argparse.Action:
        return self._record(super().add_argument(*args, **kwargs))

    def add_argument_group(self, *args, **kwargs):
        return self._recording(super().add_argument_group(*args, **kwargs))

    def add_mutually_exclusive_group(self, **kwargs):
        return self._recording(super().add_mutually_exclusive_group(**kwargs))

    def _record(self, action: argparse.Action) -> argparse.Action:
        self.actions_by_dest[action.dest] = action
        return action

    def _recording(self, group):
        add = group.add_argument
        group.add_argument = lambda *args, **kwargs: self._record(add(*args, **kwargs))
        return group

    def error(self, message: str):
        raise CommandError(f"{message} (see `{self.prog} --help`).")


def _config_value(action: argparse.Action, value, where: str):
    """A YAML value checked and converted as argparse would treat the same value given as a flag."""
    if action.nargs == 0:  # store_true / store_false / store_const
        if not isinstance(value, bool):
            raise CommandError(f"{where} is a flag: give true or false, got {value!r}.")
        return value
    many = action.nargs in ("+", "*") or isinstance(action.nargs, int)
    if isinstance(value, dict) or (isinstance(value, list) and not many):
        raise CommandError(f"{where} takes a single value, got {value!r}.")
    items = value if isinstance(value, list) else [value]
    converted = []
    for item in items:
        if isinstance(item, (list, dict)) or item is None:
            raise CommandError(f"{where}: expected a list of plain values, got {value!r}.")
        if action.type is None:
            if not isinstance(item, str):  # YAML reads `no` as false and `1e-3` as text: say so instead of guessing
                raise CommandError(f"{where}: expected text, got {item!r}; quote it in the YAML file.")
        else:
            try:
                item = action.type(item if isinstance(item, str) else str(item))
            except (TypeError, ValueError, argparse.ArgumentTypeError) as error:
                raise CommandError(f"{where}: invalid value {item!r} ({error}).") from None
        if action.choices is not None and item not in action.choices:
            choices = ", ".join(map(str, action.choices))
            raise CommandError(f"{where} must be one of {choices}; got {item!r}.")
        converted.append(item)
    return converted if many else converted[0]


def apply_config_file(parser: SlamArgumentParser, path: str) -> None:
    """Make the YAML file's keys the parser's defaults: checked as flags are, unknown keys fail, required ones met."""
    try:
        with open(path, encoding="utf-8") as handle:
            values = yaml.safe_load(handle)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise CommandError(f"--config {path}: not valid YAML{where} ({problem}).") from None
    if values is None:
        return
    if not isinstance(values, dict):
        kind = type(values).__name__
        raise CommandError(f"--config {path}: expected a mapping of option names to values, got a {kind}.")
    options = {
        dest: action for dest, action in parser.actions_by_dest.items() if dest not in (argparse.SUPPRESS, "config")
    }
    unknown = sorted(str(key) for key in values if key not in options)
    if unknown:
        raise CommandError(f"--config {path}: unknown option(s) {', '.join(unknown)} for `{parser.prog}`.")
    defaults = {}
    for key, value in values.items():
        action = options[key]
        if not action.option_strings:
            raise CommandError(f"--config {path}: `{key}` is a positional argument; give it on the command line.")
        if value is None:  # as if the key were absent
            continue
        defaults[key] = _config_value(action, value, f"--config {path}: `{key}`")
        action.required = False  # the file supplies it; a flag still wins
    parser.set_defaults(**defaults)


def make_parser(modules: dict | None = None) -> tuple[SlamArgumentParser, dict[str, SlamArgumentParser]]:
    """The `slam` parser with a sub-parser for each of `modules` (name -> imported module; all by default)."""
    if modules is None:
        modules = {name: importlib.import_module(module_name) for name, module_name in COMMANDS.items()}
    parser = SlamArgumentParser(prog="slam", description=__doc__.split("\n")[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    commands = {}
    for name, module in modules.items():
        sub = module.make_parser(subparsers)
        sub.add_argument("--config", default=None, help="YAML file whose keys become this command's defaults.")
        sub.set_defaults(_main=module.main)
        commands[name] = sub
    return parser, commands


def _config_path(command: str, argv: list[str]) -> str | None:
    """The `--config` value among a sub-command's arguments, read before the full parse (which needs the file)."""
    finder = SlamArgumentParser(prog=f"slam {command}", add_help=False)
    finder.add_argument("--config", default=None)
    return finder.parse_known_args(argv)[0].config


def run(argv: list[str]) -> None:
    """Parse `argv` and run the sub-command; bad input raises one of `EXPECTED_ERRORS`."""
    if argv and argv[0] in COMMANDS:
        module = importlib.import_module(COMMANDS[argv[0]])
        if hasattr(module, "parse_own_arguments"):  # e.g. `slam train`, parsed by TRL's TrlParser
            module.parse_own_arguments(argv[1:])
            return
        parser, commands = make_parser({argv[0]: module})
        config = _config_path(argv[0], argv[1:])
        if config is not None:
            apply_config_file(commands[argv[0]], config)
    else:
        parser, _ = make_parser()
    args = parser.parse_args(argv)
    args._main(args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = f"slam {argv[0]}" if argv and argv[0] in COMMANDS else "slam"
    try:
        run(argv)
    except EXPECTED_ERRORS as error:
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
