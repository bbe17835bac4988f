"""`slam train`: a complete SFT script with SLAM's selective FFN training and, optionally, L²'s data collator.

Usage:
    slam train --config recipes/slam_tiny_cpu.yaml
    slam train --model_name_or_path Qwen/Qwen2.5-7B-Instruct --dataset_name data.jsonl --slam_layers auto \\
        --output_dir out --bf16 true
    accelerate launch --config_file recipes/accelerate/zero2.yaml -m slam_trainer.cli train --config recipe.yaml

Arguments are those of `SelectiveFFNConfig` (all of `trl.SFTConfig`), `trl.ModelConfig` (model, dtype, LoRA) and
`TrainScriptArguments` below; a YAML `--config` gives defaults, flags win, unknown keys fail (TRL's `TrlParser`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from slam_trainer.l2.tags import TAG_INITS


DATASET_FORMATS = ("auto", "prompt_completion", "messages", "text", "parallel")
L2_MODES = ("off", "full", "mixed", "both")
TRAINING = ("slam", "full")
PROMPT_FORMATS = ("auto", "chat", "plain")


@dataclass
class TrainScriptArguments:
    """What to train on: a dataset and how to read it, whether to build L² sequences, and SLAM or full training."""

    training: str = field(
        default="slam",
        metadata={
            "help": "slam: only the chosen layers' FFN sub-layers train (SelectiveFFNTrainer); full: plain "
            "SFTTrainer over every parameter (as the L² paper trains).",
            "choices": TRAINING,
        },
    )

    dataset_name: str = field(
        default="synthetic",
        metadata={
            "help": "Hub dataset id, a local file (.jsonl/.json/.parquet/.csv), or 'synthetic' (the package's "
            "multilingual arithmetic world)."
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    dataset_format: str = field(
        default="auto",
        metadata={
            "help": "How rows are read: prompt_completion, messages, text (TRL formats), or parallel (MGSM-style "
            "rows id, lang, question, answer, cot: turned into SLAM's translate+answer set, or L² sequences with "
            "--l2_mode). 'auto' picks parallel when rows have id/lang/question.",
            "choices": DATASET_FORMATS,
        },
    )
    languages: list[str] | None = field(
        default=None, metadata={"help": "Languages to keep from parallel rows (default: all present)."}
    )
    synthetic_problems: int = field(default=200, metadata={"help": "Problems drawn for --dataset_name synthetic."})
    synthetic_world: str = field(
        default="multi-step",
        metadata={
            "help": "The synthetic world: multi-step (GSM8K-like, 2-4 operations) or one-step (single-digit + or -).",
            "choices": ("multi-step", "one-step"),
        },
    )
    prompt_format: str = field(
        default="auto",
        metadata={
            "help": "How parallel rows become prompts, for SLAM rows and L² sequences alike: plain (the official SLAM "
            "code's 'Human: ...\\nAssistant:', `slam eval --prompt_style slam`), chat (the tokenizer's chat template, "
            "for chat models), or auto: chat when the tokenizer has a chat template, else plain (ours).",
            "choices": PROMPT_FORMATS,
        },
    )
    l2_mode: str = field(
        default="off",
        metadata={
            "help": "L² data collator: off (SLAM data), full (whole chain per language), mixed (step-wise mixture), "
            "or both.",
            "choices": L2_MODES,
        },
    )
    l2_switch_probability: float = field(
        default=0.3, metadata={"help": "Share of step boundaries where an L² mixed chain switches language (ours)."}
    )
    l2_special_tokens: bool = field(
        default=False,
        metadata={
            "help": "Add the L² language tags as special tokens. With SLAM only their rows of the embedding and "
            "lm_head train besides the FFN tensors; the FFN delta carries them."
        },
    )
    l2_tag_init: str = field(
        default="name",
        metadata={
            "help": "How new tag rows start: 'name' (ours: the rows of the language's English name) or 'mean' "
            "(transformers' mean resizing; with tied embeddings it taught SmolLM2 to answer with end-of-turn).",
            "choices": TAG_INITS,
        },
    )


def make_parser(subparsers=None):
    if subparsers is not None:
        # Listed for `slam --help` (without importing TRL); `slam train ...` is parsed by `TrlParser` in
        # `parse_own_arguments`.
        return subparsers.add_parser(
            "train", help="SFT with SLAM (and optionally L²)", add_help=False, description=__doc__.split("\n")[0]
        )
    from trl import ModelConfig, TrlParser

    from slam_trainer.config import SelectiveFFNConfig

    return TrlParser((TrainScriptArguments, SelectiveFFNConfig, ModelConfig))


def parse_own_arguments(argv: list[str]) -> None:
    """`slam train` parses its arguments with TRL's `TrlParser` (dataclass fields, YAML `--config`)."""
    parser = make_parser()
    parser.prog = "slam train"
    script_args, training_args, model_args = parser.parse_args_and_config(argv)
    trainer = run(script_args, training_args, model_args)
    # a rank that exits with its process group alive can abort in teardown (seen with ZeRO-3 on gloo)
    trainer.accelerator.end_training()


