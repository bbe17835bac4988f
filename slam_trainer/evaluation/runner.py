"""One evaluation run end to end: check the settings, load, generate (resumably), score, write files.

A run directory holds `settings.json` (what was asked; a resume must ask the same), `predictions.jsonl` (every
output, appended as it is made) and `results.json` (scores only, no timings, so an interrupted and resumed run writes
the same file as an uninterrupted one). With an intervention, the same invocation runs the model twice — `baseline`
and `switch` — so that token counts with and without the `LanguageSwitchLogitsProcessor` come from one run.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from slam_trainer.evaluation.benchmark import load_benchmark, load_exemplars
from slam_trainer.evaluation.generation import GenerationStats, generate_predictions, read_predictions
from slam_trainer.evaluation.prompts import PROMPT_STYLES, build_prompt
from slam_trainer.evaluation.scoring import score_records


@dataclass
class EvalSettings:
    """What to evaluate and how to generate. Checked on creation, before anything is loaded.

    Parameters:
        model (`str`): Hub id or local path of a causal LM, or a PEFT adapter directory.
        data (`str`): Benchmark JSONL file (`id`, `lang`, `question`, `answer`).
        languages (`list[str]`, *optional*): Languages to evaluate; all in `data` when None.
        limit (`int`, *optional*): First `limit` questions per language.
        prompt_style (`str`, defaults to `"mathoctopus"`): See `slam_trainer.evaluation.prompts.PROMPT_STYLES`.
        num_shots (`int`, defaults to `0`): Few-shot exemplars per prompt, read from `exemplars`.
        exemplars (`str`, *optional*): Exemplar JSONL file (`lang`, `question`, `cot`), e.g. MGSM's.
        batch_size (`int`, defaults to `8`): Prompts per `generate` call.
        max_new_tokens (`int`, defaults to `600`): As MathOctopus.
        do_sample (`bool`, defaults to `False`): Greedy decoding unless True.
        temperature, top_p (`float`): Sampling settings, used with `do_sample`.
        num_beams (`int`, defaults to `1`): Beam search when > 1.
        seed (`int`, defaults to `0`): Seeds sampling and the processor, per batch.
        tokenizer (`str`, *optional*): Tokenizer path when not the model's own.
        delta (`str`, *optional*): A saved FFN delta applied on top of `model`.
        dtype (`str`, defaults to `"auto"`), device (`str`, defaults to `"auto"`): See `evaluation.loading`.
    """

    model: str
    data: str
    languages: list[str] | None = None
    limit: int | None = None
    prompt_style: str = "mathoctopus"
    num_shots: int = 0
    exemplars: str | None = None
    batch_size: int = 8
    max_new_tokens: int = 600
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    num_beams: int = 1
    seed: int = 0
    tokenizer: str | None = None
    delta: str | None = None
    dtype: str = "auto"
    device: str = "auto"

    def __post_init__(self):
        if self.max_new_tokens <= 0:
            raise ValueError(f"`max_new_tokens` must be a positive number of tokens, got {self.max_new_tokens}.")
        if self.batch_size <= 0:
            raise ValueError(f"`batch_size` must be positive, got {self.batch_size}.")
        if self.num_beams < 1:
            raise ValueError(f"`num_beams` must be at least 1, got {self.num_beams}.")
        if self.prompt_style not in PROMPT_STYLES:
            raise ValueError(f"`prompt_style` must be one of {', '.join(PROMPT_STYLES)}, got {self.prompt_style!r}.")
        if self.num_shots < 0:
            raise ValueError(f"`num_shots` must be >= 0, got {self.num_shots}.")
        if self.num_shots and not self.exemplars:
            raise ValueError("`num_shots` > 0 needs `exemplars`, e.g. ../shared/data/mgsm/exemplars.jsonl.")

    def generate_kwargs(self) -> dict:
        kwargs = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample, "num_beams": self.num_beams}
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        else:  # silence generation_config sampling defaults that greedy decoding ignores
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs


@dataclass
class InterventionSettings:
    """`LanguageSwitchLogitsProcessor` arguments (see `slam_trainer.l2.decoding`); `languages` defaults to the
    evaluated languages."""

    alpha: float = 0.5
    beta: float = 2.0
    top_k: int = 10
    policy: str = "switch"
    target: str | None = None
    weights: list[float] | None = None
    boundary: str = "newline"
    languages: list[str] | None = field(default=None)


def run_evaluation(
    settings: EvalSettings,
    output_dir: str | Path,
    *,
    intervention: InterventionSettings | None = None,
    skip_baseline: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> list[dict]:
    """Evaluate, writing one directory per run under `output_dir`; returns each run's results (see `results.json`).

    Parameters:
        settings (`EvalSettings`): The evaluation.
        output_dir (`str` or `Path`): Where runs are written; an existing run with the same settings is resumed.
        intervention (`InterventionSettings`, *optional*): Adds a `switch` run with the logits processor.
        skip_baseline (`bool`, defaults to `False`): With an intervention, run only `switch`.
        overwrite (`bool`, defaults to `False`): Delete existing run files instead of resuming them.
    """
    from transformers import LogitsProcessorList

    from slam_trainer.evaluation.loading import load_model, load_tokenizer
    from slam_trainer.l2.decoding import LanguageSwitchLogitsProcessor

    if skip_baseline and intervention is None:
        raise ValueError("`skip_baseline` leaves nothing to run without an intervention (`--switch_beta` etc.).")
    rows = load_benchmark(settings.data, settings.languages, settings.limit)
    languages = list(dict.fromkeys(row["lang"] for row in rows))
    exemplars = load_exemplars(settings.exemplars, languages, settings.num_shots) if settings.num_shots else {}
    tokenizer = load_tokenizer(settings.model, settings.tokenizer)
    prompts = [
        build_prompt(
            row["question"],
            row["lang"],
            settings.prompt_style,
            tokenizer=tokenizer,
            exemplars=exemplars.get(row["lang"], []),
        )
        for row in rows
    ]
    runs = [] if skip_baseline else [("baseline", None)]
    if intervention is not None:
        processor_kwargs = {key: value for key, value in asdict(intervention).items() if key != "languages"}
        processor = LanguageSwitchLogitsProcessor(
            tokenizer, intervention.languages or languages, seed=settings.seed, **processor_kwargs
        )
        runs.append(("switch", LogitsProcessorList([processor])))
    run_dirs = [
        _prepare_run_dir(Path(output_dir) / name, _run_settings(settings, name, intervention), overwrite)
        for name, _ in runs
    ]

    model = load_model(settings.model, delta=settings.delta, dtype=settings.dtype, device=settings.device)
    results = []
    for (name, processors), run_dir in zip(runs, run_dirs):
        stats = generate_predictions(
            model,
            tokenizer,
            rows,
            prompts,
            run_dir / "predictions.jsonl",
            batch_size=settings.batch_size,
            seed=settings.seed,
            logits_processor=processors,
            add_special_tokens=settings.prompt_style != "chat",
            progress=progress,
            **settings.generate_kwargs(),
        )
        results.append(_write_results(run_dir, name, rows, stats))
    return results


def _run_settings(settings: EvalSettings, name: str, intervention: InterventionSettings | None) -> dict:
    recorded = {"run": name, **asdict(settings)}
    if name == "switch":
        recorded["intervention"] = asdict(intervention)
    return recorded


def _prepare_run_dir(run_dir: Path, recorded: dict, overwrite: bool) -> Path:
    """Create `run_dir`, or check that the run it holds asked for the same settings (so it can be resumed)."""
    settings_path = run_dir / "settings.json"
    if overwrite and run_dir.exists():
        shutil.rmtree(run_dir)
    if settings_path.exists():
        previous = json.loads(settings_path.read_text(encoding="utf-8"))
        differing = sorted(key for key in recorded.keys() | previous.keys() if recorded.get(key) != previous.get(key))
        if differing:
            raise ValueError(
                f"`output_dir` {run_dir} holds a run with other settings ({', '.join(differing)}); pass a new "
                "`--output_dir` or `--overwrite` to start again."
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    settings_path.write_text(json.dumps(recorded, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return run_dir


def _write_results(run_dir: Path, name: str, rows: list[dict], stats: GenerationStats) -> dict:
    """Score the run's predictions (in benchmark order) into `results.json`; `stats` is reported, not stored."""
    by_key = {(record["lang"], record["id"]): record for record in read_predictions(run_dir / "predictions.jsonl")}
    records = [by_key[(row["lang"], row["id"])] for row in rows]
    settings = json.loads((run_dir / "settings.json").read_text(encoding="utf-8"))
    result = {"run": name, "settings": settings, "scores": score_records(records)}
    (run_dir / "results.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return {**result, "throughput": asdict(stats) | {"tokens_per_second": stats.tokens_per_second}}
