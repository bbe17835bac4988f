"""Evidence: SLAM's and L²'s claims measured on a real pretrained model, with ablations, in one resumable run.

Usage:
    python benchmarks/bench_evidence.py                             # SmolLM2-135M-Instruct: the full run, ~2 h
    python benchmarks/bench_evidence.py --model gemma3-270m --work_dir evidence-gemma --results_dir evidence-gemma
    python benchmarks/bench_evidence.py --quick --model tiny:llama   # the plumbing only, on a random tiny model

What it measures (issue 11). Arms, all on the same training data (SLAM's one-stage set: question translation X→en +
worked answers in every language, from the package's synthetic world), steps and batch:

    base         nothing trains (zero-shot or few-shot prompt, whichever scores better on the validation split)
    full         every parameter (plain `trl.SFTTrainer`)
    slam-auto    up+down of the layers `slam_layers="auto"` picks (`resolve_auto_layers`, once, as the trainer does)
    slam-low     up+down of layers 0-5 (the paper's fixed choice; 0..N-1 with --slam_num_layers N)
    slam-top     up+down of the top 6 layers
    slam-random  up+down of 6 random layers (a fixed draw)
    lora         LoRA on every linear layer, rank chosen so that it trains about as many parameters as SLAM
    slam-lora    SLAM + LoRA on the auto layers (same rank)

Each arm trains at every rate of its learning-rate grid on the first seed; the rate with the best mean accuracy on a
validation split (held-out problems disjoint from both training and test problems) is selected, and only then run on
the other seeds and evaluated on the test problems (and on a slice of MGSM). L²: English-CoT-only SFT vs L² full-chain
vs L² mixed (`L2DataCollator`, full fine-tuning as the paper, at `full`'s selected rate), evaluated on the test
problems with and without the decoding intervention (`LanguageSwitchLogitsProcessor`), with tokens per correct answer.

Every training run is a fresh subprocess, so its peak memory (max RSS) is its own; its step time is the median
optimizer step (forward, backward, update) after the first. Each finished run is appended to `runs.jsonl` in
`--work_dir` and skipped when the command is run again: an interrupted run resumes where it stopped. Results:
`evidence.md`, `evidence.json` and `evidence.png` in `--results_dir` (benchmarks/results for a full run).
Every default below is ours. They were chosen to fit 90 minutes on 2 CPU cores from a pilot's timings; the first
full run took ~2 h, and the plan and its time estimate (printed before anything trains) now say so.
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
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from evidence_report import eval_key, l2_key, markdown, mean_accuracy, plot, summarise, train_key


RESULTS_DIR = Path(__file__).resolve().parent / "results"
MGSM = Path(__file__).resolve().parents[2] / "shared" / "data" / "mgsm" / "mgsm.jsonl"
DEFAULT_MODEL = "smollm2-135m-instruct"

# The arms: how each trains ("slam" arms name their layers).
ARMS = {
    "full": {"trainer": "sft"},
    "slam-auto": {"trainer": "slam", "layers": "auto"},
    "slam-low": {"trainer": "slam", "layers": "low"},
    "slam-top": {"trainer": "slam", "layers": "top"},
    "slam-random": {"trainer": "slam", "layers": "random"},
    "lora": {"trainer": "sft", "lora": True},
    "slam-lora": {"trainer": "slam", "layers": "auto", "lora": True},
}
# L²'s arms: the training languages of the collator (None: all) and its mode. English-CoT-only SFT is the collator
# with English alone, i.e. the English seed data the L² paper starts from (our reading of its baseline).
L2_ARMS = {"en-cot": (["en"], "full"), "l2-full": (None, "full"), "l2-mixed": (None, "mixed")}
RANDOM_LAYERS_SEED = 0


@dataclass(frozen=True)
class Settings:
    """Everything a run depends on; the defaults for a real model and for `--quick` are below (all ours)."""

    languages: tuple[str, ...]  # English first: the pivot of SLAM's question translation and the retention check
    world: str  # the synthetic world (`slam_trainer.data.synthetic.WORLDS`)
    train_problems: int  # each in every language
    val_problems: int  # per language, for the learning-rate selection
    test_problems: int  # per language
    steps: int  # optimizer steps per training run
    batch_size: int
    learning_rates: dict  # arm -> its grid; the keys are the arms that run
    seeds: tuple[int, ...]  # the first one runs the grids
    l2_seeds: tuple[int, ...]
    slam_num_layers: int  # layers trained by every SLAM arm
    few_shots: int  # exemplars in the base model's few-shot prompt
    max_length: int  # training sequence limit, in tokens
    max_new_tokens: int  # generation limit for a synthetic answer
    eval_batch_size: int
    mgsm_problems: int  # per language; 0 skips MGSM
    mgsm_max_new_tokens: int

    @property
    def arms(self) -> tuple[str, ...]:
        """The trained arms run (the keys of `learning_rates`; `full` always: it is every ratio's reference)."""
        return tuple(self.learning_rates)


# Languages: English, three other Latin-script languages of three families (es, de, sw), Cyrillic (ru), Han (zh) and
# Japanese kana (ja). Thai and Bengali are left out for the budget: with SmolLM2's tokenizer a Thai or Bengali problem
# is 3-4x the tokens of an English one (answers ~65 and ~80 tokens vs ~20; Japanese ~35), and as one batch pads to
# its longest sequence, one Thai row in a batch of 8 makes the whole batch ~1.4x longer (steps and generation alike).
# Learning rates: full fine-tuning moves every weight and takes ~10x smaller rates than a few FFNs or adapters.
SLAM_RATES = (3e-4, 1e-3, 3e-3)
REAL = Settings(
    languages=("en", "es", "de", "ru", "zh", "ja", "sw"),
    world="one-step",  # SmolLM2-135M scores 0% on the multi-step world even in English, before and after training
    train_problems=100,
    val_problems=8,
    test_problems=20,
    steps=20,
    batch_size=8,
    learning_rates={
        "full": (3e-5, 1e-4, 3e-4),
        "slam-auto": SLAM_RATES,
        "slam-low": SLAM_RATES,
        "slam-top": SLAM_RATES,
        "slam-random": SLAM_RATES,
        "lora": SLAM_RATES,
        "slam-lora": SLAM_RATES,
    },
    seeds=(0, 1),
    l2_seeds=(0,),
    slam_num_layers=6,
    few_shots=3,
    max_length=384,
    max_new_tokens=64,
    eval_batch_size=16,
    mgsm_problems=6,
    mgsm_max_new_tokens=160,
)
QUICK = Settings(
    languages=("en", "es", "zh"),
    world="one-step",
    train_problems=6,
    val_problems=2,
    test_problems=2,
    steps=2,
    batch_size=2,
    learning_rates={arm: (1e-2,) for arm in ARMS} | {"full": (1e-3, 1e-2)},  # one sweep, to exercise selection
    seeds=(0, 1),
    l2_seeds=(0,),
    slam_num_layers=2,
    few_shots=1,
    max_length=256,
    max_new_tokens=8,
    eval_batch_size=8,
    mgsm_problems=1,
    mgsm_max_new_tokens=8,
)
# For the time estimate only (scaled by model size): median seconds per optimizer step of each arm on SmolLM2-135M at
# batch 8 of these sequences, measured in the first full run on 2 quiet cores (2026-11-22), per generated answer of
# a trained model, and per training subprocess (imports, loading, saving). That run took ~2 h against the 89 min the
# pilot constants promised: the defaults above exceed the 90-minute budget and the plan's warning says so.
STEP_SECONDS = {"full": 9.1, "slam-auto": 4.6, "slam-low": 4.7, "slam-top": 3.5, "slam-random": 4.4, "lora": 6.8}
STEP_SECONDS |= {"slam-lora": 4.7, "en-cot": 4.0, "l2-full": 11.6, "l2-mixed": 10.6}
ANSWER_SECONDS, PROCESS_SECONDS = 0.6, 10.0


# -- settings and plan --------------------------------------------------------------------------------------------


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="Offline short name, local folder, or tiny:<arch>.")
    parser.add_argument("--quick", action="store_true", help="Smoke-test sizes (use with --model tiny:llama).")
    parser.add_argument("--work_dir", default=None, help="Runs, data and models (default: evidence-work[-quick]).")
    parser.add_argument(
        "--results_dir",
        default=None,
        help="Where evidence.md/json/png go (default: benchmarks/results; --work_dir "
        "with --quick, so a smoke test never overwrites the real results).",
    )
    parser.add_argument("--languages", nargs="+", default=None, help="Languages, English first (default: see REAL).")
    parser.add_argument("--world", choices=("one-step", "multi-step"), default=None, help="Synthetic world.")
    for name in ("train_problems", "val_problems", "test_problems", "steps", "batch_size", "slam_num_layers"):
        parser.add_argument(f"--{name}", type=int, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="Training seeds (first: the LR sweep).")
    parser.add_argument("--l2_seeds", type=int, nargs="+", default=None, help="Seeds of the L² runs.")
    parser.add_argument(
        "--arms", nargs="+", choices=list(ARMS), default=None, help="Trained arms to run (default: all; full always)."
    )
    parser.add_argument(
        "--lr", action="append", default=[], metavar="ARM=LR,LR,...", help="Learning-rate grid of one arm (repeat)."
    )
    parser.add_argument("--max_new_tokens", type=int, default=None, help="Token limit per synthetic answer.")
    parser.add_argument("--mgsm_problems", type=int, default=None, help="MGSM problems per language (0: skip).")
    parser.add_argument("--mgsm", default=str(MGSM), help="MGSM file (default: ../shared/data/mgsm/mgsm.jsonl).")
    parser.add_argument("--budget_minutes", type=float, default=90.0, help="Warn when the estimate exceeds this.")
    parser.add_argument("--keep_models", action="store_true", help="Keep trained weights in --work_dir at the end.")
    parser.add_argument("--run", default=None, help=argparse.SUPPRESS)  # a child process: one training run
    return parser


