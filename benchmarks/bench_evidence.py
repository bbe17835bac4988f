"""Evidence: SLAM's and L²'s claims on real pretrained models, powered and bracketed, resumable unit by unit.

Usage:
    python benchmarks/bench_evidence.py --dry_run                      # the plan and its time estimate, nothing runs
    python benchmarks/bench_evidence.py                                # SmolLM2-135M-Instruct, the whole design
    python benchmarks/bench_evidence.py --workers 2                    # the same on 2 cores (units shared out)
    python benchmarks/bench_evidence.py --model gemma3-270m            # Gemma-3-270M, the reduced design
    python benchmarks/bench_evidence.py --report                       # evidence.md/json/png from the records so far
    python benchmarks/bench_evidence.py --quick --model tiny:llama     # the plumbing only, on a random tiny model

The design (issue 20; every number is ours, see `evidence_design.py`):

- Task: the synthetic `one-step-wide` world (one + or - with numbers up to 20), problems drawn from a seed no earlier
  run used; 200 training problems, 50 validation and 100 test problems per language, no equation shared between
  training and held-out problems or between two held-out problems; validation and test disjoint.
- Arms: base (no training), full, slam-auto (`slam_layers="auto"`'s default choice: the parallel training
  questions probed), slam-random (a new draw per seed), slam-low (layers 0-5), lora (the rank that trains as many
  parameters as SLAM); L² (full fine-tuning): en-cot, l2-full, l2-mixed, with equal training tokens.
- Budgets: 20, 60 and 180 optimizer steps of batch 8 are checkpoints of one run (constant rate after 4 warm-up steps).
- Rates: each arm's grid holds two points per decade and grows by one point while its best validation score
  (non-English mean, 0-shot, seed 0, middle budget) sits at an edge, so the chosen rate is interior. L² arms (full
  fine-tuning on other rows) start around the rate full's search chose.
- Protocol: base and every arm are scored 0-shot and 3-shot on validation at the middle budget; each arm's test
  headline uses the better one, and the other is scored on test too: seed 0 at the middle budget, and (from
  2026-12-07) every seed at the last budget, for the same-protocol differences. A final run that finished before
  lacks the latter; a later run scores it (a `topup/` unit: the run trained again from step 0 where its weights are
  gone; the report checks that the training loss at every budget is the same).
- Seeds 0, 1, 2 at the chosen rate; the test problems are scored only for these runs, at every budget.
- L²: the decoding intervention's alpha/beta/top-k chosen on validation among a few settings; test scored with and
  without it at the last budget; tokens per correct answer and language fidelity per language.
- Precision: one per model for all its arms: SmolLM2 in float32; Gemma-3-270M in bfloat16 (float32 weights trained
  under bf16 autocast, evaluated in bf16), which on this machine's AMX cores takes ~0.6x the time. The layer probe
  (`setup`) runs in float32 for both.
- Report: paired bootstrap 95% intervals over problems x seeds (`evidence_stats.py`).

Every training run is a fresh subprocess (its max RSS is its own) that resumes from its last checkpoint (one at each
budget and one every 20 steps).
Each finished unit (a rate-search run with its validation score, a final run with its test scores, a base
evaluation) is one JSON file under `--records_dir` (benchmarks/results/evidence_runs/<model>/), written whole:
commit them, and a later run, on this machine or a fresh one, redoes only what has no file. Weights and checkpoints
live in `--work_dir` (not committed; a unit whose checkpoint is gone trains again from step 0).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from types import SimpleNamespace

from evidence_design import (
    ARMS,
    DESIGNS,
    L2_ARMS,
    PRECISION_TIME,
    QUICK,
    SMOLLM2,
    best_rate,
    choose_rate,
    estimate_minutes,
    finished_search,
    is_interior,
    rate_of,
    selection_score,
    start_exponents,
)
from evidence_records import Records, base_key, check_design, final_key, search_key, topup_key

from slam_trainer.errors import ResumeError
from slam_trainer.resume import exclusive_lock, write_atomic


RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_MODEL = "smollm2-135m-instruct"


def training_pipeline() -> SimpleNamespace:
    """The package's training pipeline (what `slam train` calls), named in this one place."""
    from slam_trainer.pipelines.training import (
        TrainScriptArguments,
        build_trainer,
        build_training_data,
        load_training_model,
    )

    return SimpleNamespace(
        TrainScriptArguments=TrainScriptArguments,
        build_training_data=build_training_data,
        build_trainer=build_trainer,
        load_training_model=load_training_model,  # (ModelConfig, training args) -> (model, tokenizer)
    )


