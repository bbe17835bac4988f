"""The training pipeline `slam train` runs, as library functions: the rows, the model, the training data (SLAM rows
or the L² collator), and the trainer (`SelectiveFFNTrainer` for SLAM, TRL's `SFTTrainer` for full training).

    from slam_trainer.pipelines.training import TrainScriptArguments, prepare_training

    trainer, resume = prepare_training(TrainScriptArguments(), SelectiveFFNConfig("out"), ModelConfig("tiny:llama"))
    trainer.train(resume_from_checkpoint=resume)

The benchmarks call the same functions, so what they measure is what `slam train` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from slam_trainer.errors import ConfigError, DataError
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
            raise DataError(f"`dataset_name` {name!r}: use a .jsonl, .json, .parquet or .csv file.")
        check_data_file(name)  # an empty file, or the line of the first malformed row, before `datasets` reads it
        return load_dataset(builder, data_files=name, split="train")
    return load_dataset(name, script_args.dataset_config, split=script_args.dataset_train_split)


def build_training_data(dataset, script_args, tokenizer, model, training_args):
    """(train_dataset, data_collator) from the loaded rows, for the chosen format and L² mode."""
    from slam_trainer.data.slam_mix import PROMPT_TEMPLATE, build_slam_training_set
    from slam_trainer.l2.collator import L2DataCollator
    from slam_trainer.l2.parallel import build_parallel_dataset, select_languages
    from slam_trainer.l2.tags import add_language_tokens

    if check_training_data(dataset, script_args) != "parallel":
        return dataset, None
    rows = select_languages(list(dataset), script_args.languages, "--languages")
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


def load_training_model(model_args, training_args):
    """The model and tokenizer to train (`slam_trainer.loading`), from TRL's `ModelConfig` as TRL's `sft` script
    reads it: `dtype`, `model_revision`, `attn_implementation`, k-bit quantization, then `training_args.seed` and
    `training_args.model_init_kwargs` (which win). The model stays on the CPU (the trainer places it) unless it is
    quantized; `training_args.model_init_kwargs` is cleared, so that the trainer does not load it again."""
    from trl import get_quantization_config

    from slam_trainer.loading import load_model_and_tokenizer

    model_kwargs = dict(
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
        quantization_config=get_quantization_config(model_args),
    )
    model_kwargs = {key: value for key, value in model_kwargs.items() if value is not None}
    if "quantization_config" not in model_kwargs:
        model_kwargs["device_map"] = None
    model_kwargs.update(training_args.model_init_kwargs or {})
    # Loaded here (the L² tags may resize the embeddings first), so the trainer must not be told to load it again.
    training_args.model_init_kwargs = None
    return load_model_and_tokenizer(model_args.model_name_or_path, model_kwargs, seed=training_args.seed)


def build_trainer(training, model, args, train_dataset, collator, tokenizer, peft_config, callbacks=()):
    """`SelectiveFFNTrainer` for `training="slam"`, else TRL's `SFTTrainer` with the L² collator's own SFT settings
    and epoch callback when there is one: the wiring `slam train` and the evidence benchmark share."""
    from trl import SFTTrainer

    from slam_trainer.l2.collator import collator_callbacks
    from slam_trainer.trainer import SelectiveFFNTrainer

    callbacks = list(callbacks)
    trainer_class = SelectiveFFNTrainer
    if training != "slam":  # SelectiveFFNTrainer wires the collator itself
        trainer_class = SFTTrainer
        callbacks += collator_callbacks(collator, args)
    return trainer_class(
        model=model,
        args=args,
        train_dataset=train_dataset,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=callbacks or None,
        peft_config=peft_config,
    )


def check_script_arguments(script_args: TrainScriptArguments, training_args=None) -> None:
    """The choices a YAML file can get wrong (the command line checks them too), and SLAM options given with
    `--training full` (which would silently not apply), before anything loads."""
    if script_args.l2_mode not in L2_MODES:
        raise ConfigError(f"`l2_mode` must be one of {', '.join(L2_MODES)}, got {script_args.l2_mode!r}.")
    if script_args.training not in TRAINING:
        raise ConfigError(f"`training` must be one of {', '.join(TRAINING)}, got {script_args.training!r}.")
    if script_args.training != "full" or training_args is None:
        return
    given = {
        "--slam_layers": getattr(training_args, "slam_layers", "auto") != "auto",
        "--slam_save_delta": getattr(training_args, "slam_save_delta", False),
        "--slam_extra_trainable": getattr(training_args, "slam_extra_trainable", None) is not None,
        "--slam_push delta": getattr(training_args, "slam_push", "full") == "delta",
    }
    ignored = [flag for flag, set_ in given.items() if set_]
    if ignored:
        raise ConfigError(
            f"`--training full` trains every parameter, so {', '.join(ignored)} (SLAM's choice of what trains) would "
            "not apply; drop them, or use `--training slam`."
        )


def check_training_data(dataset, script_args: TrainScriptArguments) -> str:
    """The data format ("parallel" or "trl"), checked against `l2_mode` and `languages` before the model loads."""
    from slam_trainer.data.loaders import check_unique_rows
    from slam_trainer.l2.parallel import check_languages_present

    fmt = script_args.dataset_format
    if fmt == "auto":
        fmt = "parallel" if {"id", "lang", "question"} <= set(dataset.column_names) else "trl"
    if script_args.l2_mode != "off" and fmt != "parallel":
        raise ConfigError(
            "`l2_mode` needs parallel rows (id, lang, question, answer, cot/steps); see --dataset_format."
        )
    if fmt == "parallel" and {"id", "lang"} <= set(dataset.column_names):
        check_unique_rows(
            dataset.select_columns(["id", "lang"]).to_list(), f"`dataset_name` {script_args.dataset_name}"
        )
        if script_args.languages is not None:
            check_languages_present(script_args.languages, set(dataset["lang"]), "--languages")
    return fmt


def check_layers_fit(training_args, model_args) -> None:
    """Layer indices against the model's depth, read from its config (no weights), before the model loads."""
    from slam_trainer.loading import read_model_config

    layers = getattr(training_args, "slam_layers", "auto")
    if layers == "auto" or not isinstance(layers, list):
        return
    config = read_model_config(
        model_args.model_name_or_path, model_args.model_revision, training_args.trust_remote_code
    ).get_text_config()
    total = getattr(config, "num_hidden_layers", None)
    if not isinstance(total, int):
        return  # an architecture that names its depth otherwise: checked on the model
    wrong = [index for index in layers if not -total <= index < total]
    if wrong:
        raise ConfigError(
            f"`slam_layers` has index {wrong[0]} but {model_args.model_name_or_path} has {total} decoder layers "
            f"(valid: {-total}..{total - 1})."
        )


def prepare_training(script_args, training_args, model_args):
    """(trainer, checkpoint to resume from or None): checks, rows, model, training data and trainer, in the order
    that makes a bad flag or data file fail before the model loads."""
    from trl import get_peft_config

    from slam_trainer.checkpoints import resolve_resume_checkpoint

    check_script_arguments(script_args, training_args)
    # true/false as TRL's parser reads booleans; incomplete checkpoints (a kill during a save) are skipped
    resume = resolve_resume_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
    dataset = load_rows(script_args)  # a bad data file fails before the model loads
    check_training_data(dataset, script_args)
    check_layers_fit(training_args, model_args)  # everything the config and the data tell, before the weights
    model, tokenizer = load_training_model(model_args, training_args)
    train_dataset, collator = build_training_data(dataset, script_args, tokenizer, model, training_args)
    trainer = build_trainer(
        script_args.training, model, training_args, train_dataset, collator, tokenizer, get_peft_config(model_args)
    )
    return trainer, resume


def finish_training(trainer, script_args) -> None:
    """Save the final model to `output_dir`, and push it when `push_to_hub` is set."""
    trainer.save_model(trainer.args.output_dir)
    if trainer.args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