INTEGER_FLAGS = ("train_problems", "val_problems", "test_problems", "steps", "batch_size", "slam_num_layers")


def resolve_settings(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Settings:
    """The defaults (`REAL` or `QUICK`) with the flags applied, checked before anything loads; a bad flag is one
    line on stderr and exit status 2 (`parser.error`)."""
    from slam_trainer.languages import validate_languages

    settings = QUICK if args.quick else REAL
    names = (*INTEGER_FLAGS, "world", "max_new_tokens", "mgsm_problems", "languages", "seeds", "l2_seeds")
    overrides = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    overrides.update(
        {name: tuple(overrides[name]) for name in ("languages", "seeds", "l2_seeds") if name in overrides}
    )
    rates = dict(settings.learning_rates)
    for item in args.lr:
        arm, _, values = item.partition("=")
        try:
            rates[arm] = tuple(float(value) for value in values.split(","))
        except ValueError:
            rates[arm] = ()
        if arm not in ARMS or not rates[arm] or min(rates[arm]) <= 0:
            parser.error(f"`--lr {item}`: give ARM=LR,LR,... with positive rates and ARM one of {', '.join(ARMS)}.")
    arms = ["full", *(arm for arm in args.arms or ARMS if arm != "full")]
    overrides["learning_rates"] = {arm: rates[arm] for arm in ARMS if arm in arms}
    settings = replace(settings, **overrides)
    try:
        validate_languages(list(settings.languages), argument="--languages", min_count=2)
    except ValueError as error:
        parser.error(str(error))
    if settings.languages[0] != "en":
        parser.error(
            "`--languages` must start with en (the pivot of the question translation and the retention check)."
        )
    for name in INTEGER_FLAGS:
        if getattr(settings, name) < 1:
            parser.error(f"`--{name}` must be at least 1, got {getattr(settings, name)}.")
    if settings.mgsm_problems < 0:
        parser.error(f"`--mgsm_problems` must be 0 (skip) or more, got {settings.mgsm_problems}.")
    return settings


def estimate_minutes(settings: Settings, scale: float) -> dict[str, float]:
    """Rough minutes per phase (see `STEP_SECONDS`), scaled by the model's size relative to SmolLM2-135M."""
    languages = len(settings.languages)
    val, test = languages * settings.val_problems, languages * settings.test_problems
    mgsm = languages * settings.mgsm_problems * 3  # longer questions and answers

    def run(arm, answers):
        return scale * (settings.steps * STEP_SECONDS[arm] + answers * ANSWER_SECONDS) + PROCESS_SECONDS

    seconds = {
        "base": scale * (3 * val + 2 * test + mgsm) * ANSWER_SECONDS * 2,  # few-shot prompts; it rarely stops early
        "sweep": sum(run(arm, val) for arm, rates in settings.learning_rates.items() for _ in rates),
        "other seeds": sum(run(arm, 0) for arm in settings.arms) * (len(settings.seeds) - 1),
        "L²": sum(run(arm, 2 * test) for arm in L2_ARMS) * len(settings.l2_seeds),
        "test+MGSM": len(settings.arms) * scale * (len(settings.seeds) * test + mgsm) * ANSWER_SECONDS,
    }
    return {phase: value / 60 for phase, value in seconds.items()}


def print_plan(settings: Settings, scale: float, budget_minutes: float) -> None:
    sweep = sum(len(rates) for rates in settings.learning_rates.values())
    seeds = len(settings.arms) * (len(settings.seeds) - 1)
    l2 = len(L2_ARMS) * len(settings.l2_seeds)
    runs = sweep + seeds + l2
    print(
        f"Plan: {sweep} sweep runs (seed {settings.seeds[0]}) + {seeds} runs at the selected rates (seeds "
        f"{list(settings.seeds[1:])}) + {l2} L² runs = {runs} training runs x {settings.steps} steps of batch "
        f"{settings.batch_size} ({runs * settings.steps} steps); {len(settings.languages)} languages, "
        f"{settings.val_problems} validation / {settings.test_problems} test problems each, MGSM "
        f"{settings.mgsm_problems} per language."
    )
    minutes = estimate_minutes(settings, scale)
    total = sum(minutes.values())
    print(
        "Estimated time: "
        + ", ".join(f"{phase} {value:.0f} min" for phase, value in minutes.items())
        + f"; total ~{total:.0f} min (2 quiet cores; a loaded machine is slower).",
        flush=True,
    )
    if total > budget_minutes:
        print(f"WARNING: the estimate exceeds the {budget_minutes:.0f}-minute budget; lower --steps or the grids.")


# -- resumable records --------------------------------------------------------------------------------------------


class RunLog:
    """`runs.jsonl`: one JSON record per finished unit of work, keyed, appended as soon as it exists, with the wall
    time since the previous one (so that the time of a run resumed over several invocations adds up)."""

    def __init__(self, path: Path):
        self.path = path
        self.last = time.perf_counter()
        self.records: dict[str, dict] = {}
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by an interruption: that unit runs again
                continue
            self.records[record["key"]] = record
        if text and not text.endswith("\n") or len(self.records) < len(text.splitlines()):
            # Rewrite without the cut line, so that the next record starts on a line of its own.
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.records.values()), "utf-8")

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def __getitem__(self, key: str) -> dict:
        return self.records[key]

    def add(self, record: dict) -> dict:
        now = time.perf_counter()
        record = {**record, "wall_seconds": round(now - self.last, 1)}
        self.last = now
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.records[record["key"]] = record
        return record