# -- flags --------------------------------------------------------------------------------------------------------


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="Offline short name, local folder, or tiny:<arch>.")
    parser.add_argument("--quick", action="store_true", help="Smoke-test sizes (use with --model tiny:llama).")
    parser.add_argument("--records_dir", default=None, help="Finished units (default: results/evidence_runs/<model>).")
    parser.add_argument(
        "--work_dir", default=None, help="Data, checkpoints, evaluations (default: evidence-work/<model>)."
    )
    parser.add_argument(
        "--results_dir",
        default=None,
        help="evidence.md/json/png (default: benchmarks/results; --work_dir with --quick).",
    )
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=None, help="Trained arms, in run order.")
    parser.add_argument("--l2_arms", nargs="*", choices=list(L2_ARMS), default=None, help="L² arms (none: skip L²).")
    parser.add_argument("--languages", nargs="+", default=None, help="Languages, English first.")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="Training seeds (first: the rate search).")
    parser.add_argument("--budgets", type=int, nargs="+", default=None, help="Step budgets, ascending (3 or more).")
    parser.add_argument(
        "--precision",
        choices=list(PRECISION_TIME),
        default=None,
        help="float32, or bfloat16 (bf16 autocast training, bf16 evaluation); default: the model's design's.",
    )
    for name in ("train_problems", "val_problems", "test_problems"):
        parser.add_argument(f"--{name}", type=int, default=None)
    parser.add_argument("--dry_run", action="store_true", help="Print the plan and the estimate, run nothing.")
    parser.add_argument("--report", action="store_true", help="Only write the report from the records so far.")
    parser.add_argument(
        "--keep_models",
        action="store_true",
        help="Keep every checkpoint in --work_dir (default: a final run keeps its last budget's weights only, a rate "
        "search the chosen rate's run only).",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="Processes that share the units (one core each; default 1): each takes the next unit that can run, so "
        "with 2 the run takes about half the wall time on 2 cores.",
    )
    parser.add_argument("--run", nargs=2, default=None, help=argparse.SUPPRESS)  # a child: unit JSON, result JSON
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # "i/n": one of the workers
    return parser


def resolve_design(args, parser):
    """The model's design with the flags applied, checked before anything loads (`parser.error`: exit 2)."""
    from slam_trainer.languages import validate_languages

    design = QUICK if args.quick else DESIGNS.get(args.model, SMOLLM2)
    overrides = {
        name: tuple(getattr(args, name))
        for name in ("arms", "l2_arms", "languages", "seeds", "budgets")
        if getattr(args, name) is not None
    }
    overrides |= {
        n: getattr(args, n)
        for n in ("train_problems", "val_problems", "test_problems", "precision")
        if getattr(args, n) is not None
    }
    design = replace(design, **overrides)
    try:
        validate_languages(list(design.languages), argument="--languages", min_count=2)
    except ValueError as error:
        parser.error(str(error))
    if design.languages[0] != "en":
        parser.error(
            "`--languages` must start with en (the pivot of the question translation and the retention check)."
        )
    budgets = list(design.budgets)
    if len(budgets) < 3 or budgets != sorted(set(budgets)) or budgets[0] < 1:
        parser.error(f"`--budgets` must be 3 or more distinct positive step counts, ascending; got {budgets}.")
    if not design.seeds or len(set(design.seeds)) != len(design.seeds):
        parser.error(f"`--seeds` must be distinct, got {list(design.seeds)}.")
    for name in ("train_problems", "val_problems", "test_problems"):
        if getattr(design, name) < 1:
            parser.error(f"`--{name}` must be at least 1, got {getattr(design, name)}.")
    if "full" not in design.arms:
        parser.error("`--arms` must include full: it is the reference of every ratio and comparison.")
    if args.workers < 1:
        parser.error(f"`--workers` must be at least 1, got {args.workers}.")
    return design


def print_plan(design, scale: float, workers: int) -> None:
    minutes = estimate_minutes(design, scale)
    total = sum(minutes.values())
    wall = f" (~{total / 60 / workers:.1f} h with {workers} workers)" if workers > 1 else ""
    print(
        f"Design: {len(design.languages)} languages ({', '.join(design.languages)}), {design.val_problems} "
        f"validation / {design.test_problems} test problems each; arms {', '.join(design.arms)}"
        + (f"; L² {', '.join(design.l2_arms)}" if design.l2_arms else "")
        + f"; budgets {list(design.budgets)} steps of batch {design.batch_size}; seeds {list(design.seeds)}; "
        f"{design.precision}."
    )
    print(
        "Estimate (one core, each rate search extended once): "
        + ", ".join(f"{phase} {value / 60:.1f} h" for phase, value in minutes.items())
        + f"; total ~{total / 60:.1f} h{wall}. Every unit is kept as it finishes: stop and resume at will.",
        flush=True,
    )


# -- what a unit is given ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunFacts:
    """What every unit of one model's run shares: the base model, the data files, the design's sizes, and the facts of
    `setup` (prompt style, LoRA rank, parameter count)."""

    base: str
    data: dict[str, str]  # train, val, test, exemplars: JSONL paths
    languages: list[str]
    prompt_style: str
    eval_batch_size: int
    max_new_tokens: int
    batch_size: int
    max_length: int
    warmup_steps: int
    lora_rank: int
    total_params: int
    protocols: list[str]
    select_budget: int
    intervention_grid: list[list[float]]
    precision: str  # `Design.precision`


@dataclass(frozen=True)
class Unit:
    """One training unit, as its subprocess gets it (JSON both ways): (arm, rate, seed) trained to its last budget,
    then its evaluations. A final run (`final`) also chooses, on seed 0, the protocol and the intervention."""

    run: RunFacts
    key: str
    arm: str
    rate: float
    seed: int
    layers: list[int] | None  # None: the arm's trainer decides (full, lora, L²)
    budgets: list[list[int]]  # [nominal, steps]: L² arms train equal tokens, so their steps differ
    run_dir: str
    evals: list[list] = field(default_factory=list)  # fixed evaluations: [split, nominal budget, protocol]
    final: bool = False
    known_val: dict[str, float] = field(default_factory=dict)  # validation scores the search already has
    protocol: str | None = None  # given for seeds after the first (seed 0 chose it)
    intervention: list[float] | None = None  # likewise

    @classmethod
    def from_json(cls, text: str) -> Unit:
        fields = json.loads(text)
        return cls(**{**fields, "run": RunFacts(**fields["run"])})


