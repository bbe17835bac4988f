"""`L2DataCollator`: L² training sequences built on the fly from parallel, step-aligned chains of thought.

Each example of the parallel schema (`slam_trainer.l2.parallel`) becomes, per draw, one prompt (the question in one
language) and one completion (every step, each in the language drawn for it, language runs opened by a tag). The
draw depends only on `(seed, epoch, example id)`: every epoch sees a new mixture, any epoch can be reproduced, and
DataLoader workers agree.

The completion is tokenized as one text, per draw: tags, steps and separators are written out and tokenized
together, so the training sequence is exactly what the tokenizer makes of the joined text (tokenizing each piece
alone differs where pieces merge, e.g. `' '` + `'Then'` into one `'▁Then'`/`'ĠThen'` token). The prompt is tokenized
alone, as a prompt is at generation time; `prepare` does that once per question language, checks the examples and
counts their step tokens for the `max_length` filter. One fast-tokenizer call per batch costs far less than a
training step (benchmarks/results/collator.md).

With a plain `trl.SFTTrainer`, pass the dataset unprepared by TRL and keep its columns; `configure_sft_args` sets
that (`SFT_CONFIG_SETTINGS`) and reconciles `max_length` with the trainer's:

    collator = L2DataCollator(tokenizer, languages=["en", "zh", "ja"])
    train_dataset = collator.prepare(parallel_dataset, num_proc=4)
    args = SFTConfig(...)
    collator.configure_sft_args(args)
    SFTTrainer(model, args=args, train_dataset=train_dataset, data_collator=collator,
               callbacks=[L2EpochCallback(collator)])
"""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase, TrainerCallback
from transformers.data.data_collator import DataCollatorMixin
from transformers.utils import logging

from slam_trainer.errors import ConfigError, DataError
from slam_trainer.l2.mixing import LanguageSchedule
from slam_trainer.l2.tags import DEFAULT_TAG_FORMAT, language_tag
from slam_trainer.languages import get_language, validate_languages
from slam_trainer.prompts import SLAM_TEMPLATE, check_template, prompt_text, uses_chat_template
from slam_trainer.seeding import example_seed


logger = logging.get_logger(__name__)

MODES = ("full", "mixed", "both")
QUESTION_LANGUAGES = ("same", "pivot", "random")


@dataclass(frozen=True)
class LanguageDraw:
    """The draw for one example: `kind` is `"full"` or `"mixed"`; one language per step."""

    kind: str
    question_language: str
    step_languages: tuple[str, ...]