def check_work_dir(work: Path, model: str, settings: Settings) -> None:
    """Refuse to resume a work directory that was started with other settings (its runs would not compare)."""
    recorded = {"model": model, **json.loads(json.dumps(asdict(settings)))}
    path = work / "settings.json"
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
        differing = sorted(key for key in recorded.keys() | previous.keys() if recorded.get(key) != previous.get(key))
        if differing:
            raise SystemExit(
                f"bench_evidence: error: `--work_dir` {work} holds runs with other settings ({', '.join(differing)});"
                " pass a new --work_dir or delete it."
            )
    work.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(recorded, indent=2) + "\n", encoding="utf-8")


# -- data ---------------------------------------------------------------------------------------------------------


def write_jsonl(path: Path, rows) -> str:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def build_data(settings: Settings, data_dir: Path) -> dict[str, str]:
    """Training rows (with worked answers), validation and test problems, few-shot exemplars, as JSONL files.

    Validation and test problems are the held-out problems of `train_test_problems` (no (template, numbers) pair in
    common with training), split in two; held-out problems are distinct from each other, so the splits are disjoint.
    The data is drawn once (seed 0): seeds vary the training (order, LoRA initialisation), not the problems."""
    from slam_trainer.data.synthetic import problem_rows, train_test_problems

    train, held_out = train_test_problems(
        settings.train_problems,
        settings.val_problems + settings.test_problems,
        languages=list(settings.languages),
        seed=0,
        world=settings.world,
    )
    val, test = held_out[: settings.val_problems], held_out[settings.val_problems :]
    data_dir.mkdir(parents=True, exist_ok=True)
    question_only = ("id", "lang", "question", "answer")
    train_rows = problem_rows(train)
    return {
        "train": write_jsonl(data_dir / "train.jsonl", train_rows),
        "val": write_jsonl(data_dir / "val.jsonl", [{k: r[k] for k in question_only} for r in problem_rows(val)]),
        "test": write_jsonl(data_dir / "test.jsonl", [{k: r[k] for k in question_only} for r in problem_rows(test)]),
        "exemplars": write_jsonl(
            data_dir / "exemplars.jsonl",
            [{k: r[k] for k in ("lang", "question", "cot")} for r in problem_rows(train[: settings.few_shots])],
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


def setup(settings: Settings, base: str, work: Path) -> dict:
    """What every arm needs from the model: its layers, the auto layers (identified once, exactly as
    `slam_layers="auto"` does inside the trainer), the fixed random layers, the LoRA rank, the prompt style."""
    import torch

    from slam_trainer.freezing import plan_freeze
    from slam_trainer.loading import load_model_and_tokenizer
    from slam_trainer.probe.auto import resolve_auto_layers

    model, tokenizer = load_model_and_tokenizer(base, {"dtype": "float32", "device_map": None})
    num_layers = model.config.num_hidden_layers
    count = settings.slam_num_layers
    if count > num_layers:
        raise SystemExit(
            f"bench_evidence: error: `--slam_num_layers` {count} exceeds the model's {num_layers} layers."
        )
    auto, _ = resolve_auto_layers(model, tokenizer, None, count, str(work / "identify"))
    layers = {
        "auto": list(auto),
        "low": list(range(count)),
        "top": list(range(num_layers - count, num_layers)),
        "random": sorted(random.Random(RANDOM_LAYERS_SEED).sample(range(num_layers), count)),
    }
    slam_params = plan_freeze(model, layers["low"]).report.trainable_params
    # LoRA on every linear layer but the output head adds r x (in + out) parameters per layer: pick r to match SLAM.
    head = model.get_output_embeddings()
    per_rank = sum(
        module.in_features + module.out_features
        for module in model.modules()
        if isinstance(module, torch.nn.Linear) and module is not head
    )
    return {
        "key": "setup",
        "layers": layers,
        "num_layers": num_layers,
        "total_params": sum(p.numel() for p in model.parameters()),
        "lora_rank": max(1, round(slam_params / per_rank)),
        "prompt_style": "chat" if getattr(tokenizer, "chat_template", None) else "slam",
    }


# -- evaluation ---------------------------------------------------------------------------------------------------


def evaluate(
    spec: dict,
    model: str,
    data: str,
    out: Path,
    *,
    delta: str | None = None,
    limit: int | None = None,
    num_shots: int = 0,
    max_new_tokens: int | None = None,
    intervention: bool = False,
) -> dict[str, dict]:
    """Per run name (`baseline`, and `switch` with the intervention), per language: accuracy and tokens per correct
    answer, through the package's evaluation runner."""
    from slam_trainer.evaluation.runner import EvalSettings, InterventionSettings, run_evaluation

    settings = EvalSettings(
        model=model,
        data=data,
        languages=list(spec["languages"]),
        limit=limit,
        prompt_style=spec["prompt_style"],
        num_shots=num_shots,
        exemplars=spec["data"]["exemplars"] if num_shots else None,
        batch_size=spec["eval_batch_size"],
        max_new_tokens=max_new_tokens or spec["max_new_tokens"],
        delta=delta,
        dtype="float32",
        device="cpu",
    )
    results = run_evaluation(
        settings, out, intervention=InterventionSettings() if intervention else None, progress=False
    )
    return {
        result["run"]: {
            lang: {key: scores[key] for key in ("accuracy", "tokens_per_correct", "mean_tokens")}
            for lang, scores in result["scores"]["languages"].items()
        }
        for result in results
    }


# -- training (one subprocess per run) ----------------------------------------------------------------------------


def train_run(spec: dict) -> dict:
    """One training run in this (fresh) process: train, time the steps, read the peak RSS, save, validate."""
    import resource

    from datasets import Dataset
    from peft import LoraConfig
    from transformers import PrinterCallback, TrainerCallback

    from slam_trainer.config import SelectiveFFNConfig
    from slam_trainer.delta import save_ffn_delta
    from slam_trainer.l2.tags import add_language_tokens
    from slam_trainer.loading import load_model_and_tokenizer
    from slam_trainer.pipelines.training import TrainScriptArguments, build_trainer, build_training_data

    class StepTimer(TrainerCallback):
        """Wall time of each optimizer step (forward, backward, update)."""

        def __init__(self):
            self.seconds, self._start = [], 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self._start)

    run_dir = Path(spec["dir"])
    shutil.rmtree(run_dir, ignore_errors=True)  # a run cut short earlier starts again from nothing
    arm = spec["arm"]
    l2 = L2_ARMS.get(arm)
    arm_spec = ARMS.get(arm, {"trainer": "sft"})
    args = SelectiveFFNConfig(
        output_dir=str(run_dir / "trainer"),
        slam_layers=spec.get("layers") or "auto",
        max_steps=spec["steps"],
        per_device_train_batch_size=spec["batch_size"],
        learning_rate=spec["learning_rate"],
        lr_scheduler_type="cosine",
        warmup_steps=0.1,
        weight_decay=0.0,
        max_length=spec["max_length"],
        logging_steps=1,
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        save_strategy="no",
        report_to="none",
        seed=spec["seed"],
        disable_tqdm=True,
    )
    model, tokenizer = load_model_and_tokenizer(spec["base"], {"dtype": "float32", "device_map": None}, seed=args.seed)
    if l2:  # every language's tag, so that the intervention can steer even the English-only model
        add_language_tokens(tokenizer, model, list(spec["languages"]))
    script_args = TrainScriptArguments(
        dataset_format="parallel",
        languages=list((l2[0] if l2 else None) or spec["languages"]),
        l2_mode=l2[1] if l2 else "off",
        l2_special_tokens=bool(l2),
    )
    rows = [json.loads(line) for line in Path(spec["data"]["train"]).read_text(encoding="utf-8").splitlines()]
    train_dataset, collator = build_training_data(Dataset.from_list(rows), script_args, tokenizer, model, args)
    timer = StepTimer()
    callbacks = [timer]
    lora = None
    if arm_spec.get("lora"):
        rank = spec["lora_rank"]
        # alpha = 2 r and no dropout: ours. SLAM + LoRA replaces `target_modules` by the chosen FFN projections.
        lora = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules="all-linear")
    # as `slam train` wires it (an L² collator brings its own SFT settings and epoch callback)
    trainer = build_trainer(arm_spec["trainer"], model, args, train_dataset, collator, tokenizer, lora, callbacks)
    trainer.remove_callback(PrinterCallback)  # losses stay in `log_history`; the log is one line per run
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    started = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - started
    peak_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # before evaluation adds its own
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]

    weights = run_dir / "model"
    if arm_spec["trainer"] == "slam" and lora is None:  # only the trained FFN tensors, applied onto the base
        save_ffn_delta(trainer, str(weights))
        evaluated = {"model": spec["base"], "delta": str(weights)}
    else:
        trainer.save_model(str(weights))
        tokenizer.save_pretrained(str(weights))
        evaluated = {"model": str(weights), "delta": None}
    record = {
        "key": spec["key"],
        "arm": arm,
        "learning_rate": spec["learning_rate"],
        "seed": spec["seed"],
        "layers": spec.get("layers"),
        "trainable_params": trainable,
        "total_params": spec["total_params"],
        "step_seconds": statistics.median(timer.seconds[1:] or timer.seconds),
        "step_seconds_all": [round(s, 4) for s in timer.seconds],
        "peak_rss_bytes": peak_bytes,
        "train_seconds": round(train_seconds, 2),
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "weights": evaluated,
    }
    if l2:  # no selection: the test problems, with and without the decoding intervention
        test = evaluate(spec, **evaluated, data=spec["data"]["test"], out=run_dir / "test", intervention=True)
        steering = json.loads((run_dir / "test" / "switch" / "results.json").read_text(encoding="utf-8"))["steering"]
        record.update(test=test["baseline"], switch=test["switch"], steering=steering)
    elif spec["validate"]:  # a sweep run: its validation accuracy selects the arm's rate
        record["val"] = evaluate(spec, **evaluated, data=spec["data"]["val"], out=run_dir / "val")["baseline"]
    return record