@dataclass(frozen=True)
class Task:
    """A unit a worker can take: the record it writes (the key of its lock, `locks/<key>` in the work folder: which
    worker runs it) and how to run it."""

    key: str
    go: Callable[[], None]


# -- data and the model's facts -------------------------------------------------------------------------------------


def write_jsonl(path: Path, rows) -> str:
    """Written whole (`write_atomic`): a worker rewriting the same rows never shows another worker's run a cut file."""
    write_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return str(path)


def build_data(design, data_dir: Path) -> dict[str, str]:
    """Training rows, validation and test problems, few-shot exemplars, as JSONL files: the same on any machine."""
    from slam_trainer.data.synthetic import problem_rows, train_test_problems

    train, held_out = train_test_problems(
        design.train_problems,
        design.val_problems + design.test_problems,
        languages=list(design.languages),
        seed=design.data_seed,
        world=design.world,
        disjoint="equation",
    )
    val, test = held_out[: design.val_problems], held_out[design.val_problems :]
    data_dir.mkdir(parents=True, exist_ok=True)
    question_only = ("id", "lang", "question", "answer")
    return {
        "train": write_jsonl(data_dir / "train.jsonl", problem_rows(train)),
        "val": write_jsonl(data_dir / "val.jsonl", [{k: r[k] for k in question_only} for r in problem_rows(val)]),
        "test": write_jsonl(data_dir / "test.jsonl", [{k: r[k] for k in question_only} for r in problem_rows(test)]),
        "exemplars": write_jsonl(
            data_dir / "exemplars.jsonl",
            [{k: r[k] for k in ("lang", "question", "cot")} for r in problem_rows(train[: design.few_shots])],
        ),
    }


def prepare_base(model: str, work: Path) -> str:
    """The folder the base model loads from: an offline short name's converted folder, or a saved tiny model."""
    from slam_trainer.offline_models import resolve_model_path

    if not model.startswith("tiny:"):
        return resolve_model_path(model)
    base = work / "base"
    if not (base / "config.json").exists():
        from slam_trainer.tiny import build_tiny_model, build_tiny_tokenizer

        build_tiny_model(model.removeprefix("tiny:"), num_layers=8, hidden_size=64).save_pretrained(base)
        build_tiny_tokenizer().save_pretrained(base)
    return str(base)


