"""`slam train --help`: the package's own options first, grouped (SLAM, L², data), without importing TRL.

TRL's parser prints every `TrainingArguments` field (over 900 lines, seconds to build): that stays behind
`--help-all`. The options here are read from their one source: the script's dataclass (`TrainScriptArguments`) and
the `slam_*` fields of `SelectiveFFNConfig`, whose module imports TRL, so its fields are read from its source with
`ast` instead of importing it.
"""

from __future__ import annotations

import ast
import dataclasses
import textwrap
from pathlib import Path


CONFIG_SOURCE = Path(__file__).resolve().parents[1] / "config.py"
# Modules config.py takes defaults and choices from that import nothing heavy: imported for the help (the others'
# literal constants are read from their source).
LIGHT_MODULES = ("slam_trainer.probe.settings",)
DATA_OPTIONS = (
    "dataset_name",
    "dataset_config",
    "dataset_train_split",
    "dataset_format",
    "languages",
    "synthetic_problems",
    "synthetic_world",
    "prompt_format",
)
# TRL / transformers options most runs set; their descriptions are TRL's (`--help-all`).
COMMON_TRL_OPTIONS = (
    "model_name_or_path",
    "output_dir",
    "max_steps",
    "num_train_epochs",
    "learning_rate",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "max_length",
    "dtype",
    "bf16",
    "use_cpu",
    "use_peft",
    "save_strategy",
    "resume_from_checkpoint",
    "push_to_hub",
    "report_to",
)


@dataclasses.dataclass(frozen=True)
class Option:
    name: str
    help: str
    default: str
    choices: tuple = ()


def _value(node, names: dict):
    """A field's default or choices: a literal, or an expression over the light modules' names."""
    try:
        return ast.literal_eval(node)
    except ValueError:
        return eval(compile(ast.Expression(node), "config.py", "eval"), {"__builtins__": {"list": list}}, names)


def _text(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def _light_names(tree) -> dict:
    """The names config.py imports from the package: from the light modules by importing them, from the others (which
    import torch) by reading their literal constants from source."""
    import importlib
    import importlib.util

    names = {}
    for node in tree.body:
        if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("slam_trainer."):
            continue
        if node.module in LIGHT_MODULES:
            module = importlib.import_module(node.module)
            names.update({alias.asname or alias.name: getattr(module, alias.name) for alias in node.names})
            continue
        source = ast.parse(Path(importlib.util.find_spec(node.module).origin).read_text(encoding="utf-8"))
        constants = {}
        for statement in source.body:
            if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
                target = statement.targets[0]
                if isinstance(target, ast.Name):
                    try:
                        constants[target.id] = ast.literal_eval(statement.value)
                    except ValueError:
                        pass
        names.update(
            {alias.asname or alias.name: constants[alias.name] for alias in node.names if alias.name in constants}
        )
    return names


def config_options(path: Path = CONFIG_SOURCE) -> list[Option]:
    """The `slam_*` fields of `SelectiveFFNConfig` with their help, default and choices, read from its source."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = _light_names(tree)
    (config,) = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "SelectiveFFNConfig"]
    options = []
    for statement in config.body:
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            continue
        name, call = statement.target.id, statement.value
        if not name.startswith("slam_") or not isinstance(call, ast.Call):
            continue
        keywords = {keyword.arg: keyword.value for keyword in call.keywords}
        metadata = keywords.get("metadata")
        entries = dict(zip(metadata.keys, metadata.values)) if isinstance(metadata, ast.Dict) else {}
        entries = {key.value: value for key, value in entries.items() if isinstance(key, ast.Constant)}
        default = keywords.get("default", keywords.get("default_factory"))
        if isinstance(default, ast.Lambda):
            default = default.body
        choices = entries.get("choices")
        options.append(
            Option(
                name=name,
                help=ast.literal_eval(entries["help"]) if "help" in entries else "",
                default="" if default is None else _text(_value(default, names)),
                choices=tuple(map(str, _value(choices, names))) if choices is not None else (),
            )
        )
    return options


def script_options(arguments_class) -> list[Option]:
    """The fields of the script's own dataclass."""
    options = []
    for item in dataclasses.fields(arguments_class):
        if item.default is not dataclasses.MISSING:
            default = _text(item.default)
        elif item.default_factory is not dataclasses.MISSING:
            default = _text(item.default_factory())
        else:
            default = ""
        choices = tuple(map(str, item.metadata.get("choices", ())))
        options.append(Option(item.name, item.metadata.get("help", ""), default, choices))
    return options


def _format(option: Option) -> str:
    head = f"  --{option.name}"
    notes = []
    if option.choices:
        notes.append(f"choices: {', '.join(option.choices)}")
    if option.default not in ("", "None"):
        notes.append(f"default: {option.default}")
    text = option.help.replace("%%", "%") + (f" ({'; '.join(notes)})" if notes else "")
    body = textwrap.fill(text, width=118, initial_indent=" " * 8, subsequent_indent=" " * 8)
    return f"{head}\n{body}"


def short_help(arguments_class, prog: str = "slam train") -> str:
    """The grouped help: SLAM, L², data, then the most used TRL options by name, and the pointer to the rest."""
    script = {option.name: option for option in script_options(arguments_class)}
    slam = [script.pop("training")] if "training" in script else []
    slam += config_options()
    l2 = [script.pop(name) for name in list(script) if name.startswith("l2_")]
    data = [script.pop(name) for name in DATA_OPTIONS if name in script]
    groups = [
        ("SLAM: selective FFN training (SelectiveFFNConfig)", slam),
        ("L²: multilingual chains of thought (L2DataCollator; needs parallel data)", l2),
        ("Data", data),
    ]
    if script:  # a new script option no group names yet is still shown
        groups.append(("Other script options", list(script.values())))
    about = (
        "SFT with SLAM's selective FFN training and, optionally, L²'s data collator. A YAML --config gives "
        "defaults (its keys are these option names), flags win, unknown keys fail. Booleans take true/false."
    )
    lines = [f"usage: {prog} [--config FILE.yaml] [--OPTION VALUE ...]", "", textwrap.fill(about, width=118)]
    for title, options in groups:
        lines += ["", f"{title}:"] + [_format(option) for option in options]
    lines += [
        "",
        "Model and training (TRL's ModelConfig and SFTConfig / transformers' TrainingArguments), the most used:",
        textwrap.fill(
            ", ".join(f"--{name}" for name in COMMON_TRL_OPTIONS),
            width=118,
            initial_indent="  ",
            subsequent_indent="  ",
        ),
        "",
        f"`{prog} --help-all` describes these and every other TRL/Trainer option (several hundred; takes seconds).",
    ]
    return "\n".join(lines)