def run_child(spec: dict, log: RunLog) -> dict:
    """Run `train_run(spec)` in a fresh Python process and log its record."""
    spec_dir = Path(spec["dir"]).parent / "specs"
    spec_dir.mkdir(parents=True, exist_ok=True)
    name = spec["key"].replace("/", "_")
    spec_path, result_path = spec_dir / f"{name}.json", spec_dir / f"{name}.result.json"
    spec_path.write_text(json.dumps({**spec, "result": str(result_path)}), encoding="utf-8")
    result_path.unlink(missing_ok=True)
    child = subprocess.run([sys.executable, os.path.abspath(__file__), "--run", str(spec_path)])
    if child.returncode != 0 or not result_path.exists():
        raise SystemExit(f"bench_evidence: error: run {spec['key']} failed (exit {child.returncode}); see above.")
    return log.add(json.loads(result_path.read_text(encoding="utf-8")))


# -- phases -------------------------------------------------------------------------------------------------------


class Progress:
    """Elapsed time and a remaining-time estimate that learns from the runs done so far."""

    def __init__(self, total_runs: int):
        self.total, self.done, self.started = total_runs, 0, time.perf_counter()

    def report(self, record: dict, summary: str) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.started
        left = elapsed / self.done * (self.total - self.done)
        print(
            f"[{self.done}/{self.total}] {record['key']}: {summary}; {record['step_seconds']:.2f} s/step, peak "
            f"{record['peak_rss_bytes'] / 2**30:.2f} GiB (elapsed {elapsed / 60:.1f} min, ~{left / 60:.0f} min left "
            "for training runs)",
            flush=True,
        )