def read_rows(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def setup(design, base: str, data: dict, work: Path) -> dict:
    """The model's facts every arm needs: its layers, auto mode's default choice on the training rows (probed as the
    trainer probes them) with its bootstrap stability, the LoRA rank that matches SLAM's count, the prompt style, and
    the mean training tokens per language (for L²'s equal-token budgets)."""
    import torch
    from datasets import Dataset

    from slam_trainer.config import SelectiveFFNConfig
    from slam_trainer.freezing import plan_freeze
    from slam_trainer.loading import load_model_and_tokenizer
    from slam_trainer.probe.auto import resolve_auto_layers
    from slam_trainer.prompts import eval_style, uses_chat_template

    model, tokenizer = load_model_and_tokenizer(base, {"dtype": "float32", "device_map": None})
    num_layers, count = model.config.num_hidden_layers, design.slam_num_layers
    if count > num_layers:
        raise SystemExit(f"bench_evidence: error: {count} SLAM layers exceed the model's {num_layers} layers.")
    rows = read_rows(data["train"])
    pipeline = training_pipeline()
    args = SelectiveFFNConfig(output_dir=str(work / "identify"), use_cpu=True, report_to="none")
    slam_set, _ = pipeline.build_training_data(
        Dataset.from_list(rows), pipeline.TrainScriptArguments(dataset_format="parallel"), tokenizer, model, args
    )
    auto, report = resolve_auto_layers(model, tokenizer, None, count, str(work / "identify"), train_dataset=slam_set)
    slam_params = plan_freeze(model, list(range(count))).report.trainable_params
    head = model.get_output_embeddings()
    per_rank = sum(  # LoRA on every linear layer but the head adds r x (in + out) parameters per layer
        m.in_features + m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head
    )
    tokens = {
        lang: statistics.mean(
            len(tokenizer(r["question"] + "\n" + r["cot"]).input_ids) for r in rows if r["lang"] == lang
        )
        for lang in design.languages
    }
    stability = report.stability or {}
    return {
        "key": "setup",
        "num_layers": num_layers,
        "layers": {"auto": list(auto), "low": list(range(count)), "top": list(range(num_layers - count, num_layers))},
        "auto_probe": f"{len(report.tokens)} languages of the training questions",
        "layer_stability": stability.get("mean_jaccard"),
        "layer_frequency": stability.get("frequency"),
        "layers_stable": stability.get("stable"),
        "total_params": sum(p.numel() for p in model.parameters()),
        "lora_rank": max(1, round(slam_params / per_rank)),
        "prompt_style": eval_style(uses_chat_template(tokenizer)),
        "train_tokens_per_row": tokens,
    }


def random_layers(num_layers: int, count: int, seed: int) -> list[int]:
    """slam-random's layers for one seed: a different draw per seed."""
    return sorted(random.Random(f"slam-random:{seed}").sample(range(num_layers), count))


def l2_budget_steps(design, setup_record: dict, arm: str) -> list[int]:
    """L²'s budgets in steps with equal training tokens: l2-full's step budgets, scaled by how much shorter or longer
    the arm's training rows are (en-cot trains on English rows alone; the mixed chains average over the languages as
    the whole chains do)."""
    tokens = setup_record["train_tokens_per_row"]
    reference = statistics.mean(tokens[lang] for lang in design.languages)
    own = statistics.mean(tokens[lang] for lang in (L2_ARMS[arm][0] or design.languages))
    return [max(1, round(budget * reference / own)) for budget in design.budgets]


# -- evaluation ---------------------------------------------------------------------------------------------------


def evaluate(facts: RunFacts, model: str, split: str, shots: int, out: Path, intervention=None) -> dict:
    """One scored evaluation through the package's runner (resumable in `out`): per language the accuracy, tokens
    per correct answer, mean tokens, language fidelity, and each problem's verdict in data-file order."""
    from slam_trainer.evaluation.runner import EvalSettings, InterventionSettings, run_evaluation

    settings = EvalSettings(
        model=model,
        data=facts.data[split],
        languages=list(facts.languages),
        prompt_style=facts.prompt_style,
        num_shots=shots,
        exemplars=facts.data["exemplars"] if shots else None,
        batch_size=facts.eval_batch_size,
        max_new_tokens=facts.max_new_tokens,
        dtype=facts.precision,
        device="cpu",
    )
    steer = None
    if intervention is not None:
        alpha, beta, top_k = intervention
        steer = InterventionSettings(alpha=alpha, beta=beta, top_k=top_k)
    results = run_evaluation(settings, out, intervention=steer, skip_baseline=steer is not None, progress=False)
    run = results[-1]
    order: dict[str, list] = {}
    for row in read_rows(facts.data[split]):
        order.setdefault(row["lang"], []).append(row["id"])
    verdicts = {(r["lang"], r["id"]): r["correct"] for r in read_rows(str(out / run["run"] / "predictions.jsonl"))}
    languages = run["scores"]["languages"]
    scored = {
        "accuracy": {lang: languages[lang]["accuracy"] for lang in order},
        "tokens_per_correct": {lang: languages[lang]["tokens_per_correct"] for lang in order},
        "mean_tokens": {lang: languages[lang]["mean_tokens"] for lang in order},
        "language_fidelity": {lang: languages[lang]["language_consistency"] for lang in order},
        "verdicts": {lang: "".join("1" if verdicts[lang, i] else "0" for i in ids) for lang, ids in order.items()},
    }
    scored["non_en"] = statistics.mean(scored["accuracy"][lang] for lang in order if lang != "en")
    if steer is not None:
        steering = run["steering"]
        scored["rows_steered"] = steering["rows_steered"] / steering["rows"] if steering["rows"] else None
    return scored


def eval_name(split: str, budget: int, protocol: str, intervention=None) -> str:
    name = f"{split}/{budget}/{protocol}"
    return name if intervention is None else name + "/switch " + ",".join(f"{v:g}" for v in intervention)


def shots_of(protocol: str) -> int:
    return int(protocol.split("-")[0])


# -- one training unit (a subprocess) -----------------------------------------------------------------------------


def train_unit(unit: Unit) -> dict:
    """Train (arm, rate, seed) to the unit's last budget, resuming from the run's last checkpoint, saving one at each
    budget; then run the unit's evaluations. Returns its record."""
    import resource

    from datasets import Dataset
    from peft import LoraConfig
    from transformers import PrinterCallback, TrainerCallback
    from transformers.trainer_utils import get_last_checkpoint
    from trl import ModelConfig

    from slam_trainer.config import SelectiveFFNConfig, cpu_training_defaults
    from slam_trainer.l2.tags import add_language_tokens

    steps = [step for _, step in unit.budgets]

    class BudgetCheckpoints(TrainerCallback):
        """Wall time of each optimizer step; a checkpoint at each budget, and one every `RESUME_EVERY` steps that
        only the next is kept for (a run stopped mid-way loses at most that many steps). Only the newest checkpoint
        keeps its optimizer: the one to resume from."""

        def __init__(self):
            self.seconds, self._start = [], 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self._start)
            control.should_save = state.global_step in steps or state.global_step % RESUME_EVERY == 0

        def on_save(self, args, state, control, **kwargs):
            for checkpoint in run_dir.glob("checkpoint-*"):
                step = int(checkpoint.name.split("-")[-1])
                if step < state.global_step and step not in steps:
                    shutil.rmtree(checkpoint, ignore_errors=True)
                elif step < state.global_step:
                    for name in ("optimizer.pt", "scheduler.pt"):
                        (checkpoint / name).unlink(missing_ok=True)

    run_dir = Path(unit.run_dir)
    arm, l2 = unit.arm, L2_ARMS.get(unit.arm)
    arm_spec = ARMS.get(arm, {"trainer": "sft"})
    args = SelectiveFFNConfig(
        output_dir=str(run_dir),
        slam_layers=unit.layers or "auto",
        max_steps=max(steps),
        per_device_train_batch_size=unit.run.batch_size,
        learning_rate=unit.rate,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=unit.run.warmup_steps,
        weight_decay=0.0,
        max_length=unit.run.max_length,
        logging_steps=1,
        seed=unit.seed,
        include_num_input_tokens_seen="non_padding",
        **{**cpu_training_defaults(), "bf16": unit.run.precision == "bfloat16"},  # float32 weights either way
    )
    pipeline = training_pipeline()
    model, tokenizer = pipeline.load_training_model(
        ModelConfig(model_name_or_path=unit.run.base, dtype="float32"), args
    )
    if l2:  # every language's tag, so that the intervention can steer even the English-only model
        add_language_tokens(tokenizer, model, list(unit.run.languages))
    script_args = pipeline.TrainScriptArguments(
        dataset_format="parallel",
        languages=list((l2[0] if l2 else None) or unit.run.languages),
        l2_mode=l2[1] if l2 else "off",
        l2_special_tokens=bool(l2),
    )
    rows = read_rows(unit.run.data["train"])
    train_dataset, collator = pipeline.build_training_data(
        Dataset.from_list(rows), script_args, tokenizer, model, args
    )
    timer = BudgetCheckpoints()
    lora = None
    if arm_spec.get("lora"):  # alpha = 2 r, no dropout: ours
        lora = LoraConfig(
            r=unit.run.lora_rank, lora_alpha=2 * unit.run.lora_rank, lora_dropout=0.0, target_modules="all-linear"
        )
    trainer = pipeline.build_trainer(
        arm_spec["trainer"], model, args, train_dataset, collator, tokenizer, lora, [timer]
    )
    trainer.remove_callback(PrinterCallback)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    resume = get_last_checkpoint(str(run_dir)) if run_dir.is_dir() else None
    started = time.perf_counter()
    if resume is None or int(Path(resume).name.split("-")[-1]) < max(steps):
        trainer.train(resume_from_checkpoint=resume)
    train_seconds = time.perf_counter() - started
    peak_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # before evaluation adds its own
    history = trainer.state.log_history
    if resume is not None and not timer.seconds:  # nothing trained here: the history is the checkpoint's
        history = json.loads((Path(resume) / "trainer_state.json").read_text(encoding="utf-8"))["log_history"]
    record = {
        "key": unit.key,
        "arm": arm,
        "rate": unit.rate,
        "seed": unit.seed,
        "layers": unit.layers,
        "trainable_params": trainable,
        "total_params": unit.run.total_params,
        "resumed_from_step": int(Path(resume).name.split("-")[-1]) if resume else 0,
        "bf16_autocast": trainer.args.bf16,
        "cpu": cpu_description(),
        "step_seconds": statistics.median(timer.seconds[1:] or timer.seconds) if timer.seconds else None,
        "peak_rss_bytes": peak_bytes if timer.seconds else None,
        "train_seconds": round(train_seconds, 1),
        "budgets": {str(nominal): budget_facts(history, step) for nominal, step in unit.budgets},
    }
    record["evals"] = run_evaluations(unit, record)
    return record


