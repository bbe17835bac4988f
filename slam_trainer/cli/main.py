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
import dataclasses
import difflib
import importlib
import re
import sys
import types
import typing
import warnings

import yaml

from slam_trainer.cli.errors import CommandError
from slam_trainer.errors import SlamTrainerError
from slam_trainer.redaction import REDACTED, looks_like_key, redact


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

    def __init__(self, *args, strict_flags: bool = True, **kwargs):
        self.actions_by_dest: dict[str, argparse.Action] = {}  # before super().__init__, which adds --help
        self.strict_flags = strict_flags  # refuse unknown `--flags` (off for a parser that sees only some of them)
        super().__init__(*args, **kwargs)

    def add_subparsers(self, **kwargs):
        self.strict_flags = False  # the sub-command's parser checks its own flags
        return super().add_subparsers(**kwargs)

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

    def parse_known_args(self, args=None, namespace=None):
        # Unknown flags first, with a suggestion: argparse would report a missing required option before a typo.
        flags = self._option_strings()
        unknown = [
            word
            for word in (args or [])
            if isinstance(word, str) and word.startswith("--") and word != "--" and not known_flag(word, flags)
        ]
        if unknown and self.strict_flags:
            known = [flag.removeprefix("--") for flag in flags if flag.startswith("--")]
            raise unknown_options_error("", unknown, known, prefix="--", prog=self.prog)
        return super().parse_known_args(args, namespace)

    def _option_strings(self) -> list[str]:
        return [flag for action in self.actions_by_dest.values() for flag in action.option_strings]

    def error(self, message: str):
        raise CommandError(f"{message} (see `{self.prog} --help`).")


def known_flag(word: str, flags: list[str]) -> bool:
    """Whether argparse would take `word` (`--name` or `--name=value`) as one of `flags`, abbreviations included."""
    name = word.split("=", 1)[0]
    return name in flags or sum(flag.startswith(name) for flag in flags) == 1


def unknown_options_error(where: str, unknown, known, prefix: str = "", prog: str = "slam") -> CommandError:
    """One error for options `prog` does not know, each with the closest known name ("did you mean --max_steps?");
    `where` opens the message (e.g. "--config FILE: ")."""
    known = list(known)
    names = []
    for option in unknown:
        typed = option.split("=", 1)[0].removeprefix("--")  # the name as typed, never its value (it may be a key)
        close = difflib.get_close_matches(typed.replace("-", "_"), known, n=1, cutoff=0.6)
        names.append(f"{prefix}{typed}" + (f" (did you mean {prefix}{close[0]}?)" if close else ""))
    return CommandError(f"{where}unknown option(s) {', '.join(names)}; see `{prog} --help`.")


MAX_CONFIG_NODES = 10_000  # ours: YAML values after alias expansion; a recipe holds tens, an alias bomb billions
MAX_SHOWN = 120  # ours: characters of a value repeated in an error message
MAX_MESSAGE = 1_000  # ours: characters of one error line