def base_phase(spec: dict, settings: Settings, log: RunLog, work: Path, mgsm: str | None) -> dict:
    """The untrained model, zero-shot and few-shot: the prompt that scores better on validation is the base arm's; the
    test problems are evaluated with both (the other for context), MGSM zero-shot (as every trained arm)."""
    if "base" in log:
        return log["base"]
    out = work / "eval" / "base"
    val, test = {}, {}
    for shots in (0, settings.few_shots):
        for split, scores in (("val", val), ("test", test)):
            data, run_dir = spec["data"][split], out / f"{split}-{shots}shot"
            scores[str(shots)] = evaluate(spec, spec["base"], data, run_dir, num_shots=shots)["baseline"]
    shots = max((0, settings.few_shots), key=lambda n: (mean_accuracy(val[str(n)], settings.languages), -n))
    record = {"key": "base", "val": val, "test": test, "shots": shots}
    if mgsm:
        record["mgsm"] = evaluate(
            spec,
            spec["base"],
            mgsm,
            out / "mgsm",
            limit=settings.mgsm_problems,
            max_new_tokens=settings.mgsm_max_new_tokens,
        )["baseline"]
    scores = ", ".join(f"{lang} {value['accuracy']:.2f}" for lang, value in test[str(shots)].items())
    print(f"base: the {shots}-shot prompt scores best on validation; test accuracy {scores}", flush=True)
    return log.add(record)