RESUME_EVERY = 20  # steps between checkpoints that exist only to resume from (ours: ~2-4 min of CPU each)


def budget_facts(history: list[dict], step: int) -> dict:
    """The training loss at one budget (the mean of the last 5 logged steps up to it) and the tokens seen by then."""
    logged = [entry for entry in history if "loss" in entry and entry["step"] <= step]
    tokens = [entry["num_input_tokens_seen"] for entry in logged if "num_input_tokens_seen" in entry]
    return {
        "steps": step,
        "train_loss": round(statistics.mean(entry["loss"] for entry in logged[-5:]), 4) if logged else None,
        "tokens_seen": tokens[-1] if tokens else None,
    }


def run_evaluations(unit: Unit, record: dict) -> dict:
    """The unit's evaluations: fixed ones, then (seed 0 of a final run) the protocol and the intervention chosen on
    validation, then the test evaluations that depend on them."""
    steps = {nominal: step for nominal, step in unit.budgets}
    evals: dict[str, dict] = {}

    def run(split, nominal, protocol, intervention=None):
        name = eval_name(split, nominal, protocol, intervention)
        if name not in evals:
            checkpoint = Path(unit.run_dir) / f"checkpoint-{steps[nominal]}"
            out = Path(unit.run_dir) / "eval" / name.replace("/", "_").replace(" ", "_")
            evals[name] = evaluate(unit.run, str(checkpoint), split, shots_of(protocol), out, intervention)
        return evals[name]

    for split, nominal, protocol in unit.evals:
        run(split, nominal, protocol)
    middle, last = unit.run.select_budget, unit.budgets[-1][0]
    if unit.final:
        protocol = unit.protocol
        if protocol is None:  # seed 0: the protocol scoring best on validation (ties: 0-shot)
            scores = {p: unit.known_val.get(p) for p in unit.run.protocols}
            scores = {p: s if s is not None else run("val", middle, p)["non_en"] for p, s in scores.items()}
            protocol = max(unit.run.protocols, key=lambda p: (scores[p], -shots_of(p)))
            record["protocol_val"] = scores
            for other in unit.run.protocols:  # the protocol not chosen, on test too (seed 0, middle budget)
                run("test", middle, other)
        record["protocol"] = protocol
        for nominal, _ in unit.budgets:
            run("test", nominal, protocol)
        for other in unit.run.protocols:  # every seed, both protocols at the last budget (same-protocol comparisons)
            run("test", last, other)
        if L2_ARMS.get(unit.arm):
            intervention = unit.intervention
            if intervention is None:  # seed 0: the setting with the best validation score (ties: the first)
                scores = {
                    tuple(s): run("val", middle, protocol, tuple(s))["non_en"] for s in unit.run.intervention_grid
                }
                intervention = max(scores, key=scores.get)
                record["intervention_val"] = {",".join(f"{v:g}" for v in s): v for s, v in scores.items()}
            record["intervention"] = list(intervention)
            run("test", last, protocol, tuple(intervention))
    return evals


