"""Batched, resumable generation: every prediction is appended to a JSONL file and flushed as soon as it exists.

An interrupted run loses at most the batch in flight: on restart the rows already in the file are skipped. Batches
are cut from the full row list (not from the rows still to do) and each batch starts its random generators from
`seed + batch index`, so a resumed run builds the same batches with the same draws as an uninterrupted one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from slam_trainer.evaluation.scoring import judge


@dataclass
class GenerationStats:
    """What this call generated (rows resumed from the file are not counted)."""

    rows: int = 0
    tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def read_predictions(path: str | Path) -> list[dict]:
    """The complete records of a predictions file; a line cut short by an interruption is dropped from the file."""
    path = Path(path)
    if not path.exists():
        return []
    records, clean = [], True
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            clean = False
        clean = clean and line.endswith("\n")
    if not clean:  # rewrite so that appended records start on a fresh line
        path.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records), encoding="utf-8")
    return records


def count_generated(tokens: torch.Tensor, eos_token_ids: list[int]) -> tuple[list[int], list[bool]]:
    """Per row, the generated tokens up to and including the first end-of-sequence token (all when there is none),
    and whether the row ended with one. Padding after the end is not counted."""
    is_eos = torch.isin(tokens, torch.tensor(eos_token_ids, device=tokens.device))
    ended = is_eos.any(-1)
    counts = torch.where(ended, is_eos.int().argmax(-1) + 1, tokens.shape[1])
    return counts.tolist(), ended.tolist()


def generate_predictions(
    model,
    tokenizer,
    rows: list[dict],
    prompts: list[str],
    path: str | Path,
    *,
    batch_size: int = 8,
    seed: int = 0,
    logits_processor=None,
    add_special_tokens: bool = True,
    progress: bool = True,
    **generate_kwargs,
) -> GenerationStats:
    """Generate an output for every row not yet in `path`, appending one JSON record per row.

    Parameters:
        model (`PreTrainedModel`), tokenizer (`PreTrainedTokenizerBase`):
            The model and its left-padding tokenizer (see `slam_trainer.evaluation.loading`).
        rows (`list[dict]`), prompts (`list[str]`):
            Benchmark rows (`id`, `lang`, `answer`) and their prompts, in the same order.
        path (`str` or `Path`):
            The predictions JSONL file; records already there are kept and their rows skipped.
        batch_size (`int`, *optional*, defaults to `8`):
            Prompts per `generate` call.
        seed (`int`, *optional*, defaults to `0`):
            Batch `i` seeds torch and every processor's `generator` with `seed + i`.
        logits_processor (`LogitsProcessorList`, *optional*):
            Passed to `generate`, e.g. with a `LanguageSwitchLogitsProcessor`.
        add_special_tokens (`bool`, *optional*, defaults to `True`):
            Whether tokenizing a prompt adds the tokenizer's special tokens (BOS); False for chat-template prompts,
            which already hold them.
        generate_kwargs:
            Passed to `generate` (`max_new_tokens`, `do_sample`, `num_beams`, ...).
    """
    done = {(record["lang"], record["id"]) for record in read_predictions(path)}
    batches = [range(start, min(start + batch_size, len(rows))) for start in range(0, len(rows), batch_size)]
    pending = [
        (index, [i for i in batch if (rows[i]["lang"], rows[i]["id"]) not in done])
        for index, batch in enumerate(batches)
    ]
    pending = [(index, members) for index, members in pending if members]
    eos = model.generation_config.eos_token_id
    eos_ids = [eos] if isinstance(eos, int) else list(eos or [tokenizer.eos_token_id])
    stats = GenerationStats()
    with open(path, "a", encoding="utf-8") as handle:
        for index, members in tqdm(pending, desc="generating", unit="batch", disable=not progress):
            torch.manual_seed(seed + index)
            for processor in logits_processor or []:
                if isinstance(getattr(processor, "generator", None), torch.Generator):
                    processor.generator.manual_seed(seed + index)
            inputs = tokenizer(
                [prompts[i] for i in members], return_tensors="pt", padding=True, add_special_tokens=add_special_tokens
            ).to(model.device)
            started = time.perf_counter()
            with torch.inference_mode():
                output = model.generate(
                    **inputs, logits_processor=logits_processor, pad_token_id=tokenizer.pad_token_id, **generate_kwargs
                )
            generated = output[:, inputs["input_ids"].shape[1] :]
            counts, ends = count_generated(generated, eos_ids)
            stats.seconds += time.perf_counter() - started
            for row_index, tokens, count, ended in zip(members, generated, counts, ends):
                row = rows[row_index]
                text = tokenizer.decode(tokens[: count - 1 if ended else count], skip_special_tokens=False)
                record = {
                    "id": row["id"],
                    "lang": row["lang"],
                    "answer": row["answer"],
                    "output": text,
                    "num_tokens": count,
                    **judge(text, row["answer"], row["lang"]),
                }
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                handle.flush()
                stats.rows += 1
                stats.tokens += count
    return stats
