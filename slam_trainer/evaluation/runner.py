"""One evaluation run end to end: check everything, load, generate (resumably), score, write files.

Every input is checked before the model loads: the settings, the benchmark and exemplar files, the prompt lengths
against the model's context window, and the intervention's language tags against the tokenizer and the model's
vocabulary (read from its config). A run directory holds `settings.json` (what was asked; a resume must ask the same),
`predictions.jsonl` (every output, appended as it is made) and `results.json` (scores only, no timings, so an
interrupted and resumed run writes the same file as an uninterrupted one). With an intervention, the same invocation
runs the model twice — `baseline` and `switch` — so that token counts with and without the
`LanguageSwitchLogitsProcessor` come from one run.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from transformers.utils import logging

from slam_trainer.errors import ConfigError, ModelError
from slam_trainer.evaluation.benchmark import load_benchmark, load_exemplars
from slam_trainer.evaluation.generation import (
    GenerationStats,
    TransformersBackend,
    batch_order,
    generate_predictions,
    read_predictions,
)
from slam_trainer.evaluation.loading import resolve_device
from slam_trainer.evaluation.prompts import build_prompts, chat_end_of_turn, check_style, stop_strings
from slam_trainer.evaluation.scoring import judge, score_records
from slam_trainer.offline_models import file_sha256
from slam_trainer.prompts import uses_chat_template
from slam_trainer.resume import claim_settings, exclusive_lock, read_settings, write_json_atomic
from slam_trainer.seeding import SCHEME as SEED_SCHEME
from slam_trainer.seeding import example_seed


logger = logging.get_logger(__name__)

CONTEXT_OVERFLOW = ("error", "warn")


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
        do_sample (`bool`, defaults to `False`): Greedy decoding unless True (then drawn per example, see `seed`).
        temperature (`float`, defaults to `1.0`), top_p (`float`, defaults to `1.0`): Sampling settings.
        num_beams (`int`, defaults to `1`): Beam search when > 1 (greedy only).
        seed (`int`, defaults to `0`): Seeds each example's sampling draws and, per batch, the processor.
        tokenizer (`str`, *optional*): Tokenizer path when not the model's own.
        delta (`str`, *optional*): A saved FFN delta applied on top of `model`.
        dtype (`str`, defaults to `"auto"`), device (`str`, defaults to `"auto"`): See `evaluation.loading`.
        chat_template (`bool`, *optional*): Wrap prompts in the tokenizer's chat template; None (default) does when
            the tokenizer has one (`slam_trainer.prompts.uses_chat_template`), as lm-eval's `--apply_chat_template`
            would be used for a chat model.
        stop_strings (`list[str]`, *optional*): Text that ends an output besides end-of-sequence; None (default)
            uses the prompt style's (and the chat template's end of turn), `[]` none.
        context_overflow (`str`, defaults to `"error"`): A prompt plus `max_new_tokens` longer than the model's
            context window is an `"error"` (listing the rows) or a `"warn"`ing.
        trust_remote_code (`bool`, defaults to `False`): Run the model's own modelling code (arbitrary code from
            its folder or repo); needed only by models transformers does not implement.
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
    chat_template: bool | None = None
    stop_strings: list[str] | None = None
    context_overflow: str = "error"
    trust_remote_code: bool = False

    def __post_init__(self):
        for name in ("max_new_tokens", "batch_size", "num_beams", "num_shots", "seed", "limit"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"`{name}` must be an integer, got {value!r}.")
        if self.max_new_tokens <= 0:
            raise ConfigError(f"`max_new_tokens` must be a positive number of tokens, got {self.max_new_tokens}.")
        if self.batch_size <= 0:
            raise ConfigError(f"`batch_size` must be positive, got {self.batch_size}.")
        if self.num_beams < 1:
            raise ConfigError(f"`num_beams` must be at least 1, got {self.num_beams}.")
        if self.do_sample and self.num_beams > 1:
            raise ConfigError("`do_sample` with `num_beams` > 1 (beam sampling) is not supported; pick one.")
        if not (
            isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature) and self.temperature > 0
        ):
            raise ConfigError(f"`temperature` must be a positive number, got {self.temperature!r}.")
        if not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise ConfigError(f"`top_p` is a probability mass in (0, 1], got {self.top_p!r}.")
        check_style(self.prompt_style)
        if self.num_shots < 0:
            raise ConfigError(f"`num_shots` must be >= 0, got {self.num_shots}.")
        if self.num_shots and not self.exemplars:
            raise ConfigError("`num_shots` > 0 needs `exemplars`, e.g. ../shared/data/mgsm/exemplars.jsonl.")
        if self.chat_template is False and self.prompt_style == "chat":
            raise ConfigError(
                "`prompt_style='chat'` is the chat template itself; it cannot go with `chat_template=False`."
            )
        if self.stop_strings is not None and (
            isinstance(self.stop_strings, str) or not all(isinstance(s, str) and s for s in self.stop_strings)
        ):
            raise ConfigError(f"`stop_strings` must be a list of non-empty strings, got {self.stop_strings!r}.")
        if self.context_overflow not in CONTEXT_OVERFLOW:
            raise ConfigError(
                f"`context_overflow` must be one of {', '.join(CONTEXT_OVERFLOW)}, got {self.context_overflow!r}."
            )
        resolve_device(self.device)


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


@dataclass
class _Inputs:
    """Everything checked and built before the model loads."""

    rows: list[dict]
    languages: list[str]
    tokenizer: object
    config: object
    prompts: list[str]
    lengths: list[int]
    chat_template: bool
    end_of_turn: str | None
    stops: dict[str, list[str]]


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

    A run directory is resumed only by the same settings, data, prompts and model weights (their fingerprint,
    checked once the model is loaded); while a run writes, `output_dir` is locked against a second one.

    Parameters:
        settings (`EvalSettings`): The evaluation.
        output_dir (`str` or `Path`): Where runs are written; an existing run with the same settings is resumed.
        intervention (`InterventionSettings`, *optional*): Adds a `switch` run with the logits processor.
        skip_baseline (`bool`, defaults to `False`): With an intervention, run only `switch`.
        overwrite (`bool`, defaults to `False`): Delete existing run files instead of resuming them.
    """
    from slam_trainer.evaluation.loading import load_model

    if skip_baseline and intervention is None:
        raise ConfigError("`skip_baseline` leaves nothing to run without an intervention (`--switch_beta` etc.).")
    inputs = _prepare_inputs(settings)
    runs = _build_runs(settings, intervention, inputs, skip_baseline)
    recorded = {
        "chat_template_applied": inputs.chat_template,
        "stop_strings_used": inputs.stops,
        "data_sha256": file_sha256(settings.data),
        "prompts_sha256": hashlib.sha256(json.dumps(inputs.prompts, ensure_ascii=False).encode()).hexdigest(),
    }
    if settings.do_sample:  # resumed under other per-row seeds, a run would mix two draws
        recorded["sampling_seeds"] = SEED_SCHEME
    run_settings = {name: _run_settings(settings, name, intervention, recorded) for name, _ in runs}
    with exclusive_lock(output_dir):
        for name, recorded_settings in run_settings.items():
            run_dir = Path(output_dir) / name
            if overwrite and run_dir.exists():
                shutil.rmtree(run_dir)
            claim_settings(run_dir, recorded_settings, pending=("model_fingerprint",), write=False)

        model = load_model(
            settings.model,
            delta=settings.delta,
            tokenizer=inputs.tokenizer,  # a delta's L² tags (added to it already)
            dtype=settings.dtype,
            device=settings.device,
            trust_remote_code=settings.trust_remote_code,
        )
        fingerprint = weights_fingerprint(model)
        for name, recorded_settings in run_settings.items():  # the weights, checked now that they are loaded
            claim_settings(Path(output_dir) / name, {**recorded_settings, "model_fingerprint": fingerprint})
        return [
            _generate_run(settings, inputs, model, name, processors, Path(output_dir) / name, progress)
            for name, processors in runs
        ]