def run_child(unit: Unit, records: Records, work: Path) -> dict:
    """`train_unit(unit)` in a fresh Python process; its record is added when it is whole."""
    unit_dir = work / "units"
    unit_dir.mkdir(parents=True, exist_ok=True)
    name = unit.key.replace("/", "_")
    unit_path, result_path = unit_dir / f"{name}.json", unit_dir / f"{name}.result.json"
    unit_path.write_text(json.dumps(asdict(unit)), encoding="utf-8")
    result_path.unlink(missing_ok=True)
    started = time.perf_counter()
    child = subprocess.run([sys.executable, os.path.abspath(__file__), "--run", str(unit_path), str(result_path)])
    if child.returncode != 0 or not result_path.exists():
        raise SystemExit(f"bench_evidence: error: unit {unit.key} failed (exit {child.returncode}); see above.")
    record = json.loads(result_path.read_text(encoding="utf-8"))
    return records.add({**record, "wall_seconds": round(time.perf_counter() - started, 1)})


# -- phases -------------------------------------------------------------------------------------------------------


class Run:
    """One model's run: its design, records, data and the facts of `setup`; each phase skips finished units."""

    def __init__(self, design, records: Records, work: Path, base: str, data: dict, setup_record: dict, keep: bool):
        self.design, self.records, self.work, self.keep = design, records, work, keep
        self.setup = setup_record
        self.facts = RunFacts(
            base=base,
            data=data,
            languages=list(design.languages),
            prompt_style=setup_record["prompt_style"],
            eval_batch_size=design.eval_batch_size,
            max_new_tokens=design.max_new_tokens,
            batch_size=design.batch_size,
            max_length=design.max_length,
            warmup_steps=design.warmup_steps,
            lora_rank=setup_record["lora_rank"],
            total_params=setup_record["total_params"],
            protocols=list(design.protocols),
            select_budget=design.select_budget,
            intervention_grid=[list(s) for s in design.intervention_grid],
            precision=design.precision,
        )
        self.on_record = lambda: None

    def base_eval(self, split: str, protocol: str) -> None:
        """The untrained model on `split` with `protocol` (validation says which protocol is its headline)."""
        started = time.perf_counter()
        out = self.work / "eval" / "base" / f"{split}-{protocol}"
        scored = evaluate(self.facts, self.facts.base, split, shots_of(protocol), out)
        self.records.add(
            {"key": base_key(split, protocol), **scored, "wall_seconds": round(time.perf_counter() - started, 1)}
        )
        print(f"base {split} {protocol}: non-English {scored['non_en']:.3f}", flush=True)
        self.on_record()

    def budgets(self, arm: str) -> list[list[int]]:
        steps = l2_budget_steps(self.design, self.setup, arm) if arm in L2_ARMS else list(self.design.budgets)
        return [[nominal, step] for nominal, step in zip(self.design.budgets, steps, strict=True)]

    def layers(self, arm: str, seed: int) -> list[int] | None:
        kind = ARMS.get(arm, {}).get("layers")
        if kind == "random":
            return random_layers(self.setup["num_layers"], self.design.slam_num_layers, seed)
        return self.setup["layers"][kind] if kind else None

    def run_dir(self, arm: str, rate: float, seed: int) -> Path:
        return self.work / "runs" / arm / f"lr={rate:g}" / f"seed={seed}"

    def unit(self, key: str, arm: str, rate: float, seed: int, budgets, **extra) -> dict:
        unit = Unit(
            run=self.facts,
            key=key,
            arm=arm,
            rate=rate,
            seed=seed,
            layers=self.layers(arm, seed),
            budgets=budgets,
            run_dir=str(self.run_dir(arm, rate, seed)),
            **extra,
        )
        record = run_child(unit, self.records, self.work)
        losses = ", ".join(f"{b} {facts['train_loss']}" for b, facts in record["budgets"].items())
        scores = ", ".join(f"{name} {scored['non_en']:.3f}" for name, scored in record["evals"].items())
        step = f"{record['step_seconds']:.1f} s/step" if record["step_seconds"] else "no step run"
        print(f"{key}: loss {losses}; non-English {scores}; {step}, {record['wall_seconds'] / 60:.1f} min", flush=True)
        self.on_record()
        return record

    def search_scores(self, arm: str) -> dict[int, tuple[float, float]]:
        """The validation scores of `arm`'s search so far, by ladder exponent."""
        name = eval_name("val", self.design.select_budget, self.design.protocols[0])
        found = {e: self.records.get(search_key(arm, rate_of(e))) for e in range(*EXPONENT_RANGE)}
        return {e: selection_score(record["evals"][name]) for e, record in found.items() if record is not None}

    def start(self, arm: str) -> tuple[int, ...] | None:
        """The first rates of `arm`'s search: an L² arm's around full's chosen rate (None until full's search has
        finished), any other arm's at its kind's default."""
        center, done = None, self.search_scores(arm)
        if arm in L2_ARMS:
            center = finished_search(self.search_scores("full"), self.design.start_points, self.design.max_grid_points)
            if center is None and not done:
                return None
        start = start_exponents(arm, self.design.start_points, center)
        grid = set(start) | set(done)
        if grid != set(range(min(grid), max(grid) + 1)):  # begun around another rate (full's search was not done)
            return tuple(sorted(done))
        return start

    def search_next(self, arm: str) -> tuple[tuple[int, ...], int | None]:
        """Where `arm`'s rate search stands: the rates to run now (ladder exponents) and the chosen one (None until
        the best validation score is interior, or the grid may grow no more). Neither: it waits for full's."""
        start, scores = self.start(arm), self.search_scores(arm)
        if start is None:
            return (), None
        missing = tuple(e for e in start if e not in scores)
        if missing:
            return missing, None
        move, exponent = choose_rate(scores, self.design.max_grid_points)
        return ((exponent,), None) if move == "extend" else ((), exponent)

    def search_point(self, arm: str, exponent: int) -> None:
        """One rate of `arm`'s search: seed 0 to the middle budget, scored on validation."""
        middle, rate = self.design.select_budget, rate_of(exponent)
        budgets = [b for b in self.budgets(arm) if b[0] <= middle]
        evals = [["val", middle, self.design.protocols[0]]]
        self.unit(search_key(arm, rate), arm, rate, self.design.seeds[0], budgets, evals=evals)

    def prune_search(self, arm: str) -> None:
        """Without `--keep_models`, remove the runs of `arm`'s scored rates that can no longer be chosen (one scored
        better): only the best so far stays, to continue as seed 0's final run. A full fine-tuning run of SmolLM2
        keeps ~2 GB (weights and optimizer), of Gemma-3-270M ~3 GB: kept until the search ends, a few searches
        at once would fill this machine's disk."""
        scores = self.search_scores(arm)
        if scores and not self.keep:
            best = best_rate(scores)
            for other in scores:
                if other != best:
                    shutil.rmtree(self.run_dir(arm, rate_of(other), self.design.seeds[0]), ignore_errors=True)

    def plan(self) -> list[Task]:
        """Every unit that can run now, in the order to take them: base; the core arms' searches, then their final
        runs seed by seed; the same for the L² arms. Read again from disk (another worker may have added records);
        empty when the run is done (a unit that waits is behind one in the list)."""
        self.records = Records(self.records.root)
        design, first = self.design, self.design.seeds[0]
        tasks = [
            Task(base_key(split, p), partial(self.base_eval, split, p))
            for split in ("val", "test")
            for p in design.protocols
            if base_key(split, p) not in self.records
        ]
        for group in (design.arms, design.l2_arms):
            chosen = {}
            for arm in group:
                self.prune_search(arm)
                pending, exponent = self.search_next(arm)
                tasks += [Task(search_key(arm, rate_of(e)), partial(self.search_point, arm, e)) for e in pending]
                if exponent is not None:
                    chosen[arm] = exponent
            for seed in design.seeds:
                for arm, exponent in chosen.items():
                    key = final_key(arm, seed)
                    if key in self.records:
                        if self.top_up_evals(arm, seed):
                            tasks.append(
                                Task(topup_key(arm, seed), partial(self.top_up, arm, seed, rate_of(exponent)))
                            )
                    elif seed == first or final_key(arm, first) in self.records:
                        tasks.append(Task(key, partial(self.final, arm, seed, exponent)))
        return tasks

    def final(self, arm: str, seed: int, exponent: int) -> None:
        """A final run of `arm` at its chosen rate: seed 0 continues the search's run at that rate and chooses the
        protocol (and an L² arm's intervention) on validation; the other seeds take seed 0's."""
        first, rate = self.design.seeds[0], rate_of(exponent)
        extra = {"final": True}
        if seed == first:
            scores = self.search_scores(arm)
            interior = "interior" if is_interior(scores, exponent) else "AT THE GRID'S EDGE (no more room)"
            print(f"{arm}: rate {rate:g} chosen ({interior}) from {len(scores)} rates.", flush=True)
            search = self.records[search_key(arm, rate)]
            name = eval_name("val", self.design.select_budget, self.design.protocols[0])
            extra["known_val"] = {self.design.protocols[0]: search["evals"][name]["non_en"]}
        else:
            seed_zero = self.records[final_key(arm, first)]
            extra["protocol"] = seed_zero["protocol"]
            extra["intervention"] = seed_zero.get("intervention")
        self.unit(final_key(arm, seed), arm, rate, seed, self.budgets(arm), **extra)
        self.keep_last_weights(arm, rate, seed)

    def top_up_evals(self, arm: str, seed: int) -> list[list]:
        """What a final run scored before every seed got both protocols at the last budget (before 2026-12-07)
        lacks there; nothing once its top-up is recorded."""
        last = self.design.budgets[-1]
        scored = self.records[final_key(arm, seed)]["evals"]
        missing = [["test", last, p] for p in self.design.protocols if eval_name("test", last, p) not in scored]
        return [] if topup_key(arm, seed) in self.records else missing

    def top_up(self, arm: str, seed: int, rate: float) -> None:
        """Score what `top_up_evals` names on the run's last weights, trained again from step 0 when they are gone
        (same rate, seed and data order; the report checks that the training loss at every budget is the same). Its
        own record (`topup/...`); the report adds its evaluations to the final run's."""
        self.unit(topup_key(arm, seed), arm, rate, seed, self.budgets(arm), evals=self.top_up_evals(arm, seed))
        self.keep_last_weights(arm, rate, seed)

    def keep_last_weights(self, arm: str, rate: float, seed: int) -> None:
        """Without `--keep_models`, only the last budget's weights stay (an evaluation added later needs no
        retraining)."""
        if self.keep:
            return
        last = f"checkpoint-{self.budgets(arm)[-1][1]}"
        for path in self.run_dir(arm, rate, seed).glob("checkpoint-*"):
            if path.name != last:
                shutil.rmtree(path, ignore_errors=True)
        for name in ("optimizer.pt", "scheduler.pt"):
            (self.run_dir(arm, rate, seed) / last / name).unlink(missing_ok=True)


