"""L²'s decoding intervention: steer which language the next reasoning fragment uses by shifting language-tag logits.

The paper names three knobs — α (boost vs suppress), β (size of the logit shift) and k (act only when a language
token is among the k most likely) — but not the formula. This module is our reading of it:

1. A row is at a *step boundary* when its last token contains a newline (`boundary="newline"`, the default: L²'s
   fragments start on a new line, after cues like "Wait"), or at every position (`boundary="any"`).
2. At a boundary, when any language tag is among the row's `top_k` highest logits, the processor picks a target
   language (policy below) and, with probability `alpha`, adds `beta` to the target tag's logit (boost), otherwise
   subtracts `beta` from it (suppress). Elsewhere the logits pass through unchanged.
3. Target policies: `"fixed"` (always `target`), `"switch"` (uniformly one of `languages` other than the row's
   current language, which is the language of the last tag in the row's ids — prompt included — or any language
   when the row has no tag yet), `"weighted"` (a draw from `weights`).

Tags are the `slam_trainer.l2.tags` format (`<|zh|>` by default) and must each be ONE token of the tokenizer: add them
with `slam_trainer.add_language_tokens(tokenizer, model, languages)` (training with `L2DataCollator` needs the same),
which starts each new row at its language's name; plain mean-resized rows on a tied model do not learn. A tag that
splits into several tokens is an error, because shifting only its first token would also shift every text that starts
with that token.

State is derived from `input_ids` on every call, so it survives beam reordering, and each row of a batch (or each
beam) is decided on its own. `row_shifts` counts, per row, the steps at which a tag logit was shifted (reset it to
None before a new `generate`): a model that never ranks a tag in the `top_k` at a boundary, e.g. one whose tag
embeddings were never trained, is never steered, and the count says so (a row that has ended and is being padded
still counts where it triggers).

Random draws come from the processor's own seeded `torch.Generator`, one per row per step whether or not the row is
acted on, so a row's draws do not depend on the other rows.
"""

from __future__ import annotations

import math

import torch
from transformers import LogitsProcessor

from slam_trainer.errors import ConfigError, ModelError
from slam_trainer.l2.tags import DEFAULT_TAG_FORMAT, language_tag
from slam_trainer.languages import validate_languages


