"""The demo's steps as library functions (`slam demo` prints between them): draw the synthetic problems, write
them, load the model, evaluate, build the SLAM trainer (auto layers), summarise.

Every default here is ours, chosen so that the gain is visible in minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields, replace

from slam_trainer.errors import ConfigError


DEFAULT_MODEL = "smollm2-135m-instruct"
TINY_OVERRIDES = {"num_layers": 8, "hidden_size": 64}  # a tiny model deep enough for the layer probe to choose
ARTEFACTS = ("base", "data", "train", "delta", "merged", "eval")


@dataclass(frozen=True)
class DemoSettings:
    """The demo's settings; `None` fields take the model-dependent default (`REAL_DEFAULTS` / `TINY_DEFAULTS`)."""

    model: str = DEFAULT_MODEL
    output_dir: str = "demo-output"
    languages: tuple[str, ...] | None = None
    world: str = "one-step"
    train_problems: int | None = None
    eval_problems: int | None = None
    num_layers: int | None = None
    probe_problems: int | None = None
    max_steps: int | None = None
    learning_rate: float | None = None
    batch_size: int = 8
    max_new_tokens: int | None = None
    seed: int = 0


REAL_DEFAULTS = DemoSettings(
    languages=("en", "es", "fr", "de", "ru", "zh"),
    train_problems=160,
    eval_problems=20,
    num_layers=6,
    probe_problems=40,
    max_steps=40,
    learning_rate=1e-3,
    max_new_tokens=40,
)
TINY_DEFAULTS = DemoSettings(
    languages=("en", "es", "ru", "zh"),
    train_problems=24,
    eval_problems=4,
    num_layers=2,
    probe_problems=24,
    max_steps=30,
    learning_rate=1e-2,
    max_new_tokens=16,
)


def resolve_settings(settings: DemoSettings) -> DemoSettings:
    """`settings` with the model-dependent defaults filled in, checked before anything is loaded."""
    from slam_trainer.languages import validate_languages

    defaults = TINY_DEFAULTS if settings.model.startswith("tiny:") else REAL_DEFAULTS
    filled = {f.name: getattr(defaults, f.name) for f in fields(settings) if getattr(settings, f.name) is None}
    settings = replace(settings, **filled)
    languages = validate_languages(list(settings.languages), argument="--languages", min_count=2)
    if "en" not in languages:
        raise ConfigError("--languages must include en: SLAM aligns the other languages' questions to English.")
    for name in ("train_problems", "eval_problems", "num_layers", "probe_problems", "max_steps", "batch_size"):
        if getattr(settings, name) < 1:
            raise ConfigError(f"--{name} must be at least 1, got {getattr(settings, name)}.")
    if not settings.learning_rate > 0:
        raise ConfigError(f"--learning_rate must be positive, got {settings.learning_rate}.")
    return replace(settings, languages=tuple(languages))


def prepare(settings: DemoSettings) -> tuple[dict, dict]:
    """Check the output folder and draw the problems (both before any model loads); return (paths, problems)."""
    from slam_trainer.data.synthetic import train_test_problems

    out = os.path.abspath(settings.output_dir)
    paths = {name: os.path.join(out, name) for name in ARTEFACTS}
    paths["summary"] = os.path.join(out, "summary.json")
    if os.path.exists(paths["merged"]) and os.listdir(paths["merged"]):
        raise ConfigError(f"{paths['merged']} exists from an earlier run; pass a new --output_dir or remove it.")
    train, held_out = train_test_problems(
        settings.train_problems,
        settings.eval_problems,
        languages=list(settings.languages),
        seed=settings.seed,
        world=settings.world,
    )
    return paths, {"train": train, "probe": train[: settings.probe_problems], "eval": held_out}