def select_rate(arm: str, settings: Settings, log: RunLog) -> float:
    """The arm's learning rate with the best mean validation accuracy over all languages on the first seed (ties:
    the smaller rate)."""
    rates = settings.learning_rates[arm]
    seed = settings.seeds[0]
    return max(rates, key=lambda r: (mean_accuracy(log[train_key(arm, r, seed)]["val"], settings.languages), -r))


def training_phases(spec: dict, settings: Settings, log: RunLog, work: Path) -> dict[str, float]:
    """The LR sweep on the first seed, the other seeds at each arm's selected rate, then L²'s arms."""
    total = sum(len(r) for r in settings.learning_rates.values())
    total += len(settings.arms) * (len(settings.seeds) - 1) + len(L2_ARMS) * len(settings.l2_seeds)
    progress = Progress(total - sum(1 for key in log.records if key.startswith(("train/", "l2/"))))

    def train(arm, rate, seed, key, validate=False):
        if key in log:
            return log[key]
        layers_name = ARMS.get(arm, {}).get("layers")
        run_spec = {
            **spec,
            "key": key,
            "arm": arm,
            "learning_rate": rate,
            "seed": seed,
            "layers": spec["layers"][layers_name] if layers_name else None,
            "dir": str(work / "runs" / key.replace("/", "_")),
            "validate": validate,
        }
        record = run_child(run_spec, log)
        summary = f"loss {record['loss_first']:.2f} -> {record['loss_last']:.2f}"
        for split in ("val", "test"):
            if split in record:
                summary += f", {split} mean {mean_accuracy(record[split], record[split]):.2f}"
        progress.report(record, summary)
        return record

    for arm, rates in settings.learning_rates.items():
        for rate in rates:
            train(arm, rate, settings.seeds[0], train_key(arm, rate, settings.seeds[0]), validate=True)
    selected = {arm: select_rate(arm, settings, log) for arm in settings.arms}
    for arm, rate in selected.items():
        for seed in settings.seeds[1:]:
            train(arm, rate, seed, train_key(arm, rate, seed))
    for arm in L2_ARMS:
        for seed in settings.l2_seeds:
            train(arm, selected["full"], seed, l2_key(arm, seed))
    return selected


