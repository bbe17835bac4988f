"""The training pipeline `slam train` runs, as library functions: the rows, the model, the training data (SLAM rows
or the L² collator), and the trainer (`SelectiveFFNTrainer` for SLAM, TRL's `SFTTrainer` for full training).

    from slam_trainer.pipelines.training import TrainScriptArguments, prepare_training

    trainer, resume = prepare_training(TrainScriptArguments(), SelectiveFFNConfig("out"), ModelConfig("tiny:llama"))
    trainer.train(resume_from_checkpoint=resume)

The benchmarks call the same functions, so what they measure is what `slam train` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import ScriptArguments

from slam_trainer.errors import ConfigError, DataError
from slam_trainer.l2.tags import TAG_INITS


DATASET_FORMATS = ("auto", "prompt_completion", "messages", "text", "parallel")
L2_MODES = ("off", "full", "mixed", "both")
TRAINING = ("slam", "full")
PROMPT_FORMATS = ("auto", "chat", "plain")
EVAL_SHARE = 0.1  # ours: share of the problem ids of parallel (and synthetic) data held out for evaluation


@dataclass
class TrainScriptArguments(ScriptArguments):
    """What to train on: TRL's `ScriptArguments` (`dataset_name`, `dataset_config`, `dataset_train_split`,
    `dataset_test_split`, ...) with our default dataset and the package's own fields: how to read the rows, the
    evaluation share of parallel data, whether to build L² sequences, and SLAM or full training."""

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
            "help": "Hub dataset id, a local file (.jsonl/.json/.parquet/.csv), a folder written by save_to_disk "
            "(e.g. by `slam l2-build`), or 'synthetic' (the package's multilingual arithmetic world)."
        },
    )
    eval_share: float = field(
        default=EVAL_SHARE,
        metadata={
            "help": "When --eval_strategy is not 'no': the share of problem ids of parallel and synthetic data held "
            "out for evaluation (split by id, so no problem is in both; ours). Other data evaluates on "
            "--dataset_test_split."
        },
    )
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

    from datasets import Dataset, load_dataset, load_from_disk

    from slam_trainer.data.loaders import check_data_file, is_saved_dataset
    from slam_trainer.data.synthetic import synthetic_rows

    name = script_args.dataset_name
    if is_saved_dataset(name):  # a `save_to_disk` folder, e.g. what `slam l2-build` writes
        from slam_trainer.l2.parallel import is_parallel_dataset, parallel_rows

        dataset = load_from_disk(name)
        # the parallel schema, read back as the per-language rows SLAM's set and the L² builder both take
        return Dataset.from_list(parallel_rows(dataset)) if is_parallel_dataset(dataset) else dataset
    if name.endswith(".arrow") and is_saved_dataset(os.path.dirname(name)):
        folder = os.path.dirname(name)
        raise DataError(f"`--dataset_name` {name}: pass the folder it lies in ({folder}), not the file.")
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


def load_test_split(name: str, config: str | None, split: str):
    """The evaluation split of a Hub or local-folder dataset in a TRL format; a file or a missing split is refused
    naming the flags that fix it."""
    import os

    from datasets import load_dataset

    fix = "give a dataset with that split, or parallel rows (then `--eval_share` of their ids is held out)"
    if name == "synthetic" or os.path.isfile(name):
        raise ConfigError(
            f"`--eval_strategy` needs evaluation rows: `dataset_name` {name!r} has no split {split!r}; {fix}."
        )
    try:
        return load_dataset(name, config, split=split)
    except ValueError as error:
        if "Unknown split" not in str(error):
            raise
        raise DataError(f"`dataset_test_split` {split!r} is not a split of {name} ({error}); {fix}.") from None


def split_eval_rows(dataset, fmt: str, script_args: TrainScriptArguments, training_args):
    """(training rows, evaluation rows or None), before the model loads. Evaluation rows exist only when
    `eval_strategy` asks for them: parallel (and synthetic) rows hold out `eval_share` of their problem ids, all
    languages of a problem on the same side (split by id, not by row, so no problem is in both); other data reads
    `dataset_test_split`."""
    import random

    if training_args.eval_strategy == "no":
        return dataset, None
    if fmt != "parallel":
        return dataset, load_test_split(
            script_args.dataset_name, script_args.dataset_config, script_args.dataset_test_split
        )
    ids = sorted(set(dataset["id"]), key=str)
    count = round(script_args.eval_share * len(ids))
    if not 0 < count < len(ids):
        raise ConfigError(
            f"`eval_share` {script_args.eval_share} of {len(ids)} problem ids holds out {count}; choose a share that "
            "leaves at least one id for evaluation and one for training."
        )
    held_out = set(random.Random(training_args.seed).sample(ids, count))
    return (
        dataset.filter(lambda row: row["id"] not in held_out),
        dataset.filter(lambda row: row["id"] in held_out),
    )


def uses_chat_prompts(script_args: TrainScriptArguments, tokenizer) -> bool:
    """`prompt_format` resolved by `slam_trainer.prompts.uses_chat_template`: "auto" is chat when the tokenizer has a
    chat template (ours), "chat" needs one."""
    from slam_trainer.prompts import uses_chat_template

    requested = {"auto": None, "chat": True, "plain": False}[script_args.prompt_format]
    return uses_chat_template(
        tokenizer, requested, asked_by="`--prompt_format chat`", remedy="`--prompt_format plain` (or `auto`)"
    )


def build_eval_data(eval_rows, script_args, tokenizer, collator):
    """The evaluation set built as the training set was (SLAM rows, or L² examples for the same collator)."""
    from slam_trainer.data.slam_mix import build_slam_training_set
    from slam_trainer.l2.parallel import build_parallel_dataset, select_languages
    from slam_trainer.prompts import SLAM_TEMPLATE

    if eval_rows is None or check_training_data(eval_rows, script_args) != "parallel":
        return eval_rows
    rows = select_languages(list(eval_rows), script_args.languages, "--languages")
    if collator is None:
        chat = uses_chat_prompts(script_args, tokenizer)
        return build_slam_training_set(rows, prompt_template=None if chat else SLAM_TEMPLATE)
    return collator.prepare(build_parallel_dataset(rows, languages=script_args.languages)[0])


def build_training_data(dataset, script_args, tokenizer, model, training_args):
    """(train_dataset, data_collator) from the loaded rows, for the chosen format and L² mode."""
    from slam_trainer.data.slam_mix import build_slam_training_set
    from slam_trainer.l2.collator import L2DataCollator
    from slam_trainer.l2.parallel import build_parallel_dataset, select_languages
    from slam_trainer.l2.tags import add_language_tokens
    from slam_trainer.prompts import SLAM_TEMPLATE

    if check_training_data(dataset, script_args) != "parallel":
        return dataset, None
    rows = select_languages(list(dataset), script_args.languages, "--languages")
    chat = uses_chat_prompts(script_args, tokenizer)
    if script_args.l2_mode == "off":
        return build_slam_training_set(rows, prompt_template=None if chat else SLAM_TEMPLATE), None
    parallel, _ = build_parallel_dataset(rows, languages=script_args.languages)
    languages = script_args.languages or sorted(parallel[0]["question"])
    if script_args.l2_special_tokens:  # SLAM then trains the tag rows alone (slam_trainer.l2.tag_rows)
        add_language_tokens(tokenizer, model, languages, init=script_args.l2_tag_init)
    collator = L2DataCollator(
        tokenizer,
        languages=languages,
        mode=script_args.l2_mode,
        switch_probability=script_args.l2_switch_probability,
        # The same prompt as the SLAM rows (`slam_trainer.prompts`), which `slam eval --prompt_style chat|slam` asks.
        use_chat_template=chat,
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
    from slam_trainer.offline_models import check_model_name

    name = model_args.model_name_or_path
    if isinstance(name, str) and not name.startswith("tiny:"):  # a typo of a short name, in the flag's words
        check_model_name(name, "--model_name_or_path")
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


def build_trainer(
    training, model, args, train_dataset, collator, tokenizer, peft_config, callbacks=(), eval_dataset=None
):
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
        eval_dataset=eval_dataset,
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
    if script_args.prompt_format not in PROMPT_FORMATS:
        raise ConfigError(
            f"`prompt_format` must be one of {', '.join(PROMPT_FORMATS)}, got {script_args.prompt_format!r}."
        )
    if script_args.dataset_streaming:
        raise ConfigError("`dataset_streaming`: slam train checks every row before the model loads; drop the flag.")
    if not 0 < script_args.eval_share < 1:
        raise ConfigError(f"`eval_share` must be between 0 and 1 (exclusive), got {script_args.eval_share}.")
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
    fmt = check_training_data(dataset, script_args)
    dataset, eval_rows = split_eval_rows(dataset, fmt, script_args, training_args)
    check_layers_fit(training_args, model_args)  # everything the config and the data tell, before the weights
    model, tokenizer = load_training_model(model_args, training_args)
    train_dataset, collator = build_training_data(dataset, script_args, tokenizer, model, training_args)
    eval_dataset = build_eval_data(eval_rows, script_args, tokenizer, collator)
    peft_config = get_peft_config(model_args)
    trainer = build_trainer(
        script_args.training, model, training_args, train_dataset, collator, tokenizer, peft_config, (), eval_dataset
    )
    return trainer, resume


def finish_training(trainer, script_args) -> None:
    """Save the final model to `output_dir`, and push it when `push_to_hub` is set."""
    trainer.save_model(trainer.args.output_dir)
    if trainer.args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