def write_data(problems: dict, data_dir: str) -> dict[str, str]:
    """The training rows, the parallel questions the probe reads, and the held-out benchmark, as JSON-lines files."""
    from slam_trainer.data.synthetic import problem_rows

    os.makedirs(data_dir, exist_ok=True)
    files = {}
    for name, chosen in problems.items():
        rows = problem_rows(chosen)
        if name == "eval":  # what a benchmark file holds: no worked solutions
            rows = [{key: row[key] for key in ("id", "lang", "question", "answer")} for row in rows]
        files[name] = os.path.join(data_dir, f"{name}.jsonl")
        with open(files[name], "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return files


def load(settings: DemoSettings, base_dir: str):
    """(model, tokenizer, the folder the base model loads from) through `slam_trainer.loading`, in float32 on the
    CPU; a `tiny:` model is saved to `base_dir` first, so that evaluation and merging load it as any other."""
    from slam_trainer.loading import load_model_and_tokenizer, model_source

    model_init_kwargs = {"dtype": "float32", "device_map": None}
    model, tokenizer = load_model_and_tokenizer(
        settings.model, model_init_kwargs, seed=settings.seed, tiny_overrides={**TINY_OVERRIDES, "seed": settings.seed}
    )
    if not settings.model.startswith("tiny:"):
        return model, tokenizer, model_source(settings.model)
    model.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    return model, tokenizer, base_dir


def evaluate(settings: DemoSettings, model_dir: str, tokenizer, data: str, output_dir: str, delta=None) -> dict:
    """One evaluation run on the held-out problems, through the prompt the model was trained with."""
    from slam_trainer.evaluation.runner import EvalSettings, run_evaluation
    from slam_trainer.prompts import eval_style, uses_chat_template

    eval_settings = EvalSettings(
        model=model_dir,
        data=data,
        delta=delta,
        prompt_style=eval_style(uses_chat_template(tokenizer)),
        batch_size=16,
        max_new_tokens=settings.max_new_tokens,
        dtype="float32",
        device="cpu",
        seed=settings.seed,
    )
    return run_evaluation(eval_settings, output_dir, progress=False)[0]


def build_trainer(settings: DemoSettings, model, tokenizer, train_rows, probe_file: str, output_dir: str):
    """`SelectiveFFNTrainer` with `slam_layers="auto"` (probing `probe_file`) on the question-alignment + answer set,
    CPU settings, no checkpoints."""
    from slam_trainer.config import SelectiveFFNConfig, cpu_training_defaults
    from slam_trainer.data.slam_mix import build_slam_training_set
    from slam_trainer.prompts import SLAM_TEMPLATE, uses_chat_template
    from slam_trainer.trainer import SelectiveFFNTrainer

    config = SelectiveFFNConfig(
        output_dir=output_dir,
        slam_layers="auto",
        slam_num_layers=settings.num_layers,
        slam_probe_dataset=probe_file,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.1,
        weight_decay=0.0,
        max_length=256,
        logging_steps=max(1, settings.max_steps // 6),
        seed=settings.seed,
        **cpu_training_defaults(),
    )
    # Chat models learn and are evaluated through their chat template; others through SLAM's Human/Assistant.
    chat = uses_chat_template(tokenizer)
    dataset = build_slam_training_set(train_rows, prompt_template=None if chat else SLAM_TEMPLATE)
    return SelectiveFFNTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)


def summary(settings: DemoSettings, trainer, before: dict, after: dict, train_seconds: float, total_seconds) -> dict:
    """What `summary.json` holds: accuracies as fractions, per language and averaged over the non-English ones."""
    languages = {
        lang: {
            "before": before["scores"]["languages"][lang]["accuracy"],
            "after": after["scores"]["languages"][lang]["accuracy"],
        }
        for lang in settings.languages
    }
    others = [lang for lang in settings.languages if lang != "en"]
    return {
        "model": settings.model,
        "world": settings.world,
        "layers": list(trainer.slam_freeze_report.layers),
        "trainable_share": round(trainer.slam_freeze_report.share, 6),
        "languages": languages,
        "non_english_average": {
            when: round(sum(languages[lang][when] for lang in others) / len(others), 4) for when in ("before", "after")
        },
        "train_problems": settings.train_problems,
        "eval_problems_per_language": settings.eval_problems,
        "max_steps": settings.max_steps,
        "learning_rate": settings.learning_rate,
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(total_seconds, 1),
    }


def write_summary(path: str, values: dict) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(values, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