@dataclass
class L2DataCollator(DataCollatorMixin):
    """Builds L² sequences (prompt + multilingual chain of thought) with the loss on the completion only.

    Parameters:
        tokenizer (`PreTrainedTokenizerBase`):
            Tokenizes prompts, steps and tags; its pad token (or else its EOS token) pads.
        languages (`list[str]`):
            The languages to draw from; every example must have each of them.
        mode (`str`, *optional*, defaults to `"mixed"`):
            `"full"`: the whole chain in one language drawn per example; `"mixed"`: L²'s step-wise mixture
            (see `slam_trainer.l2.mixing`); `"both"`: mixed with probability `mixed_ratio`, else full.
        mixed_ratio (`float`, *optional*, defaults to `0.5`):
            Share of mixed examples in mode `"both"` (ours; the paper does not give its ratio).
        switch_probability (`float`, *optional*, defaults to `0.3`):
            Share of step boundaries where a mixed chain changes language (ours).
        language_weights (`dict[str, float]`, *optional*):
            Share of steps (and of full chains) per language; uniform by default.
        question_language (`str`, *optional*, defaults to `"same"`):
            The prompt's language: `"same"` as the first step, `"pivot"` (always `pivot_language`), or `"random"`
            (drawn from the weights independently of the reasoning).
        pivot_language (`str`, *optional*, defaults to `"en"`):
            The question's language when `question_language="pivot"`.
        tag_format (`str` or `None`, *optional*, defaults to `"<|{lang}|>"`):
            Tag written before each run of steps in one language (also before a full chain); `None` writes no tags.
            Tags are plain text unless added as special tokens with `add_language_tokens`.
        use_chat_template (`bool`, *optional*):
            Format the prompt with the tokenizer's chat template (user turn + generation prompt); by default when
            the tokenizer has one, else `prompt_template` (`slam_trainer.prompts.uses_chat_template`).
        prompt_template (`str`, *optional*, defaults to `"Human: {question}\\nAssistant:"`):
            The plain prompt format: SLAM's, which `build_slam_training_set` and `slam eval --prompt_style slam` use
            too (`slam_trainer.prompts.SLAM_TEMPLATE`).
        step_separator (`str`, *optional*, defaults to `"\\n"`):
            Written between steps (ours).
        max_length (`int`, *optional*):
            `prepare` drops examples whose longest possible sequence is longer (and logs how many; the longest draw
            is counted step by step, which the joint tokenization can miss by a token at a step boundary); a longer
            sequence met at collation has its completion truncated with a warning. A prompt alone longer than this
            is an error, never a silent cut. When unset, `configure_sft_args` adopts the trainer's `max_length`
            (`SelectiveFFNTrainer` calls it); a larger value than the trainer's is refused there.
        padding_side (`str`, *optional*):
            `"right"` or `"left"`; the tokenizer's by default.
        pad_to_multiple_of (`int`, *optional*):
            Pad the batch length to a multiple of this (e.g. 8 for tensor cores).
        seed (`int`, *optional*, defaults to `42`):
            With `epoch` and the example's `id`, fixes every draw.
        epoch (`int`, *optional*, defaults to `0`):
            Set by `set_epoch` (or `L2EpochCallback`) so that each epoch draws a new mixture.
    """

    tokenizer: PreTrainedTokenizerBase
    languages: list[str]
    mode: str = "mixed"
    mixed_ratio: float = 0.5
    switch_probability: float = 0.3
    language_weights: dict[str, float] | None = None
    question_language: str = "same"
    pivot_language: str = "en"
    tag_format: str | None = DEFAULT_TAG_FORMAT
    use_chat_template: bool | None = None
    prompt_template: str = SLAM_TEMPLATE
    step_separator: str = "\n"
    max_length: int | None = None
    padding_side: str | None = None
    pad_to_multiple_of: int | None = None
    seed: int = 42
    epoch: int = 0
    return_tensors: str = "pt"

    # How `SelectiveFFNTrainer` (or a user) recognises a collator that consumes the raw parallel dataset, and the
    # `SFTConfig` settings that it needs: keep the `id`/`steps`/`prompt_ids` columns and skip TRL's preparation.
    requires_raw_dataset: ClassVar[bool] = True
    SFT_CONFIG_SETTINGS: ClassVar[dict[str, Any]] = {
        "remove_unused_columns": False,
        "dataset_kwargs": {"skip_prepare_dataset": True},
    }

    def __post_init__(self):
        self.languages = validate_languages(self.languages)
        self._check_types()
        if self.mode not in MODES:
            raise ConfigError(f"`mode` must be one of {', '.join(MODES)}, got {self.mode!r}.")
        if not 0.0 <= self.mixed_ratio <= 1.0:
            raise ConfigError(f"`mixed_ratio` must be in [0, 1], got {self.mixed_ratio}.")
        if self.question_language not in QUESTION_LANGUAGES:
            raise ConfigError(
                f"`question_language` must be one of {', '.join(QUESTION_LANGUAGES)}, got {self.question_language!r}."
            )
        get_language(self.pivot_language)
        weights = self.language_weights or {}
        unknown = sorted(set(weights) - set(self.languages))
        if unknown:
            raise ConfigError(
                f"`language_weights` names {', '.join(unknown)}, which are not in `languages` "
                f"{self.languages}; add them to `languages` or drop their weights."
            )
        self._schedule = LanguageSchedule(
            self.languages,
            [weights.get(lang, 0.0 if weights else 1.0) for lang in self.languages],
            self.switch_probability if self.mode != "full" and len(self.languages) > 1 else 0.0,
        )
        if self.mode != "full" and len(self.languages) == 1 and self.switch_probability > 0:
            logger.info("L2DataCollator: one language, so mixed chains never switch.")
        if self.padding_side is None:
            self.padding_side = self.tokenizer.padding_side
        if self.padding_side not in ("left", "right"):
            raise ConfigError(f"`padding_side` must be 'left' or 'right', got {self.padding_side!r}.")
        self._pad_id = self.tokenizer.pad_token_id
        if self._pad_id is None:
            self._pad_id = self.tokenizer.eos_token_id
        if self._pad_id is None:
            raise ConfigError("The tokenizer has neither a pad nor an EOS token; set `tokenizer.pad_token` first.")
        self.use_chat_template = uses_chat_template(self.tokenizer, self.use_chat_template)
        check_template("prompt_template", self.prompt_template)
        if self.tag_format:
            check_template("tag_format", self.tag_format, "lang")
        self._tags = {lang: language_tag(lang, self.tag_format) if self.tag_format else "" for lang in self.languages}
        self._tag_lengths = {lang: len(self._encode(tag)) for lang, tag in self._tags.items()}
        self._separator_length = len(self._encode(self.step_separator))
        eos = self.tokenizer.eos_token_id
        self._eos_ids = [] if eos is None else [eos]
        self._configured = False  # set by `configure_sft_args`: a trainer's `max_length` (or none) was adopted

    def _check_types(self) -> None:
        """Refuse at once the values that would otherwise fail (or silently misbehave) in the middle of training."""
        for name in ("max_length", "pad_to_multiple_of"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"`{name}` must be a positive integer or None, got {value!r}.")
        for name in ("seed", "epoch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"`{name}` must be an integer, got {value!r}.")
        for name in ("mixed_ratio", "switch_probability"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"`{name}` must be a number in [0, 1], got {value!r}.")
        for name in ("prompt_template", "step_separator"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"`{name}` must be a string, got {type(getattr(self, name)).__name__}.")
        if self.tag_format is not None and not isinstance(self.tag_format, str):
            raise ConfigError(f"`tag_format` must be a string or None, got {type(self.tag_format).__name__}.")
        if self.language_weights is not None and not isinstance(self.language_weights, dict):
            kind = type(self.language_weights).__name__
            raise ConfigError(f"`language_weights` must be a dict of language code to weight, got {kind}.")

    # -- tokenization, once per dataset ------------------------------------------------------------------------

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _prompt_ids(self, question: str) -> list[int]:
        text = prompt_text(question, self.tokenizer, chat=self.use_chat_template, template=self.prompt_template)
        # a chat template writes its own BOS; a plain prompt gets the tokenizer's, as at generation time
        return self.tokenizer(text, add_special_tokens=not self.use_chat_template)["input_ids"]

    @property
    def _question_languages(self) -> list[str]:
        if self.question_language == "pivot":
            return [self.pivot_language]
        return self.languages

    def tokenize_example(self, example: dict) -> dict:
        """`prompt_ids` per question language and `step_lengths` (tokens of each step alone) per language, for one
        parallel example, after checking it."""
        missing = [key for key in ("id", "question", "steps") if key not in example]
        if missing:
            raise DataError(
                f"An example is missing {', '.join(missing)}: L2DataCollator reads the parallel schema "
                "(id, question, steps) of `build_parallel_dataset`, or its `prepare`d form."
            )
        questions, steps = example["question"] or {}, example["steps"] or {}
        needed = [("steps", steps, lang) for lang in self.languages]
        needed += [("question", questions, lang) for lang in self._question_languages]
        for name, table, lang in needed:
            if table.get(lang) is None:
                raise DataError(
                    f"Example id {example['id']!r} has no {name} in language {lang!r}; drop it from "
                    "`languages` (or change `pivot_language`) or rebuild the dataset with it."
                )
        for lang in self.languages:
            _check_steps(example["id"], lang, steps[lang])
        for lang in self._question_languages:
            if not isinstance(questions[lang], str) or not questions[lang].strip():
                raise DataError(f"Example id {example['id']!r}: the question in {lang!r} is not a non-empty text.")
        counts = {lang: len(steps[lang]) for lang in self.languages}
        if len(set(counts.values())) != 1 or not next(iter(counts.values())):
            raise DataError(
                f"Example id {example['id']!r} has step counts {counts}; every language needs the same "
                "non-zero number of steps (validate with `build_parallel_dataset`)."
            )
        return {
            "prompt_ids": {lang: self._prompt_ids(questions[lang]) for lang in self._question_languages},
            "step_lengths": {lang: [len(self._encode(step)) for step in steps[lang]] for lang in self.languages},
        }

    def longest_length(self, example: dict) -> int:
        """The longest sequence any draw can build from a prepared example, counting each piece alone."""
        tag = max(self._tag_lengths.values())
        steps = list(zip(*(example["step_lengths"][lang] for lang in self.languages)))
        completion = sum(max(step) + tag for step in steps)
        completion += (len(steps) - 1) * self._separator_length + len(self._eos_ids)
        return max(len(example["prompt_ids"][lang]) for lang in self._question_languages) + completion

    def prepare(self, dataset, *, num_proc: int | None = None):
        """Check a parallel dataset and tokenize its prompts once (with `datasets.map` over `num_proc` processes)
        and, with `max_length`, drop the examples that could exceed it. Keeps `id`, `steps` and `answer`; replaces
        `question` by `prompt_ids` and adds `step_lengths`."""
        question_columns = [c for c in ("question",) if c in dataset.column_names]
        prepared = dataset.map(
            self.tokenize_example, num_proc=num_proc, remove_columns=question_columns, desc="Tokenizing L² prompts"
        )
        if self.max_length is not None:
            before = len(prepared)
            prepared = prepared.filter(lambda ex: self.longest_length(ex) <= self.max_length, num_proc=num_proc)
            if len(prepared) < before:
                logger.warning(
                    "L2DataCollator.prepare: dropped %d of %d examples that can exceed max_length=%d.",
                    before - len(prepared),
                    before,
                    self.max_length,
                )
            if len(prepared) == 0:
                raise ConfigError(f"Every example can exceed `max_length`={self.max_length}; raise it.")
        return prepared

    # -- sampling, per example and epoch -----------------------------------------------------------------------

    def configure_sft_args(self, args) -> None:
        """Apply `SFT_CONFIG_SETTINGS` to an `SFTConfig` in place (merging into an existing `dataset_kwargs`), and
        reconcile the two `max_length`s: TRL's truncation never runs on data it does not prepare, so the collator's
        limit is the only one. Unset, it becomes the trainer's; larger than the trainer's, it is refused."""
        for key, value in self.SFT_CONFIG_SETTINGS.items():
            setattr(args, key, {**(getattr(args, key) or {}), **value} if isinstance(value, dict) else value)
        self._configured = True
        trainer_max = getattr(args, "max_length", None)
        if trainer_max is None:
            return
        if self.max_length is None:
            self.max_length = trainer_max
            logger.info("L2DataCollator: no `max_length` given; using the trainer's `max_length`=%d.", trainer_max)
        elif self.max_length > trainer_max:
            raise ConfigError(
                f"L2DataCollator has `max_length`={self.max_length} but the trainer's `max_length`={trainer_max} "
                f"({type(args).__name__}): the trainer does not truncate what the collator builds, so sequences "
                "would exceed its limit. Give both the same value (or leave the collator's unset to adopt the "
                "trainer's)."
            )

    def set_epoch(self, epoch: int) -> None:
        """Draw a new mixture: called at each epoch start by `L2EpochCallback`."""
        self.epoch = int(epoch)

    def draw_languages(self, example: dict, num_steps: int) -> LanguageDraw:
        """The draw for `example` at the current seed and epoch."""
        rng = random.Random(example_seed(self.seed, self.epoch, example["id"]))
        mixed = self.mode == "mixed" or (self.mode == "both" and rng.random() < self.mixed_ratio)
        if mixed:
            step_languages = tuple(self._schedule.sample(num_steps, rng))
        else:
            step_languages = (self.languages[self._schedule.first(rng)],) * num_steps
        if self.question_language == "same":
            question = step_languages[0]
        elif self.question_language == "pivot":
            question = self.pivot_language
        else:
            question = self.languages[self._schedule.first(rng)]
        return LanguageDraw("mixed" if mixed else "full", question, step_languages)

    def completion_text(self, example: dict, draw: LanguageDraw) -> str:
        """The completion of a draw as text: each step in its language, a tag where a run of one language starts,
        the separator between steps (the end-of-sequence token is added as an id)."""
        parts, previous = [], None
        for index, lang in enumerate(draw.step_languages):
            if index:
                parts.append(self.step_separator)
            if lang != previous:
                parts.append(self._tags[lang])
            parts.append(example["steps"][lang][index])
            previous = lang
        return "".join(parts)

    def _draws(self, features: list[dict]) -> list[tuple[list[int], str]]:
        """(prompt ids, completion text) per example (raw examples are checked and their prompt tokenized here)."""
        draws = []
        for example in features:
            if "prompt_ids" not in example:
                example = {**example, **self.tokenize_example(example)}
            draw = self.draw_languages(example, len(example["steps"][self.languages[0]]))
            draws.append((list(example["prompt_ids"][draw.question_language]), self.completion_text(example, draw)))
        return draws

    def build(self, example: dict) -> tuple[list[int], list[int]]:
        """Prompt ids and completion ids of one (prepared or raw) example."""
        ((prompt, text),) = self._draws([example])
        return prompt, self._encode(text) + self._eos_ids

    def torch_call(self, features: list[dict]) -> dict[str, torch.Tensor]:
        return {key: torch.from_numpy(value) for key, value in self.numpy_call(features).items()}

    def numpy_call(self, features: list[dict]) -> dict[str, np.ndarray]:
        if not isinstance(features, (list, tuple)) or not features:
            got = "an empty batch" if isinstance(features, (list, tuple)) else type(features).__name__
            raise DataError(f"L2DataCollator takes a non-empty list of examples, got {got}.")
        draws = self._draws(features)  # a malformed example is named first
        if self.max_length is None and not self._configured:
            # The drop-in form (`SFTTrainer(..., data_collator=L2DataCollator(...))`) would build sequences of any
            # length: TRL does not truncate what it did not prepare, and the collator does not see the trainer.
            raise ConfigError(
                "L2DataCollator has no `max_length`: call `collator.configure_sft_args(args)` before building the "
                "trainer (it adopts the trainer's `max_length` and sets what SFTTrainer needs; SelectiveFFNTrainer "
                "calls it itself), or pass `max_length=` to the collator."
            )
        completions = self.tokenizer([text for _, text in draws], add_special_tokens=False)["input_ids"]
        sequences, truncated = [], []
        for example, (prompt, _), completion in zip(features, draws, completions):
            completion = completion + self._eos_ids
            if self.max_length is not None and len(prompt) + len(completion) > self.max_length:
                if len(prompt) >= self.max_length:
                    raise DataError(
                        f"Example id {example['id']!r}: the prompt alone has {len(prompt)} tokens, not "
                        f"less than `max_length`={self.max_length}; raise it or drop the example."
                    )
                completion = completion[: self.max_length - len(prompt)]
                truncated.append(example["id"])
            sequences.append((prompt, completion))
        if truncated:
            warnings.warn(
                f"L2DataCollator: truncated the completion of {len(truncated)} example(s) to "
                f"max_length={self.max_length} (ids {truncated[:5]}); `prepare` drops such examples "
                "ahead of training instead.",
                stacklevel=2,
            )
        length = max(len(p) + len(c) for p, c in sequences)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = np.full((len(sequences), length), self._pad_id, dtype=np.int64)
        labels = np.full((len(sequences), length), -100, dtype=np.int64)
        attention_mask = np.zeros((len(sequences), length), dtype=np.int64)
        for row, (prompt, completion) in enumerate(sequences):
            size = len(prompt) + len(completion)
            start = 0 if self.padding_side == "right" else length - size
            input_ids[row, start : start + size] = prompt + completion
            labels[row, start + len(prompt) : start + size] = completion
            attention_mask[row, start : start + size] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def _check_steps(example_id, lang: str, steps) -> None:
    """Steps must be a list of non-blank texts: a string would become one-character steps, a blank step an empty
    completion to learn."""
    if not isinstance(steps, (list, tuple)):
        kind = "a string (it would become one-character steps)" if isinstance(steps, str) else type(steps).__name__
        raise DataError(f"Example id {example_id!r}: `steps` in {lang!r} must be a list of texts, got {kind}.")
    blank = [index for index, step in enumerate(steps) if not isinstance(step, str) or not step.strip()]
    if blank:
        raise DataError(
            f"Example id {example_id!r}: step(s) {blank[:10]} in {lang!r} are empty, blank or not text; every step "
            "must say something (rebuild with `build_parallel_dataset`, which drops such examples)."
        )


class L2EpochCallback(TrainerCallback):
    """Tells an `L2DataCollator` which epoch starts, so each epoch draws a new (reproducible) mixture.

    DataLoader workers copy the collator when an epoch's iterator starts, so this reaches them unless the
    `Trainer` keeps workers alive across epochs (`dataloader_persistent_workers=True`).
    """

    def __init__(self, collator: L2DataCollator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        # `state.epoch` is the float progress (e.g. 1.5 when resuming mid-epoch); its floor is the epoch.
        self.collator.set_epoch(int((state.epoch or 0) + 1e-6))


def collator_callbacks(data_collator, args) -> list[TrainerCallback]:
    """The one wiring of an L² collator into a trainer (`SelectiveFFNTrainer` and a plain `SFTTrainer` alike): it
    builds sequences from the raw examples, so `SFTTrainer` must neither tokenize the dataset nor drop its columns
    (`configure_sft_args` sets that on `args`), and each epoch draws a new mixture (`L2EpochCallback`). Any other
    collator (or none) needs nothing: returns `[]`."""
    if not getattr(data_collator, "requires_raw_dataset", False):
        return []
    data_collator.configure_sft_args(args)
    return [L2EpochCallback(data_collator)]
