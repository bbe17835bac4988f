"""The prompt a question becomes, in training and in evaluation alike, and the one rule that picks chat or plain.

Two formats, so that a model is evaluated through the prompt it was trained with:

- plain: SLAM's `Human: {question}\\nAssistant:` (the official SLAM code's); a training completion follows it as
  `" " + answer` (SLAM's rows) or as the L² chain;
- chat: the question as the single user turn of the tokenizer's chat template, then the assistant's generation prompt.

`uses_chat_template` is the choice between them everywhere: `slam train --prompt_format`, `L2DataCollator`,
`slam eval` (its `chat` style and `--chat_template`), the demo and the benchmarks. The default is chat when the
tokenizer has a chat template (ours). `slam eval`'s reproductions of other protocols (MathOctopus,
lm-evaluation-harness) keep their texts beside their reference code in `slam_trainer.evaluation`: nothing trains on
them, and tests/test_protocols.py checks them against the references' own text.
"""

from __future__ import annotations

import string

from slam_trainer.errors import ConfigError


SLAM_TEMPLATE = "Human: {question}\nAssistant:"


def uses_chat_template(
    tokenizer,
    requested: bool | None = None,
    *,
    asked_by: str = "`use_chat_template=True`",
    remedy: str = "`use_chat_template=False`",
) -> bool:
    """Whether prompts go through the tokenizer's chat template: `requested` when given (True needs a template),
    else whether the tokenizer has one. `asked_by` names the user's setting in the error, `remedy` the one that
    asks for plain prompts instead."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if requested is None:
        return has_template
    if requested and not has_template:
        raise ConfigError(
            f"{asked_by} asks for the chat template, but the tokenizer has none; use {remedy} (plain prompts), or "
            "give the tokenizer a chat template (`tokenizer.chat_template = ...`)."
        )
    return bool(requested)


def eval_style(chat: bool) -> str:
    """The `slam eval --prompt_style` that asks in the format training used: `chat` or `slam`."""
    return "chat" if chat else "slam"


def user_turn(text: str) -> list[dict]:
    """`text` as one user message, the way both formats' chat form holds a question."""
    return [{"role": "user", "content": text}]


def render_chat(tokenizer, messages: list[dict]) -> str:
    """`messages` through the tokenizer's chat template, ending with the assistant's generation prompt."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_text(question: str, tokenizer=None, *, chat: bool, template: str = SLAM_TEMPLATE) -> str:
    """The prompt of one question: its chat user turn rendered (`chat=True`), else `template` filled in."""
    return render_chat(tokenizer, user_turn(question)) if chat else template.format(question=question)


def check_template(name: str, template: str, field: str = "question") -> None:
    """A format string must hold `{field}` and no other field (`str.format` would fail mid-training otherwise)."""
    try:
        fields = {parsed for _, parsed, _, _ in string.Formatter().parse(template) if parsed is not None}
    except ValueError as error:
        raise ConfigError(f"`{name}` is not a valid format string ({error}): {template!r}.") from None
    if field not in fields:
        renamed = " (the field was called {instruction} before; rename it)" if "instruction" in fields else ""
        raise ConfigError(f"`{name}` must contain '{{{field}}}', got {template!r}{renamed}.")
    unknown = sorted(fields - {field})
    if unknown:
        raise ConfigError(
            f"`{name}` has field(s) {', '.join('{' + other + '}' for other in unknown)}; only {{{field}}} is filled "
            "in (write a literal brace as {{ or }})."
        )
    try:
        template.format(**{field: ""})
    except (ValueError, IndexError, KeyError, AttributeError) as error:
        raise ConfigError(f"`{name}` cannot be filled in ({error}): {template!r}.") from None