def final_evaluation(spec: dict, settings: Settings, selected: dict, log: RunLog, work: Path, mgsm) -> None:
    """The test problems for each arm's selected runs only (the test set never chooses anything); the MGSM slice for
    the first seed's run only (a look at transfer; its long questions cost several test problems each)."""
    for arm, rate in selected.items():
        for seed in settings.seeds:
            key = eval_key(arm, rate, seed)
            if key in log:
                continue
            weights = log[train_key(arm, rate, seed)]["weights"]
            out = work / "eval" / key.replace("/", "_")
            record = {
                "key": key,
                "test": evaluate(spec, **weights, data=spec["data"]["test"], out=out / "test")["baseline"],
            }
            if mgsm and seed == settings.seeds[0]:
                record["mgsm"] = evaluate(
                    spec,
                    **weights,
                    data=mgsm,
                    out=out / "mgsm",
                    limit=settings.mgsm_problems,
                    max_new_tokens=settings.mgsm_max_new_tokens,
                )["baseline"]
            log.add(record)
            print(f"{key}: test mean {mean_accuracy(record['test'], settings.languages):.2f}", flush=True)


# -- entry point --------------------------------------------------------------------------------------------------


def machine_info(load_before: float) -> dict:
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }


def quiet() -> None:
    """One line per run in a log that runs for an hour: no progress bars, warnings and errors only."""
    import datasets
    from transformers.utils import logging

    datasets.disable_progress_bars()
    logging.disable_progress_bar()
    logging.set_verbosity_error()