def shown(value) -> str:
    """`repr(value)`, cut to `MAX_SHOWN` characters: a message repeats a value, never a whole file."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]}... ({len(text)} characters)"


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses a mapping with the same key twice (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue  # `<<` merges may override; a non-scalar key is refused by PyYAML itself
            key = self.construct_object(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {shown(key)}: give it once (YAML would keep the last)",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def _expanded_nodes(node, counted: dict, open_nodes: set) -> int:
    """How many nodes `node` holds once every alias is expanded, counting each shared node once per use."""
    if id(node) in counted:
        return counted[id(node)]
    if id(node) in open_nodes:
        raise CommandError("an alias refers to the node that holds it (a recursive structure); remove it.")
    open_nodes.add(id(node))
    children = node.value if isinstance(node, yaml.SequenceNode) else ()
    if isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    total = 1
    for child in children:
        total += _expanded_nodes(child, counted, open_nodes)
        if total > MAX_CONFIG_NODES:
            break
    open_nodes.discard(id(node))
    counted[id(node)] = total
    return total


def load_config_file(path: str):
    """The YAML document in `path`: duplicate keys refused, aliases expanding past `MAX_CONFIG_NODES` refused."""
    try:
        with open(path, encoding="utf-8") as handle:
            loader = _ConfigLoader(handle)
            try:
                node = loader.get_single_node()
                if node is None:
                    return None
                try:
                    size = _expanded_nodes(node, {}, set())
                except CommandError as error:
                    raise CommandError(f"--config {path}: {error}") from None
                if size > MAX_CONFIG_NODES:
                    raise CommandError(
                        f"--config {path}: its aliases (*name) expand to more than {MAX_CONFIG_NODES} values, far "
                        "more than any recipe holds; write the values out instead."
                    )
                return loader.construct_document(node)
            finally:
                loader.dispose()
    except UnicodeDecodeError as error:
        raise CommandError(f"--config {path}: not UTF-8 ({error.reason} at byte {error.start}).") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise CommandError(f"--config {path}: not valid YAML{where} ({problem}).") from None


def _config_value(action: argparse.Action, value, where: str):
    """A YAML value checked and converted as argparse would treat the same value given as a flag."""
    if action.nargs == 0:  # store_true / store_false / store_const
        if not isinstance(value, bool):
            raise CommandError(f"{where} is a flag: give true or false, got {shown(value)}.")
        return value
    many = action.nargs in ("+", "*") or isinstance(action.nargs, int)
    if isinstance(value, dict) or (isinstance(value, list) and not many):
        raise CommandError(f"{where} takes a single value, got {shown(value)}.")
    items = value if isinstance(value, list) else [value]
    converted = []
    for item in items:
        if isinstance(item, (list, dict)) or item is None:
            raise CommandError(f"{where}: expected a list of plain values, got {shown(value)}.")
        if action.type is None:
            if not isinstance(item, str):  # YAML reads `no` as false and `1e-3` as text: say so instead of guessing
                raise CommandError(f"{where}: expected text, got {shown(item)}; quote it in the YAML file.")
        else:
            try:
                item = action.type(item if isinstance(item, str) else str(item))
            except (TypeError, ValueError, argparse.ArgumentTypeError) as error:
                raise CommandError(f"{where}: invalid value {shown(item)} ({error}).") from None
        if action.choices is not None and item not in action.choices:
            choices = ", ".join(map(str, action.choices))
            raise CommandError(f"{where} must be one of {choices}; got {shown(item)}.")
        converted.append(item)
    return converted if many else converted[0]


def _accepts(hint, kind: type) -> bool:
    """Whether a field annotated `hint` can take a YAML value of type `kind` (list or dict)."""
    origin = typing.get_origin(hint)
    if hint is typing.Any or hint is kind or origin is kind or (kind is list and origin in (tuple, list)):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(member, kind) for member in typing.get_args(hint))
    return isinstance(hint, type) and issubclass(hint, kind)


def check_config_shapes(values: dict, dataclass_types, path: str) -> None:
    """Refuse a YAML list or mapping given for a field that takes one value (a dataclass parser, e.g. TRL's, would
    store it as is and fail, or misbehave, much later)."""
    for cls in dataclass_types:
        try:
            hints = typing.get_type_hints(cls)
        except (NameError, TypeError):  # an annotation that cannot be resolved: leave its fields to the parser
            continue
        for field in dataclasses.fields(cls):
            value = values.get(field.name)
            kind = list if isinstance(value, list) else dict if isinstance(value, dict) else None
            if kind is not None and field.name in hints and not _accepts(hints[field.name], kind):
                what = "a list" if kind is list else "a mapping"
                raise CommandError(f"--config {path}: `{field.name}` takes a single value, got {what} {shown(value)}.")


def apply_config_file(parser: SlamArgumentParser, path: str) -> None:
    """Make the YAML file's keys the parser's defaults: checked as flags are, unknown keys fail, required ones met."""
    values = load_config_file(path)
    if values is None:
        return
    if not isinstance(values, dict):
        kind = type(values).__name__
        raise CommandError(f"--config {path}: expected a mapping of option names to values, got a {kind}.")
    options = {
        dest: action for dest, action in parser.actions_by_dest.items() if dest not in (argparse.SUPPRESS, "config")
    }
    unknown = sorted(str(key)[:MAX_SHOWN] for key in values if key not in options)
    if unknown:
        raise unknown_options_error(f"--config {path}: ", unknown[:10], options, prog=parser.prog)
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
    finder = SlamArgumentParser(prog=f"slam {command}", add_help=False, strict_flags=False)
    finder.add_argument("--config", default=None)
    return finder.parse_known_args(argv)[0].config


def run(argv: list[str]) -> None:
    """Parse `argv` and run the sub-command; bad input raises one of `EXPECTED_ERRORS`."""
    # TRL's configs set the deprecated `gradient_checkpointing` field themselves: a warning the user can do nothing
    # about, printed above every `slam train` error (which must be one line).
    warnings.filterwarnings("ignore", message=r"`gradient_checkpointing` is deprecated", category=FutureWarning)
    if argv and argv[0] in COMMANDS:
        module = importlib.import_module(COMMANDS[argv[0]])
        if hasattr(module, "parse_own_arguments"):  # e.g. `slam train`, parsed by TRL's TrlParser
            config = _config_path(argv[0], argv[1:])
            if config is not None:  # duplicate keys, alias bombs and misplaced lists refused before TRL reads it
                values = load_config_file(config)
                if isinstance(values, dict) and hasattr(module, "make_parser"):
                    check_config_shapes(values, module.make_parser().dataclass_types, config)
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


_SECRET_OPTION = re.compile(r"(?i)^--?[a-z0-9_\-]*(?:key|token|secret|password|passwd|credentials?|auth)$")


def secret_arguments(argv: list[str]) -> list[str]:
    """The command-line values an error must not repeat: those that look like a key, the value of an option named
    like a secret (`--api-key X`, `--hf_token=X`; not `--api_key_env`, which takes a variable's name)."""
    found = []
    for index, token in enumerate(argv):
        name, equals, value = token.partition("=")
        if equals and _SECRET_OPTION.match(name):
            found.append(value)
        elif _SECRET_OPTION.match(token) and index + 1 < len(argv):
            found.append(argv[index + 1])
        found.extend(part for part in (token, value) if part and looks_like_key(part))
    return sorted({value for value in found if value}, key=len, reverse=True)


def error_line(message: str, argv: list[str]) -> str:
    """`message` as `slam` prints it: without the secrets in `argv` or anything shaped like a key or a signed URL,
    and at most `MAX_MESSAGE` characters."""
    for secret in secret_arguments(argv):
        message = message.replace(secret, REDACTED)
    message = redact(message)
    return message if len(message) <= MAX_MESSAGE else f"{message[:MAX_MESSAGE]}... ({len(message)} characters)"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = f"slam {argv[0]}" if argv and argv[0] in COMMANDS else "slam"
    try:
        run(argv)
    except EXPECTED_ERRORS as error:
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"{prog}: error: {error_line(message, argv)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