def weights_fingerprint(model) -> str:
    """SHA-256 over every parameter's name and shape and a strided sample of its values (rounded to bfloat16, so the
    same weights loaded in float32 or bfloat16 agree): another checkpoint in the same folder, a retrained model or an
    applied delta changes it, without hashing all of a 7B model (ours: 4,096 values per tensor)."""
    import torch

    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters(), key=lambda item: item[0]):
        flat = param.detach().reshape(-1)
        step = max(1, flat.numel() // 4096)
        sample = torch.cat([flat[::step], flat[-1:]]).to("cpu", torch.bfloat16).contiguous()
        digest.update(f"{name}:{list(param.shape)};".encode())
        digest.update(sample.view(torch.int16).numpy().tobytes())
    return "sha256-sampled-bf16:" + digest.hexdigest()


def _prepare_inputs(settings: EvalSettings) -> _Inputs:
    """Read and check the data, tokenizer and prompts (against the context window) before the model loads."""
    from slam_trainer.evaluation.loading import context_window, load_tokenizer, read_model_config

    rows = load_benchmark(settings.data, settings.languages, settings.limit)
    languages = list(dict.fromkeys(row["lang"] for row in rows))
    exemplars = load_exemplars(settings.exemplars, languages, settings.num_shots) if settings.num_shots else {}
    tokenizer = load_tokenizer(settings.model, settings.tokenizer, settings.trust_remote_code, delta=settings.delta)
    config = read_model_config(settings.model, settings.trust_remote_code, delta=settings.delta)  # with a delta's tags
    chat_style = settings.prompt_style == "chat"  # the chat template itself
    chat_template = uses_chat_template(
        tokenizer,
        True if chat_style else settings.chat_template,
        asked_by="`--prompt_style chat`" if chat_style else "`--chat_template on`",
        remedy="another `--prompt_style` (e.g. `slam`)" if chat_style else "`--chat_template off`",
    )
    prompts = build_prompts(
        rows,
        settings.prompt_style,
        tokenizer=tokenizer,
        exemplars=exemplars,
        chat_template=chat_template and not chat_style,
    )
    add_special_tokens = not chat_template  # a chat template writes its own BOS
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=add_special_tokens)["input_ids"]]
    check_context(rows, lengths, settings.max_new_tokens, context_window(config, tokenizer), settings.context_overflow)
    end_of_turn = chat_end_of_turn(tokenizer) if chat_template else None
    stops = _stop_strings(settings, languages, end_of_turn)
    return _Inputs(rows, languages, tokenizer, config, prompts, lengths, chat_template, end_of_turn, stops)