def main(argv: list[str] | None = None) -> None:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.run:  # a child process: one training run
        quiet()
        spec = json.loads(Path(args.run).read_text(encoding="utf-8"))
        record = train_run(spec)
        Path(spec["result"]).write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
        return

    settings = resolve_settings(args, parser)
    quiet()
    work = Path(args.work_dir or ("evidence-quick" if args.quick else "evidence-work")).resolve()
    results = Path(args.results_dir) if args.results_dir else work if args.quick else RESULTS_DIR
    mgsm = args.mgsm if settings.mgsm_problems and Path(args.mgsm).is_file() else None
    if settings.mgsm_problems and mgsm is None:
        print(f"MGSM not found at {args.mgsm}: the MGSM slice is skipped.")
    check_work_dir(work, args.model, settings)
    started, load_before = time.perf_counter(), os.getloadavg()[0]

    log = RunLog(work / "runs.jsonl")
    resumed = len(log.records)
    base = prepare_base(args.model, work)
    data = build_data(settings, work / "data")
    setup_record = log["setup"] if "setup" in log else log.add(setup(settings, base, work))
    spec = {
        "base": base,
        "data": data,
        "languages": list(settings.languages),
        "prompt_style": setup_record["prompt_style"],
        "eval_batch_size": settings.eval_batch_size,
        "max_new_tokens": settings.max_new_tokens,
        "steps": settings.steps,
        "batch_size": settings.batch_size,
        "max_length": settings.max_length,
        "lora_rank": setup_record["lora_rank"],
        "total_params": setup_record["total_params"],
        "layers": setup_record["layers"],
    }
    print(
        f"Layers: auto {setup_record['layers']['auto']}, random {setup_record['layers']['random']}; LoRA rank "
        f"{setup_record['lora_rank']}; prompts: {setup_record['prompt_style']}."
    )
    print_plan(settings, setup_record["total_params"] / 135e6, args.budget_minutes)

    base_phase(spec, settings, log, work, mgsm)
    selected = training_phases(spec, settings, log, work)
    final_evaluation(spec, settings, selected, log, work, mgsm)

    summary = summarise(settings, log.records, selected, list(L2_ARMS), mgsm is not None)
    summary.update(
        model=args.model,
        quick=args.quick,
        command="python benchmarks/bench_evidence.py " + " ".join(sys.argv[1:] if argv is None else argv),
        machine=machine_info(load_before),
        wall_seconds=round(sum(record["wall_seconds"] for record in log.records.values()), 1),
        invocation_seconds=round(time.perf_counter() - started, 1),
        resumed_records=resumed,
        budget_minutes=args.budget_minutes,
    )
    results.mkdir(parents=True, exist_ok=True)
    (results / "evidence.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (results / "evidence.md").write_text(markdown(summary), encoding="utf-8")
    plot(summary, results / "evidence.png")
    print(markdown(summary))
    print(f"Written: {results / 'evidence.md'}, evidence.json, evidence.png")
    if not args.keep_models:
        for run_dir in (work / "runs").glob("*/model"):
            shutil.rmtree(run_dir)


if __name__ == "__main__":
    main()