def main(args: argparse.Namespace) -> None:  # pragma: no cover - `slam train` is dispatched to parse_own_arguments
    raise SystemExit("slam train parses its own arguments; call `slam train --help`.")


def load_rows(script_args: TrainScriptArguments):
    """The training rows as a `datasets.Dataset`."""
    import os

    from datasets import Dataset, load_dataset

    from slam_trainer.data.loaders import check_data_file
    from slam_trainer.data.synthetic import synthetic_rows

    name = script_args.dataset_name
    if name == "synthetic":
        rows = synthetic_rows(
            script_args.synthetic_problems, languages=script_args.languages, world=script_args.synthetic_world
        )
        return Dataset.from_list(rows)
    if os.path.isfile(name):
        builder = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}.get(
            os.path.splitext(name)[1]
        )
        if builder is None:
            raise ValueError(f"`dataset_name` {name!r}: use a .jsonl, .json, .parquet or .csv file.")
        check_data_file(name)  # an empty file, or the line of the first malformed row, before `datasets` reads it
        return load_dataset(builder, data_files=name, split="train")
    return load_dataset(name, script_args.dataset_config, split=script_args.dataset_train_split)


def build_training_data(dataset, script_args, tokenizer, model, training_args):
    """(train_dataset, data_collator) from the loaded rows, for the chosen format and L² mode."""
    from slam_trainer.data.slam_mix import PROMPT_TEMPLATE, build_slam_training_set
    from slam_trainer.l2.collator import L2DataCollator
    from slam_trainer.l2.parallel import build_parallel_dataset
    from slam_trainer.l2.tags import add_language_tokens

    fmt = script_args.dataset_format
    if fmt == "auto":
        fmt = "parallel" if {"id", "lang", "question"} <= set(dataset.column_names) else "trl"
    if script_args.l2_mode != "off" and fmt != "parallel":
        raise ValueError(
            "`l2_mode` needs parallel rows (id, lang, question, answer, cot/steps); see --dataset_format."
        )
    if fmt != "parallel":
        return dataset, None
    rows = [row for row in dataset if script_args.languages is None or row["lang"] in script_args.languages]
    chat = script_args.prompt_format == "chat" or (
        script_args.prompt_format == "auto" and bool(getattr(tokenizer, "chat_template", None))
    )
    if script_args.l2_mode == "off":
        return build_slam_training_set(rows, prompt_template=None if chat else PROMPT_TEMPLATE), None
    parallel, _ = build_parallel_dataset(rows, languages=script_args.languages)
    languages = script_args.languages or sorted(parallel[0]["question"])
    if script_args.l2_special_tokens:  # SLAM then trains the tag rows alone (slam_trainer.l2.tag_rows)
        add_language_tokens(tokenizer, model, languages, init=script_args.l2_tag_init)
    collator = L2DataCollator(
        tokenizer,
        languages=languages,
        mode=script_args.l2_mode,
        switch_probability=script_args.l2_switch_probability,
        # The same prompt as the SLAM rows, so that `slam eval --prompt_style chat|slam` asks what training showed.
        use_chat_template=chat,
        prompt_template=PROMPT_TEMPLATE.format(instruction="{question}"),
        max_length=training_args.max_length,
        seed=training_args.seed,
    )
    return collator.prepare(parallel), collator


