"""Batched, resumable generation: every prediction is appended to a JSONL file and flushed as soon as it exists.

Rows are generated in batches of one language, longest prompt first (less padding, and a prompt that does not fit shows
at once). Each output ends at the first stop: the end-of-sequence token, or one of the prompt format's stop sequences
("\\nQuestion:", "<|im_end|>", ...), whose text is cut off as lm-evaluation-harness does; `num_tokens` counts the
generated tokens up to and including the one that completed the stop.

An interrupted run loses at most the batch in flight. On restart, a batch with rows missing from the file is generated
again whole (the same prompts, the same padding, the same seeds) and only its missing rows are written, so a resumed
run writes what an uninterrupted one writes. Sampling draws come from one generator per example
(`slam_trainer.evaluation.sampling`); a logits processor's own `generator` is seeded per batch.

The model sits behind a small backend interface (`GenerationBackend`): `TransformersBackend` runs `generate`; a vLLM
backend would implement the same `generate(prompts, seeds, stop_strings)` with `SamplingParams(seed=..., stop=...)`,
which vLLM applies per request.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from tqdm.auto import tqdm
from transformers.utils import logging

from slam_trainer.errors import ResumeError
from slam_trainer.evaluation.sampling import PerExampleSampler


logger = logging.get_logger(__name__)


@dataclass
class Completion:
    """One generated output: its text (before the stop), its token count (up to the stop) and what ended it."""

    text: str
    num_tokens: int
    stopped_by: str  # "eos", "stop" (a stop sequence) or "length" (max_new_tokens)
    steered_steps: int | None = None  # steps a processor with `row_shifts` steered, over all beams; None: none ran


@contextmanager
def contiguous_lm_head_input(model):
    """Hand the output layer a contiguous input while generating.

    `generate` computes the logits of the last position only, a strided slice of the hidden states. When the lm_head
    weight does not require grad (a merged LoRA adapter, a frozen model), `torch.matmul` runs that slice as a `bmm`
    against the weight expanded over the batch, which on CPU in bf16 copies the whole matrix once per prompt
    (pytorch/pytorch#151934): Gemma-3-270M generated 2.25-3.20x slower than in float32
    (benchmarks/results/precision.md). A contiguous input folds to one `mm`; the copy is one hidden vector per prompt.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    handle = head.register_forward_pre_hook(_contiguous_first_input) if head is not None else None
    try:
        yield
    finally:
        if handle is not None:
            handle.remove()


def _contiguous_first_input(module, args):
    if args and isinstance(args[0], torch.Tensor) and not args[0].is_contiguous():
        return (args[0].contiguous(), *args[1:])
    return None


class GenerationBackend(Protocol):
    """What the evaluation needs from an inference engine."""

    def generate(self, prompts: list[str], seeds: list[int], stop_strings: list[str]) -> list[Completion]:
        """One completion per prompt, each ending at end-of-sequence or at the first of `stop_strings`; `seeds` seed
        each prompt's sampling (unused by greedy decoding)."""


@dataclass
class GenerationStats:
    """What this call generated (rows resumed from the file are not counted)."""

    rows: int = 0
    tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


class TransformersBackend:
    """`model.generate` on left-padded batches, with stop sequences and per-example sampling.

    Parameters:
        model (`PreTrainedModel`), tokenizer (`PreTrainedTokenizerBase`):
            The model and its left-padding tokenizer (see `slam_trainer.evaluation.loading`).
        extra_eos_token_ids (`list[int]`, *optional*):
            Token ids that end an output besides the model's `generation_config.eos_token_id` (e.g. a chat
            template's end-of-turn token).
        add_special_tokens (`bool`, *optional*, defaults to `True`):
            Whether tokenizing a prompt adds the tokenizer's special tokens (BOS); False for chat-template prompts.
        logits_processor (`LogitsProcessorList`, *optional*):
            E.g. with a `LanguageSwitchLogitsProcessor`; a processor's `generator` is seeded with the batch's first
            example seed, and a processor with `row_shifts` (steps it steered per row) has it read into each
            completion's `steered_steps`.
        max_new_tokens (`int`), do_sample (`bool`), temperature (`float`), top_p (`float`), num_beams (`int`):
            Decoding settings (sampling draws per example, see `PerExampleSampler`).
    """

    def __init__(
        self,
        model,
        tokenizer,
        *,
        extra_eos_token_ids: list[int] = (),
        add_special_tokens: bool = True,
        logits_processor=None,
        max_new_tokens: int = 600,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        num_beams: int = 1,
    ):
        self.model, self.tokenizer = model, tokenizer
        eos = model.generation_config.eos_token_id
        eos_token_ids = [eos] if isinstance(eos, int) else list(eos or [tokenizer.eos_token_id])
        self.eos_token_ids = list(dict.fromkeys(eos_token_ids + list(extra_eos_token_ids)))
        self.add_special_tokens = add_special_tokens
        self.processors = list(logits_processor or [])
        self.max_new_tokens, self.do_sample, self.num_beams = max_new_tokens, do_sample, num_beams
        self.temperature, self.top_p = temperature, top_p
        self._stop_criteria: dict[tuple[str, ...], object] = {}  # built once per stop list: each build reads the vocab

    def generate(self, prompts: list[str], seeds: list[int], stop_strings: list[str]) -> list[Completion]:
        from transformers import LogitsProcessorList, StoppingCriteriaList, StopStringCriteria

        for processor in self.processors:
            if isinstance(getattr(processor, "generator", None), torch.Generator):
                processor.generator.manual_seed(seeds[0])
        steering = [processor for processor in self.processors if hasattr(processor, "row_shifts")]
        for processor in steering:
            processor.row_shifts = None
        processors = LogitsProcessorList(self.processors)
        if self.do_sample:
            processors.append(PerExampleSampler(seeds, self.temperature, self.top_p))
        key = tuple(stop_strings)
        if key and key not in self._stop_criteria:
            self._stop_criteria[key] = StopStringCriteria(self.tokenizer, list(key))
        inputs = self.tokenizer(
            prompts, return_tensors="pt", padding=True, add_special_tokens=self.add_special_tokens
        ).to(self.model.device)
        with torch.inference_mode(), contiguous_lm_head_input(self.model):
            output = self.model.generate(
                **inputs,
                logits_processor=processors,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,  # sampling, when asked, is PerExampleSampler's draw
                num_beams=self.num_beams,
                temperature=None,
                top_p=None,
                top_k=None,
                eos_token_id=self.eos_token_ids,
                pad_token_id=self.tokenizer.pad_token_id,
                stopping_criteria=StoppingCriteriaList([self._stop_criteria[key]] if key else []),
            )
        generated = output[:, inputs["input_ids"].shape[1] :].tolist()
        completions = [self._complete(tokens, stop_strings) for tokens in generated]
        if steering:  # per prompt, summed over its beams (rows are prompt-major)
            shifts = [processor.row_shifts for processor in steering if processor.row_shifts is not None]
            per_prompt = [int(s) for s in sum(shifts).view(len(prompts), -1).sum(-1)] if shifts else [0] * len(prompts)
            for completion, steps in zip(completions, per_prompt):
                completion.steered_steps = steps
        return completions

    def _complete(self, tokens: list[int], stop_strings: list[str]) -> Completion:
        """The output up to its first stop, with the number of tokens generated up to and including the stop."""
        ends = set(self.eos_token_ids) | {self.tokenizer.pad_token_id}  # finished rows are padded after their stop
        end = next((index for index, token in enumerate(tokens) if token in ends), None)
        tokens = tokens if end is None else tokens[:end]
        text = self._decode(tokens)
        if cut_at_stops(text, stop_strings) != text:
            # The fewest tokens whose text already holds a stop sequence (holding one only grows with more tokens).
            low, high = 1, len(tokens)
            while low < high:
                middle = (low + high) // 2
                held = any(stop in self._decode(tokens[:middle]) for stop in stop_strings)
                low, high = (low, middle) if held else (middle + 1, high)
            return Completion(cut_at_stops(text, stop_strings), low, "stop")
        if end is not None:
            return Completion(text, end + 1, "eos")
        return Completion(text, len(tokens), "length")

    def _decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=False)