def _build_runs(settings: EvalSettings, intervention, inputs: _Inputs, skip_baseline: bool) -> list[tuple]:
    """(name, logits processors) per run: `baseline`, and `switch` with the intervention (its tags checked)."""
    from transformers import LogitsProcessorList

    from slam_trainer.l2.decoding import LanguageSwitchLogitsProcessor

    runs = [] if skip_baseline else [("baseline", None)]
    if intervention is not None:
        processor_kwargs = {key: value for key, value in asdict(intervention).items() if key != "languages"}
        processor = LanguageSwitchLogitsProcessor(
            inputs.tokenizer, intervention.languages or inputs.languages, seed=settings.seed, **processor_kwargs
        )
        if int(processor.tag_ids.max()) >= inputs.config.vocab_size:
            raise ModelError(
                f"The language tags are token ids up to {int(processor.tag_ids.max())} but the model has "
                f"{inputs.config.vocab_size} embedding rows: the tags were added to the tokenizer and the model was "
                "not resized. Add them with `slam_trainer.add_language_tokens(tokenizer, model, languages)` (and "
                "train their rows) before saving."
            )
        runs.append(("switch", LogitsProcessorList([processor])))
    return runs


def _generate_run(settings: EvalSettings, inputs: _Inputs, model, name, processors, run_dir: Path, progress) -> dict:
    """Generate the run's missing predictions (appended to `predictions.jsonl`), then score them."""
    backend = TransformersBackend(
        model,
        inputs.tokenizer,
        extra_eos_token_ids=_single_token_ids(inputs.tokenizer, inputs.end_of_turn),
        add_special_tokens=not inputs.chat_template,
        logits_processor=processors,
        max_new_tokens=settings.max_new_tokens,
        do_sample=settings.do_sample,
        temperature=settings.temperature,
        top_p=settings.top_p,
        num_beams=settings.num_beams,
    )
    rows = inputs.rows
    stats = generate_predictions(
        backend,
        rows,
        inputs.prompts,
        [example_seed(settings.seed, row["lang"], row["id"]) for row in rows],
        batch_order(rows, inputs.lengths, settings.batch_size),
        run_dir / "predictions.jsonl",
        stop_strings=inputs.stops,
        judge=lambda row, text: judge(
            text, row["answer"], row["lang"], question=row["question"], prompt_style=settings.prompt_style
        ),
        progress=progress,
    )
    return _write_results(run_dir, name, rows, stats, settings.prompt_style)