def load_model_and_tokenizer(model_args, training_args):
    """The model and tokenizer to train, loaded as TRL's `sft` script would (its `model_init_kwargs`), from a Hub id,
    a local folder, an offline short name (`slam_trainer.offline_models`) or `tiny:<architecture>`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import get_quantization_config

    from slam_trainer.offline_models import resolve_model_path
    from slam_trainer.tiny import build_tiny_model, build_tiny_tokenizer

    name = model_args.model_name_or_path
    if name is None:
        raise ValueError(
            "`model_name_or_path` is required (a Hub id, a local directory, an offline short name such as "
            "'smollm2-135m-instruct', or 'tiny:llama')."
        )
    set_seed(training_args.seed)  # before the model exists, as TRL does: PEFT initialises adapters randomly
    if name.startswith("tiny:"):  # the embedded default: a tiny model built from a config, byte-level tokenizer
        return build_tiny_model(name.removeprefix("tiny:")), build_tiny_tokenizer()
    path = resolve_model_path(name)
    model_kwargs = dict(
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
    )
    quantization_config = get_quantization_config(model_args)
    if quantization_config is not None:  # k-bit weights are placed on this process's device when loaded
        from accelerate import PartialState

        device_map = {"": PartialState().local_process_index}
        model_kwargs.update(quantization_config=quantization_config, device_map=device_map)
    model_kwargs.update(training_args.model_init_kwargs or {})
    # Loaded here (the L² tags may resize the embeddings first), so the trainer must not be told to load it again.
    training_args.model_init_kwargs = None
    model = AutoModelForCausalLM.from_pretrained(path, **{k: v for k, v in model_kwargs.items() if v is not None})
    tokenizer = AutoTokenizer.from_pretrained(
        path, revision=model_args.model_revision, trust_remote_code=training_args.trust_remote_code
    )
    return model, tokenizer


def build_trainer(training, model, args, train_dataset, collator, tokenizer, peft_config, callbacks=()):
    """`SelectiveFFNTrainer` for `training="slam"`, else TRL's `SFTTrainer` with the L² collator's own SFT settings
    and epoch callback when there is one: the wiring `slam train` and the evidence benchmark share."""
    from trl import SFTTrainer

    from slam_trainer.l2.collator import L2EpochCallback
    from slam_trainer.trainer import SelectiveFFNTrainer

    callbacks = list(callbacks)
    trainer_class = SelectiveFFNTrainer
    if training != "slam":
        trainer_class = SFTTrainer
        if collator is not None:
            collator.configure_sft_args(args)
            callbacks.append(L2EpochCallback(collator))
    return trainer_class(
        model=model,
        args=args,
        train_dataset=train_dataset,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=callbacks or None,
        peft_config=peft_config,
    )


def run(script_args, training_args, model_args):
    from trl import get_peft_config

    from slam_trainer.checkpoints import resolve_resume_checkpoint

    if script_args.l2_mode not in L2_MODES:
        raise ValueError(f"`l2_mode` must be one of {', '.join(L2_MODES)}, got {script_args.l2_mode!r}.")
    if script_args.training not in TRAINING:
        raise ValueError(f"`training` must be one of {', '.join(TRAINING)}, got {script_args.training!r}.")
    # true/false as TRL's parser reads booleans; incomplete checkpoints (a kill during a save) are skipped
    resume = resolve_resume_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
    dataset = load_rows(script_args)  # a bad data file fails before the model loads
    model, tokenizer = load_model_and_tokenizer(model_args, training_args)
    train_dataset, collator = build_training_data(dataset, script_args, tokenizer, model, training_args)
    trainer = build_trainer(
        script_args.training, model, training_args, train_dataset, collator, tokenizer, get_peft_config(model_args)
    )
    if script_args.training == "slam":
        print(trainer.slam_report)
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(training_args.output_dir)
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
    return trainer
