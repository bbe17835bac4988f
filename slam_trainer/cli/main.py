"""The `slam` command: one entry point, one module per sub-command.

Usage:
    slam demo
    slam identify --model PATH --data FILE --output_dir out/
    slam train --config recipes/slam_tiny_cpu.yaml --num_train_epochs 2
    slam eval --model PATH --data ../shared/data/mgsm/mgsm.jsonl --languages en zh

Each sub-command module defines `make_parser(subparsers)` and `main(args)`; heavy imports stay inside `main`.
Every sub-command accepts `--config FILE.yaml`: the file's keys become the parser's defaults, flags given on the
command line win, and a key the sub-command does not know is an error (as TRL's `TrlParser` does).
"""

from __future__ import annotations

import argparse
import importlib
import sys

import yaml


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


class CommandError(Exception):
    """Bad input found by a sub-command: printed as one line, exit status 2."""


def _available_commands() -> dict[str, object]:
    modules = {}
    for name, module_name in COMMANDS.items():
        try:
            modules[name] = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:  # a real missing dependency inside the module: surface it
                raise
    return modules


def apply_config_file(parser: argparse.ArgumentParser, path: str) -> None:
    """Make the YAML file's keys the parser's defaults; unknown keys fail."""
    with open(path, encoding="utf-8") as handle:
        values = yaml.safe_load(handle) or {}
    if not isinstance(values, dict):
        raise CommandError(f"--config {path}: expected a mapping of option names to values.")
    known = {action.dest for action in parser._actions}
    unknown = sorted(set(values) - known)
    if unknown:
        raise CommandError(f"--config {path}: unknown option(s) {', '.join(unknown)} for `{parser.prog}`.")
    parser.set_defaults(**values)


def make_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(prog="slam", description=__doc__.split("\n")[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    commands = {}
    for name, module in _available_commands().items():
        sub = module.make_parser(subparsers)
        sub.add_argument("--config", default=None, help="YAML file whose keys become this command's defaults.")
        sub.set_defaults(_main=module.main)
        commands[name] = sub
    return parser, commands


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv and argv[0] in COMMANDS:
            module = importlib.import_module(COMMANDS[argv[0]])
            if hasattr(module, "parse_own_arguments"):  # e.g. `slam train`, parsed by TRL's TrlParser
                module.parse_own_arguments(argv[1:])
                return 0
    except (CommandError, ValueError, FileNotFoundError) as error:
        print(f"slam {argv[0]}: error: {error}", file=sys.stderr)
        return 2
    parser, commands = make_parser()
    try:
        args = parser.parse_args(argv)
        if args.config:
            sub = commands[args.command]
            apply_config_file(sub, args.config)
            args = parser.parse_args(argv)
        args._main(args)
    except (CommandError, ValueError, FileNotFoundError) as error:
        print(f"slam {argv[0] if argv else ''}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