def check_context(
    rows: list[dict], lengths: list[int], max_new_tokens: int, window: int | None, on_overflow: str = "error"
) -> list[dict]:
    """The rows whose prompt plus `max_new_tokens` exceeds the context `window`; an error (or a warning) names them.

    Parameters:
        rows (`list[dict]`), lengths (`list[int]`):
            Benchmark rows and the token length of each one's prompt.
        max_new_tokens (`int`):
            The generation budget each row may use.
        window (`int`, *optional*):
            The model's context window; None skips the check.
        on_overflow (`str`, *optional*, defaults to `"error"`):
            `"error"` raises a `ValueError`, `"warn"` logs a warning and returns the rows.
    """
    if window is None:
        return []
    over = [
        {"lang": row["lang"], "id": row["id"], "prompt_tokens": length}
        for row, length in zip(rows, lengths)
        if length + max_new_tokens > window
    ]
    if over:
        per_language: dict[str, list[dict]] = {}
        for entry in over:
            per_language.setdefault(entry["lang"], []).append(entry)
        summary = "; ".join(
            f"{lang}: {len(entries)} row(s), prompts up to {max(e['prompt_tokens'] for e in entries):,} tokens "
            f"(ids {', '.join(str(e['id']) for e in entries[:5])}{', ...' if len(entries) > 5 else ''})"
            for lang, entries in per_language.items()
        )
        message = (
            f"{len(over)} prompt(s) plus `max_new_tokens` ({max_new_tokens}) exceed the model's context window of "
            f"{window:,} tokens and would be cut: {summary}. Lower `num_shots` or `max_new_tokens`, leave those "
            "languages out, or pass `context_overflow='warn'` to generate anyway."
        )
        if on_overflow == "error":
            raise ConfigError(message)
        logger.warning(message)
    return over


def _stop_strings(settings: EvalSettings, languages: list[str], end_of_turn: str | None) -> dict[str, list[str]]:
    """The stop sequences per language: the settings' own, or the style's plus the chat template's end of turn."""
    if settings.stop_strings is not None:
        return {lang: list(settings.stop_strings) for lang in languages}
    extra = [end_of_turn] if end_of_turn else []
    return {lang: list(dict.fromkeys(stop_strings(settings.prompt_style, lang) + extra)) for lang in languages}


def _single_token_ids(tokenizer, text: str | None) -> list[int]:
    """The token id of `text` (a chat template's end-of-turn marker) when it is one token, to end outputs like EOS."""
    encoded = tokenizer.encode(text, add_special_tokens=False) if text else []
    return encoded if len(encoded) == 1 else []


def _run_settings(
    settings: EvalSettings, name: str, intervention: InterventionSettings | None, resolved: dict
) -> dict:
    recorded = {"run": name, **asdict(settings), **resolved}
    if name == "switch":
        recorded["intervention"] = asdict(intervention)
    return recorded


def _write_results(run_dir: Path, name: str, rows: list[dict], stats: GenerationStats, prompt_style: str) -> dict:
    """Score the run's predictions (in benchmark order) into `results.json`; `stats` is reported, not stored."""
    by_key = {(record["lang"], record["id"]): record for record in read_predictions(run_dir / "predictions.jsonl")}
    records = [{**by_key[(row["lang"], row["id"])], "question": row["question"]} for row in rows]
    settings = read_settings(run_dir, "--output_dir")
    result = {"run": name, "settings": settings, "scores": score_records(records, prompt_style=prompt_style)}
    steered = [record["steered_steps"] for record in records if "steered_steps" in record]
    if steered:
        result["steering"] = {"rows": len(steered), "rows_steered": sum(s > 0 for s in steered), "steps": sum(steered)}
        if not any(steered):
            logger.warning(
                "The decoding intervention of run %r never acted: no language tag was among the `top_k` most likely "
                "tokens at any step boundary, so its outputs are the baseline's. The model has not learnt the tags "
                "(train with `l2_special_tokens` until it writes them), `top_k` is too small, or `beta` is 0.",
                name,
            )
    write_json_atomic(run_dir / "results.json", result)
    return {**result, "throughput": asdict(stats) | {"tokens_per_second": stats.tokens_per_second}}
