"""`slam train`: a complete SFT script with SLAM's selective FFN training and, optionally, L²'s data collator.

Usage:
    slam train --config recipes/slam_tiny_cpu.yaml
    slam train --model_name_or_path Qwen/Qwen2.5-7B-Instruct --dataset_name data.jsonl --slam_layers auto \\
        --output_dir out --bf16 true
    accelerate launch --config_file recipes/accelerate/zero2.yaml -m slam_trainer.cli train --config recipe.yaml

Arguments are those of `SelectiveFFNConfig` (all of `trl.SFTConfig`), `trl.ModelConfig` (model, dtype, LoRA) and
`TrainScriptArguments` (`trl.ScriptArguments` extended; `slam_trainer.pipelines.training`, which does the work); a
YAML `--config` gives defaults, flags win, unknown keys fail (TRL's `TrlParser`). As in TRL's `sft.py`,
`--eval_strategy steps|epoch` evaluates: on `--dataset_test_split`, or for parallel and synthetic data on a held-out
share of the problem ids (`--eval_share`).
"""

from __future__ import annotations

import argparse


def make_parser(subparsers=None):
    if subparsers is not None:
        # Listed for `slam --help` (without importing TRL); `slam train ...` is parsed by `TrlParser` in
        # `parse_own_arguments`.
        return subparsers.add_parser(
            "train", help="SFT with SLAM (and optionally L²)", add_help=False, description=__doc__.split("\n")[0]
        )
    from trl import ModelConfig, TrlParser

    from slam_trainer.cli.errors import CommandError
    from slam_trainer.config import SelectiveFFNConfig
    from slam_trainer.pipelines.training import TrainScriptArguments

    class TrainParser(TrlParser):
        """TRL's parser whose argparse errors are one `slam train: error: ...` line (printed by `slam`, which leaves
        out any value that looks like a key), not the whole usage followed by the raw value."""

        def error(self, message: str):
            raise CommandError(f"{message} (see `slam train --help`).")

    return TrainParser((TrainScriptArguments, SelectiveFFNConfig, ModelConfig))


def parse_own_arguments(argv: list[str]) -> None:
    """`slam train` parses its arguments with TRL's `TrlParser` (dataclass fields, YAML `--config`)."""
    from slam_trainer.errors import ConfigError

    if "-h" in argv or "--help" in argv:  # the package's options, grouped, without importing TRL
        from slam_trainer.cli.train_help import short_help
        from slam_trainer.pipelines.training import TrainScriptArguments

        print(short_help(TrainScriptArguments))
        raise SystemExit(0)  # as argparse's --help of the other sub-commands
    parser = make_parser()
    parser.prog = "slam train"
    if "--help-all" in argv:
        parser.print_help()
        raise SystemExit(0)
    check_option_names(argv, parser.dataclass_types)  # before TRL builds (and checks) the configs
    try:
        script_args, training_args, model_args = parser.parse_args_and_config(argv)
    except ValueError as error:  # what the parser and the configs' `__post_init__` refuse is the user's to fix
        raise ConfigError(str(error)) from None
    trainer = run(script_args, training_args, model_args)
    # a rank that exits with its process group alive can abort in teardown (seen with ZeRO-3 on gloo)
    trainer.accelerator.end_training()


def check_option_names(argv: list[str], dataclass_types) -> None:
    """Refuse an unknown flag or `--config` key with the closest known name, before anything is built (TRL reports
    unknown YAML keys only after building every config, without a suggestion)."""
    from dataclasses import fields

    from slam_trainer.cli.main import known_flag, load_config_file, unknown_options_error

    names = {field.name for kind in dataclass_types for field in fields(kind) if field.init}
    flags = [f"--{name}" for name in names] + [f"--no_{name}" for name in names] + ["--config", "--help", "--help-all"]
    typed = [
        word for word in argv if word.startswith("--") and not known_flag("--" + word[2:].replace("-", "_"), flags)
    ]
    if typed:
        raise unknown_options_error("", typed, names, prefix="--", prog="slam train")
    if "--config" in argv and argv.index("--config") + 1 < len(argv):
        path = argv[argv.index("--config") + 1]
        values = load_config_file(path)  # duplicate keys and alias bombs refused there
        if isinstance(values, dict):
            unknown = sorted(str(key) for key in values if key not in names and key != "env")
            if unknown:
                raise unknown_options_error(f"--config {path}: ", unknown, names, prog="slam train")


def main(args: argparse.Namespace) -> None:  # pragma: no cover - `slam train` is dispatched to parse_own_arguments
    raise SystemExit("slam train parses its own arguments; call `slam train --help`.")


def run(script_args, training_args, model_args):
    """Train as the arguments say (`slam_trainer.pipelines.training`; what SLAM trains is printed as the trainer is
    built), save and push."""
    import pickle

    from slam_trainer.errors import ResumeError
    from slam_trainer.loading import refused_global
    from slam_trainer.pipelines.training import finish_training, prepare_training

    trainer, resume = prepare_training(script_args, training_args, model_args)
    try:
        trainer.train(resume_from_checkpoint=resume)
    except pickle.UnpicklingError as error:  # torch's weights_only loader refused a file of the checkpoint
        raise ResumeError(
            f"`resume_from_checkpoint` {resume}: a file there holds code or objects other than tensors, which torch "
            f"refuses to load ({refused_global(error)}); it is damaged or not from a source you trust. Resume from "
            "another checkpoint, or start again without it."
        ) from None
    finish_training(trainer, script_args)
    return trainer
