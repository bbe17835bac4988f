"""Tokenised, padded batches for the probe, one language per batch, parallel items kept whole.

**Parallel stays parallel.** A text longer than `max_length` tokens is never cut: the probe compares languages on
the same content, and a cut Telugu question (SmolLM2's tokenizer needs up to 1,656 tokens for an MGSM question that
takes 136 in English) is no longer the same content. Instead the whole item is dropped from every language, with a
warning that counts the over-long texts per language (our choice; raise `max_length` to keep them).

One language per batch keeps counting a single indexed add per layer. Within a language texts are sorted by
length so that batches carry little padding; the counts do not depend on the order. Padding and the tokenizer's
special tokens (BOS/EOS, shared by every language) are fed to the model but never counted: each batch carries a
`count_mask` beside the attention mask. Position ids follow the attention mask, so left and right padding give
every real token the same position. Each row also carries its item's bootstrap unit (`units`): items are dealt
round-robin into units whose counts are kept apart, so that the stability measure can resample them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from slam_trainer.errors import DataError
from slam_trainer.probe.parallel import ParallelTexts


@dataclass
class TokenizedParallel:
    """Token ids of the items kept, aligned across languages: `input_ids[lang][i]` is item `ids[i]`.

    Parameters:
        ids (`list`): the kept item ids.
        input_ids (`dict[str, list[list[int]]]`): per language, the token ids of each kept item.
        special (`dict[str, list[list[int]]]`): the matching special-tokens masks (1 = special, never counted).
        over_length (`dict[str, int]`): per language, how many items were longer than `max_length` (all dropped).
    """

    ids: list
    input_ids: dict[str, list[list[int]]]
    special: dict[str, list[list[int]]]
    over_length: dict[str, int]

    @property
    def languages(self) -> list[str]:
        return list(self.input_ids)


@dataclass
class ProbeBatch:
    """One forward pass worth of tokens, all in language `language` (an index into the probe's languages)."""

    language: int
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    count_mask: torch.Tensor
    units: torch.Tensor  # [batch] int64: the bootstrap unit of each row's item

    @property
    def num_tokens(self) -> int:
        return int(self.count_mask.sum())


def tokenize_parallel(tokenizer, parallel: ParallelTexts, *, max_length: int) -> TokenizedParallel:
    """Tokenise every language's texts; drop, from every language, the items longer than `max_length` in any.

    Raises:
        `ValueError`: no item fits in `max_length`, or a language has no token to count (special tokens only).
    """
    input_ids, special = {}, {}
    for lang, texts in parallel.texts.items():
        encoded = tokenizer(texts, return_special_tokens_mask=True)
        input_ids[lang], special[lang] = encoded["input_ids"], encoded["special_tokens_mask"]
    over = {lang: [len(row) > max_length for row in rows] for lang, rows in input_ids.items()}
    over_length = {lang: sum(flags) for lang, flags in over.items() if any(flags)}
    keep = [i for i in range(len(parallel.ids)) if not any(flags[i] for flags in over.values())]
    if over_length:
        counts = ", ".join(f"{lang} {n}" for lang, n in sorted(over_length.items(), key=lambda kv: -kv[1]))
        if not keep:
            raise DataError(
                f"Every probe item is longer than `max_length`={max_length} tokens in some language ({counts}); "
                "raise `max_length`."
            )
        warnings.warn(
            f"{len(parallel.ids) - len(keep)} of {len(parallel.ids)} probe items are longer than `max_length`="
            f"{max_length} tokens in some language (items over the limit per language: {counts}); they are dropped "
            "from every language so that the texts stay parallel. Raise `max_length` to keep them.",
            stacklevel=3,
        )
    tokenized = TokenizedParallel(
        ids=[parallel.ids[i] for i in keep],
        input_ids={lang: [rows[i] for i in keep] for lang, rows in input_ids.items()},
        special={lang: [rows[i] for i in keep] for lang, rows in special.items()},
        over_length=over_length,
    )
    for lang, rows in tokenized.special.items():
        if not any(s == 0 for row in rows for s in row):
            raise DataError(f"Language {lang!r} has no token to count: its texts tokenise to special tokens only.")
    return tokenized


def _pad(rows: list[list[int]], value: int, left: bool) -> torch.Tensor:
    width = max(len(row) for row in rows)
    padded = [[value] * (width - len(row)) + row if left else row + [value] * (width - len(row)) for row in rows]
    return torch.tensor(padded, dtype=torch.long)


def make_batches(tokenizer, tokenized: TokenizedParallel, *, batch_size: int = 8, units: int = 1) -> list[ProbeBatch]:
    """Group every language's token ids into padded batches.

    Parameters:
        tokenizer (`PreTrainedTokenizerBase`): the model's tokenizer; its `padding_side` decides where padding goes.
        tokenized (`TokenizedParallel`): from `tokenize_parallel`.
        batch_size (`int`, *optional*, defaults to `8`): texts per forward pass.
        units (`int`, *optional*, defaults to `1`): bootstrap units; item `i` belongs to unit `i % units`.
    """
    left = getattr(tokenizer, "padding_side", "right") == "left"
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batches = []
    for language, lang in enumerate(tokenized.languages):
        ids, special = tokenized.input_ids[lang], tokenized.special[lang]
        order = sorted((i for i in range(len(ids)) if ids[i]), key=lambda i: -len(ids[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            attention = _pad([[1] * len(ids[i]) for i in chunk], 0, left)
            countable = _pad([[1 - s for s in special[i]] for i in chunk], 0, left)
            batches.append(
                ProbeBatch(
                    language=language,
                    input_ids=_pad([ids[i] for i in chunk], pad_id, left),
                    attention_mask=attention,
                    position_ids=(attention.cumsum(-1) - 1).clamp(min=0),
                    count_mask=countable.bool(),
                    units=torch.tensor([i % units for i in chunk], dtype=torch.long),
                )
            )
    return batches