EXPONENT_RANGE = (-40, 1)  # where recorded search rates are looked for (wider than any grid)


# -- entry point --------------------------------------------------------------------------------------------------


def cpu_description() -> str:
    """The CPU a record was made on, and whether its cores compute in bf16 natively: the run spans sessions on
    different machines, and bf16 speed (and kernels) differ between cores with AMX/AVX512-BF16 and those without."""
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    fields = {key.strip(): value.strip() for key, value in (line.split(":", 1) for line in lines if ":" in line)}
    native = [flag for flag in ("amx_bf16", "avx512_bf16") if flag in fields.get("flags", "").split()]
    return f"{fields.get('model name', platform.machine())} (bf16: {', '.join(native) or 'not native'})"


def machine_info() -> dict:
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu": cpu_description(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0],
    }


def quiet() -> None:
    """One line per unit in a log that runs for days: no progress bars, warnings and errors only."""
    import datasets
    from transformers.utils import logging

    datasets.disable_progress_bars()
    logging.disable_progress_bar()
    logging.set_verbosity_error()


def write_report(records_dir: Path, results: Path, command: str, quick: bool) -> None:
    """The report over every model's records (the folder beside this one's), or this folder alone with --quick;
    one writer at a time (workers finish units at any moment)."""
    import fcntl

    from evidence_report import write_all

    results.mkdir(parents=True, exist_ok=True)
    with open(results / ".evidence-report.lock", "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        write_all(records_dir if quick else records_dir.parent, results, command=command, machine=machine_info())


def shown_arguments(argv: list[str]) -> list[str]:
    """The command line as the user typed it: without the `--worker i/n` the parent adds for its workers."""
    shown = list(argv)
    if "--worker" in shown:
        at = shown.index("--worker")
        del shown[at : at + 2]
    return shown


def run_workers(argv: list[str], workers: int) -> None:
    """Start `workers` copies of this command (`--worker i/n`), one core each, all taking units from one plan."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    children = [
        subprocess.Popen([sys.executable, os.path.abspath(__file__), *argv, "--worker", f"{i}/{workers}"], env=env)
        for i in range(workers)
    ]
    failed = [i for i, child in enumerate(children) if child.wait() != 0]
    if failed:
        raise SystemExit(f"bench_evidence: error: worker(s) {failed} failed; see above. Rerun to resume.")


def take_units(run: Run) -> None:
    """Take the first unit of the plan that no other worker holds (its lock), run it, plan again; wait while every
    unit that can run is held (units behind them wait for them); return when the plan is empty. Units, not arms, are
    shared out, so no core idles while another has work that could run."""
    while tasks := run.plan():
        for task in tasks:
            if run.records.written(task.key):  # finished by another worker since this one planned
                break
            with ExitStack() as held:
                try:
                    held.enter_context(exclusive_lock(run.work / "locks" / task.key, flag="--work_dir"))
                except ResumeError:  # another worker runs it
                    continue
                if not run.records.written(task.key):
                    task.go()
                break
        else:
            time.sleep(WAIT_SECONDS)


WAIT_SECONDS = 10  # how often a worker with nothing to take looks again


def main(argv: list[str] | None = None) -> None:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.run:  # a child process: one training unit
        quiet()
        unit_path, result_path = args.run
        unit = Unit.from_json(Path(unit_path).read_text(encoding="utf-8"))
        Path(result_path).write_text(json.dumps(train_unit(unit), ensure_ascii=False), encoding="utf-8")
        return

    design = resolve_design(args, parser)
    name = args.model.replace(":", "-").replace("/", "_")
    work = Path(args.work_dir or Path("evidence-work") / (name + ("-quick" if args.quick else ""))).resolve()
    records_dir = Path(args.records_dir or (work / "records" if args.quick else RESULTS_DIR / "evidence_runs" / name))
    results = Path(args.results_dir) if args.results_dir else work if args.quick else RESULTS_DIR
    typed = shown_arguments(sys.argv[1:] if argv is None else argv)
    command = "python benchmarks/bench_evidence.py " + " ".join(typed)
    records = Records(records_dir)
    if args.report:
        write_report(records_dir, results, command, args.quick)
        return
    if not args.worker:
        print_plan(design, 1.0 if args.quick else {"gemma3-270m": 2.0}.get(args.model, 1.0), args.workers)
    if args.dry_run:
        return
    check_design(records_dir, {"model": args.model, **json.loads(json.dumps(asdict(design)))})
    quiet()
    base = prepare_base(args.model, work)
    data = build_data(design, work / "data")
    setup_record = records.get("setup") or records.add(setup(design, base, data, work))
    print(
        ("" if not args.worker else f"Worker {args.worker}: ")
        + f"Layers: auto {setup_record['layers']['auto']} (probe stability: mean Jaccard "
        f"{setup_record['layer_stability']}, stable {setup_record['layers_stable']}); LoRA rank "
        f"{setup_record['lora_rank']}; prompts: {setup_record['prompt_style']}.",
        flush=True,
    )
    run = Run(design, records, work, base, data, setup_record, args.keep_models)
    run.on_record = lambda: write_report(records_dir, results, command, args.quick)
    if args.workers > 1 and not args.worker:
        run_workers(sys.argv[1:] if argv is None else list(argv), args.workers)
    else:
        take_units(run)
    if args.worker:
        return
    write_report(records_dir, results, command, args.quick)
    print(f"Done: {len(Records(records_dir).records)} records in {records_dir}; report in {results}.")


if __name__ == "__main__":
    main()