TARGET_POLICIES = ("fixed", "switch", "weighted")
BOUNDARIES = ("newline", "any")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class LanguageSwitchLogitsProcessor(LogitsProcessor):
    r"""
    [`LogitsProcessor`] that boosts or suppresses a target language's tag at step boundaries (L²'s α, β, k).

    Parameters:
        tokenizer (`PreTrainedTokenizerBase`):
            The model's tokenizer; every language's tag must be a single token in it.
        languages (`list[str]`):
            The languages whose tags the processor knows (and, for `"switch"`, chooses from).
        alpha (`float`, *optional*, defaults to `0.5`):
            Probability of boosting the target tag when triggered; otherwise it is suppressed. 1 always boosts,
            0 always suppresses.
        beta (`float`, *optional*, defaults to `2.0`):
            The logit shift added or subtracted. 0 disables the intervention.
        top_k (`int`, *optional*, defaults to `10`):
            Act only when some language tag is among the row's `top_k` most likely tokens.
        policy (`str`, *optional*, defaults to `"switch"`):
            How the target language is chosen: `"fixed"`, `"switch"` or `"weighted"` (see the module docstring).
        target (`str`, *optional*):
            The target language for `policy="fixed"`.
        weights (`list[float]`, *optional*):
            One non-negative weight per language for `policy="weighted"`.
        boundary (`str`, *optional*, defaults to `"newline"`):
            Where the processor may act: `"newline"` (after a token containing a newline) or `"any"` position.
        tag_format (`str`, *optional*, defaults to `"<|{lang}|>"`):
            The tag format (see `slam_trainer.l2.tags`).
        seed (`int`, *optional*, defaults to `0`):
            Seed of the processor's random generator.

    Example:

    ```python
    >>> processor = LanguageSwitchLogitsProcessor(tokenizer, ["en", "zh"], alpha=1.0, beta=4.0, policy="switch")
    >>> model.generate(**inputs, logits_processor=LogitsProcessorList([processor]))
    ```
    """

    def __init__(
        self,
        tokenizer,
        languages: list[str],
        *,
        alpha: float = 0.5,
        beta: float = 2.0,
        top_k: int = 10,
        policy: str = "switch",
        target: str | None = None,
        weights: list[float] | None = None,
        boundary: str = "newline",
        tag_format: str = DEFAULT_TAG_FORMAT,
        seed: int = 0,
    ):
        self.languages = validate_languages(languages)
        if not _is_number(alpha) or not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"`alpha` is a probability and must lie in [0, 1], got {alpha!r}.")
        if not (_is_number(beta) and math.isfinite(beta) and beta >= 0):
            raise ConfigError(
                f"`beta` is a logit shift size and must be a finite number >= 0, got {beta!r}; `alpha` picks the sign."
            )
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ConfigError(f"`top_k` must be a positive integer, got {top_k!r}.")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"`seed` must be an integer, got {seed!r}.")
        if boundary not in BOUNDARIES:
            raise ConfigError(f"`boundary` must be one of {', '.join(BOUNDARIES)}, got {boundary!r}.")
        self.alpha, self.beta, self.top_k, self.policy, self.boundary = alpha, float(beta), top_k, policy, boundary
        self._weights = self._policy_weights(policy, target, weights)

        vocab_size = len(tokenizer)
        tag_ids = []
        for lang in self.languages:
            tag = language_tag(lang, tag_format)
            ids = tokenizer.encode(tag, add_special_tokens=False)
            if len(ids) != 1:
                raise ConfigError(
                    f"The language tag {tag!r} is {len(ids)} tokens for this tokenizer; it must be one. Add the tags "
                    "with `slam_trainer.add_language_tokens(tokenizer, model, languages)` and train their rows."
                )
            tag_ids.append(ids[0])
        self.tag_ids = torch.tensor(tag_ids)
        # Token id -> index of its language in `languages`, -1 for other tokens.
        self._language_of_token = torch.full((vocab_size,), -1, dtype=torch.long)
        self._language_of_token[self.tag_ids] = torch.arange(len(tag_ids))
        pieces = tokenizer.batch_decode([[index] for index in range(vocab_size)])
        self._newline = torch.tensor(["\n" in piece for piece in pieces])
        self._on_device: dict[tuple[torch.device, int], tuple[torch.Tensor, ...]] = {}
        self.generator = torch.Generator().manual_seed(seed)
        self.row_shifts: torch.Tensor | None = None  # per row of the current generation: steps shifted

    def _policy_weights(self, policy: str, target: str | None, weights: list[float] | None) -> torch.Tensor | None:
        """The fixed per-language draw weights of `policy`; None for `"switch"`, whose weights depend on the row."""
        if policy not in TARGET_POLICIES:
            raise ConfigError(f"`policy` must be one of {', '.join(TARGET_POLICIES)}, got {policy!r}.")
        if (target is not None) != (policy == "fixed"):
            raise ConfigError("`target` is needed with `policy='fixed'` and only then.")
        if (weights is not None) != (policy == "weighted"):
            raise ConfigError("`weights` are needed with `policy='weighted'` and only then.")
        if policy == "fixed":
            if target not in self.languages:
                raise ConfigError(f"`target` {target!r} must be one of `languages` ({', '.join(self.languages)}).")
            return torch.nn.functional.one_hot(torch.tensor(self.languages.index(target)), len(self.languages)).float()
        if policy == "weighted":
            if not isinstance(weights, (list, tuple)):
                raise ConfigError(f"`weights` must be a list of numbers, one per language, got {weights!r}.")
            finite = all(_is_number(w) and math.isfinite(w) for w in weights)
            if len(weights) != len(self.languages) or not finite or min(weights) < 0 or sum(weights) <= 0:
                raise ConfigError(
                    f"`weights` must be {len(self.languages)} finite non-negative numbers (one per language) with a "
                    f"positive sum, got {weights}."
                )
            return torch.tensor(weights, dtype=torch.float)
        if len(self.languages) < 2:
            raise ConfigError("`policy='switch'` needs at least two `languages` to switch between.")
        return None

    def _buffers(self, device: torch.device, vocab_size: int) -> tuple[torch.Tensor, ...]:
        """The lookup tables on `device`, padded to the model's vocabulary (which may exceed the tokenizer's)."""
        key = (device, vocab_size)
        if key not in self._on_device:
            padding = max(0, vocab_size - len(self._newline))
            language_of_token = torch.nn.functional.pad(self._language_of_token, (0, padding), value=-1)
            newline = torch.nn.functional.pad(self._newline, (0, padding), value=False)
            self._on_device[key] = tuple(tensor.to(device) for tensor in (self.tag_ids, language_of_token, newline))
        return self._on_device[key]

    def current_language(self, input_ids: torch.LongTensor, vocab_size: int = 0) -> torch.LongTensor:
        """Per row, the index in `languages` of the last tag in `input_ids`, or -1 when the row has none."""
        _, language_of_token, _ = self._buffers(input_ids.device, vocab_size)
        languages = language_of_token[input_ids]
        # Position of the last tag; with no tag, the last position, whose value is then -1 (not a tag).
        last = input_ids.shape[1] - 1 - (languages >= 0).flip(-1).int().argmax(-1)
        return languages.gather(1, last[:, None]).squeeze(1)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.dim() != 2 or input_ids.dim() != 2 or input_ids.shape[0] != scores.shape[0]:
            raise ConfigError(
                f"Expected `input_ids` (batch, length) and `scores` (batch, vocabulary) with one batch size, got "
                f"shapes {tuple(input_ids.shape)} and {tuple(scores.shape)}."
            )
        if int(self.tag_ids.max()) >= scores.shape[-1]:
            raise ModelError(
                f"The scores cover {scores.shape[-1]} token ids but the language tags are ids up to "
                f"{int(self.tag_ids.max())}: the model was not resized for the tags. Add them "
                "with `slam_trainer.add_language_tokens(tokenizer, model, languages)` (and train their rows) before "
                "generating."
            )
        device = scores.device
        tag_ids, _, newline = self._buffers(device, scores.shape[-1])
        rows = scores.shape[0]
        # Two uniforms per row per step, drawn whether or not the row is acted on (row-independent streams).
        draws = torch.rand(rows, 2, generator=self.generator).to(device)

        top = scores.topk(min(self.top_k, scores.shape[-1]), dim=-1).indices
        triggered = torch.isin(top, tag_ids).any(dim=-1)
        if self.boundary == "newline":
            triggered &= newline[input_ids[:, -1]]

        if self._weights is None:  # switch: every language but the row's current one
            current = self.current_language(input_ids, scores.shape[-1])
            weights = torch.ones(rows, len(tag_ids), device=device)
            weights[current >= 0, current[current >= 0]] = 0.0
        else:
            weights = self._weights.to(device).expand(rows, -1)
        cdf = weights.cumsum(-1) / weights.sum(-1, keepdim=True)
        target = (draws[:, 1:] >= cdf).sum(-1).clamp(max=len(tag_ids) - 1)

        shift = torch.where(draws[:, 0] < self.alpha, self.beta, -self.beta) * triggered
        if self.row_shifts is None or self.row_shifts.shape != (rows,) or self.row_shifts.device != device:
            self.row_shifts = torch.zeros(rows, dtype=torch.long, device=device)
        self.row_shifts += (shift != 0).long()
        delta = torch.zeros_like(scores).scatter_(1, tag_ids[target][:, None], shift[:, None].to(scores.dtype))
        return scores + delta