def cut_at_stops(text: str, stop_strings: list[str]) -> str:
    """`text` before the first of `stop_strings` it holds (lm-eval's `until`: the stop itself is not kept)."""
    ends = [text.find(stop) for stop in stop_strings if stop and stop in text]
    return text[: min(ends)] if ends else text


def read_predictions(path: str | Path) -> list[dict]:
    """The records of a predictions file. A last line cut short by a kill (no newline: half a record, or half a UTF-8
    character) is cut off the file, so that appended records start on a fresh line; a damaged complete line is a
    `ResumeError` naming it, since the file was edited or another writer mixed into it."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    complete = data.rfind(b"\n") + 1  # everything up to the last newline was written whole
    if complete < len(data):
        with path.open("r+b") as handle:
            handle.truncate(complete)
        logger.warning("%s: removed a last line cut short by an interrupted write; its row is generated again.", path)
    records = []
    for number, line in enumerate(data[:complete].split(b"\n")[:-1], start=1):
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            record = None
        if not isinstance(record, dict) or not {"id", "lang"} <= record.keys():
            raise ResumeError(
                f"{path}:{number}: not a prediction record (the file was edited or damaged); delete the line, or pass "
                "--overwrite to start the run again."
            )
        records.append(record)
    return records


def json_line(record: dict) -> str:
    """One JSONL line; NaN and infinities are refused (they are not JSON)."""
    return json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n"


def batch_order(rows: list[dict], prompt_lengths: list[int], batch_size: int) -> list[list[int]]:
    """Batches of row indices: one language each, longest prompt first within the language."""
    batches = []
    for lang in dict.fromkeys(row["lang"] for row in rows):
        indices = sorted((i for i, row in enumerate(rows) if row["lang"] == lang), key=lambda i: -prompt_lengths[i])
        batches += [indices[start : start + batch_size] for start in range(0, len(indices), batch_size)]
    return batches


def generate_predictions(
    backend: GenerationBackend,
    rows: list[dict],
    prompts: list[str],
    seeds: list[int],
    batches: list[list[int]],
    path: str | Path,
    *,
    stop_strings: dict[str, list[str]] | None = None,
    judge=None,
    progress: bool = True,
) -> GenerationStats:
    """Generate an output for every row not yet in `path`, appending one JSON record per row.

    Parameters:
        backend (`GenerationBackend`):
            The inference engine.
        rows (`list[dict]`), prompts (`list[str]`), seeds (`list[int]`):
            Benchmark rows (`id`, `lang`, `answer`), their prompts and their sampling seeds, in the same order.
        batches (`list[list[int]]`):
            Row indices per batch (see `batch_order`); a batch with a missing row is generated whole.
        path (`str` or `Path`):
            The predictions JSONL file; records already there are kept and their rows skipped.
        stop_strings (`dict[str, list[str]]`, *optional*):
            Stop sequences per language (a batch holds one language).
        judge (`callable`, *optional*):
            `judge(row, text) -> dict` of verdict fields added to each record (prediction, correctness, ...).
    """
    done = {(record["lang"], record["id"]) for record in read_predictions(path)}
    pending = [batch for batch in batches if any((rows[i]["lang"], rows[i]["id"]) not in done for i in batch)]
    stats = GenerationStats()
    with open(path, "a", encoding="utf-8") as handle:
        for batch in tqdm(pending, desc="generating", unit="batch", disable=not progress):
            started = time.perf_counter()
            stops = (stop_strings or {}).get(rows[batch[0]]["lang"], [])
            completions = backend.generate([prompts[i] for i in batch], [seeds[i] for i in batch], stops)
            stats.seconds += time.perf_counter() - started
            for index, completion in zip(batch, completions):
                row = rows[index]
                if (row["lang"], row["id"]) in done:
                    continue
                record = {
                    "id": row["id"],
                    "lang": row["lang"],
                    "answer": row["answer"],
                    "output": completion.text,
                    "num_tokens": completion.num_tokens,
                    "stopped_by": completion.stopped_by,
                    **({} if completion.steered_steps is None else {"steered_steps": completion.steered_steps}),
                    **(judge(row, completion.text) if judge else {}),
                }
                handle.write(json_line(record))
                handle.flush()
                stats.rows += 1
                stats.tokens += completion.num_tokens
    return stats
