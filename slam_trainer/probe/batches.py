"""Tokenised, padded batches for the probe, one language per batch.

One language per batch keeps counting a single indexed add per layer. Within a language texts are sorted by
length so that batches carry little padding; the order of the counts does not depend on it. Padding and the
tokenizer's special tokens (BOS/EOS, shared by every language) are fed to the model but never counted: each batch
carries a `count_mask` beside the attention mask. Position ids follow the attention mask, so left and right
padding give every real token the same position.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from slam_trainer.probe.parallel import ParallelTexts


@dataclass
class ProbeBatch:
    """One forward pass worth of tokens, all in language `language` (an index into the probe's languages)."""

    language: int
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    count_mask: torch.Tensor

    @property
    def num_tokens(self) -> int:
        return int(self.count_mask.sum())


def _pad(rows: list[list[int]], value: int, left: bool) -> torch.Tensor:
    width = max(len(row) for row in rows)
    padded = [[value] * (width - len(row)) + row if left else row + [value] * (width - len(row)) for row in rows]
    return torch.tensor(padded, dtype=torch.long)


def make_batches(
    tokenizer, parallel: ParallelTexts, *, batch_size: int = 8, max_length: int = 256
) -> list[ProbeBatch]:
    """Tokenise every language's texts and group them into padded batches.

    Parameters:
        tokenizer (`PreTrainedTokenizerBase`): the model's tokenizer; its `padding_side` decides where padding goes.
        parallel (`ParallelTexts`): the aligned texts.
        batch_size (`int`, *optional*, defaults to `8`): texts per forward pass.
        max_length (`int`, *optional*, defaults to `256`): longer texts are truncated to this many tokens.

    Raises:
        `ValueError`: a language has no token to count (after dropping special tokens).
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be at least 1, got {batch_size}.")
    if max_length < 1:
        raise ValueError(f"`max_length` must be at least 1, got {max_length}.")
    left = getattr(tokenizer, "padding_side", "right") == "left"
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batches = []
    for language, (lang, texts) in enumerate(parallel.texts.items()):
        encoded = tokenizer(texts, truncation=True, max_length=max_length, return_special_tokens_mask=True)
        ids, special = encoded["input_ids"], encoded["special_tokens_mask"]
        if not any(s == 0 for row in special for s in row):
            raise ValueError(f"Language {lang!r} has no token to count: its texts tokenise to special tokens only.")
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        for start in range(0, len(order), batch_size):
            chunk = [i for i in order[start : start + batch_size] if ids[i]]
            if not chunk:
                continue
            attention = _pad([[1] * len(ids[i]) for i in chunk], 0, left)
            countable = _pad([[1 - s for s in special[i]] for i in chunk], 0, left)
            batches.append(
                ProbeBatch(
                    language=language,
                    input_ids=_pad([ids[i] for i in chunk], pad_id, left),
                    attention_mask=attention,
                    position_ids=(attention.cumsum(-1) - 1).clamp(min=0),
                    count_mask=countable.bool(),
                )
            )
    return batches
