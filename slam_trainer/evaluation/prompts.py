"""Prompt styles: the prompt text, the stop sequences and the reference's own answer rule of each evaluation protocol.

- `mathoctopus` (default): MathOctopus's Alpaca-style instruction; stops at the template's own markers
  `\n### Instruction:` and `\n### Response:` (ours: MathOctopus stops only at end-of-sequence); reference rule:
  MathOctopus's last number;
- `slam`: `Human: {q}\nAssistant:`, SLAM's training format (`slam_trainer.prompts.SLAM_TEMPLATE`); stops at
  `\nHuman:` (ours); reference rule: the last number (SLAM evaluates with MathOctopus's script);
- `chat`: the tokenizer's chat template (zero-shot: the prompt `slam train` trains chat models with), exemplars as
  earlier turns; stops at the template's end of turn;
- `mgsm_direct`, `mgsm_native_cot`, `mgsm_en_cot`: lm-evaluation-harness's MGSM tasks (prompt, exemplars, `until`,
  filters and exact match: `slam_trainer.evaluation.lm_eval_mgsm`).

Few-shot prompts of `mathoctopus` and `slam` put the language's exemplars first as completed turns and prefix the
question with the exemplars' own question label ("Question:", "Frage:", "问题：" — the text up to the exemplar's first
colon), so the model sees one pattern (ours; MathOctopus evaluates zero-shot). The lm-eval styles build few-shot
prompts exactly as lm-eval does (`slam_trainer.evaluation.lm_eval_mgsm`).

With `chat_template=True` a text prompt becomes the single user turn of the tokenizer's chat template, followed by the
assistant's generation prompt, as lm-eval's `--apply_chat_template` does (exemplars inside the same turn); generation
then also stops at the template's end-of-turn marker.
"""

from __future__ import annotations

import re

from slam_trainer.errors import ConfigError
from slam_trainer.evaluation import lm_eval_mgsm, mathoctopus
from slam_trainer.languages import get_language
from slam_trainer.prompts import SLAM_TEMPLATE, render_chat, user_turn, uses_chat_template


PROMPT_STYLES = ("mathoctopus", "slam", "chat", *lm_eval_mgsm.MODES)

_TEXT_TEMPLATES = {
    # style: (header, turn with the question, a completed answer after a turn)
    "mathoctopus": (mathoctopus.PROMPT.split("### Instruction")[0], "### Instruction:\n{question}\n\n### Response:"),
    "slam": ("", SLAM_TEMPLATE),
}
_ANSWER_AFTER_TURN = {"mathoctopus": " {answer}\n\n", "slam": " {answer}\n"}
_STOPS = {"mathoctopus": ["\n### Instruction:", "\n### Response:"], "slam": ["\nHuman:"], "chat": []}
_LABEL = re.compile(r"^[^:：]{1,40}[:：]\s*")


def question_label(exemplar_question: str) -> str:
    """The label that starts an exemplar's question, e.g. `"Question: "`; empty when it has none."""
    match = _LABEL.match(exemplar_question)
    return match.group(0) if match else ""


def check_style(style: str) -> None:
    if style not in PROMPT_STYLES:
        raise ConfigError(f"`prompt_style` must be one of {', '.join(PROMPT_STYLES)}, got {style!r}.")


def build_prompts(
    rows: list[dict],
    style: str = "mathoctopus",
    *,
    tokenizer=None,
    exemplars: dict[str, list[dict]] | None = None,
    chat_template: bool = False,
) -> list[str]:
    """The prompt text of each benchmark row, in the rows' order.

    Parameters:
        rows (`list[dict]`):
            Benchmark rows (`lang`, `question`); for the lm-eval styles each language's rows in test-set order.
        style (`str`, *optional*, defaults to `"mathoctopus"`):
            One of `PROMPT_STYLES` (see the module docstring).
        tokenizer (`PreTrainedTokenizerBase`, *optional*):
            Needed for `"chat"` and for `chat_template=True`.
        exemplars (`dict[str, list[dict]]`, *optional*):
            Few-shot exemplars per language, each with `question` and `cot`.
        chat_template (`bool`, *optional*, defaults to `False`):
            Wrap each text prompt in the tokenizer's chat template as one user turn (always on for `"chat"`).
    """
    check_style(style)
    exemplars = exemplars or {}
    if style == "chat" or chat_template:
        uses_chat_template(
            tokenizer,
            True,
            asked_by="`prompt_style='chat'`" if style == "chat" else "`chat_template=True`",
            remedy="another `prompt_style` (e.g. `slam`)" if style == "chat" else "`chat_template=False`",
        )
    if style in lm_eval_mgsm.MODES:
        texts = [None] * len(rows)
        for lang in dict.fromkeys(row["lang"] for row in rows):
            indices = [i for i, row in enumerate(rows) if row["lang"] == lang]
            built = lm_eval_mgsm.build_prompts(
                [rows[i]["question"] for i in indices], lang, lm_eval_mgsm.MODES[style], exemplars.get(lang, [])
            )
            for index, text in zip(indices, built):
                texts[index] = text
    elif style == "chat":
        return [_chat_prompt(row, exemplars.get(row["lang"], []), tokenizer) for row in rows]
    else:
        texts = [_text_prompt(row, style, exemplars.get(row["lang"], [])) for row in rows]
    if chat_template:
        return [render_chat(tokenizer, user_turn(text)) for text in texts]
    return texts


def _text_prompt(row: dict, style: str, exemplars: list[dict]) -> str:
    header, turn = _TEXT_TEMPLATES[style]
    question = (question_label(exemplars[0]["question"]) if exemplars else "") + row["question"]
    answer = _ANSWER_AFTER_TURN[style]
    shots = "".join(turn.format(question=ex["question"]) + answer.format(answer=ex["cot"]) for ex in exemplars)
    return header.format(language=get_language(row["lang"]).name) + shots + turn.format(question=question)


def _chat_prompt(row: dict, exemplars: list[dict], tokenizer) -> str:
    question = (question_label(exemplars[0]["question"]) if exemplars else "") + row["question"]
    messages = []
    for exemplar in exemplars:
        messages += [
            {"role": "user", "content": exemplar["question"]},
            {"role": "assistant", "content": exemplar["cot"]},
        ]
    return render_chat(tokenizer, messages + user_turn(question))


def chat_end_of_turn(tokenizer) -> str | None:
    """The text a chat template writes after an assistant turn (e.g. `<|im_end|>`, `<end_of_turn>`); None if none."""
    marker = "\x00reply\x00"
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "question"}, {"role": "assistant", "content": marker}], tokenize=False
    )
    after = rendered.split(marker, 1)[1].strip() if marker in rendered else ""
    return after or None


def stop_strings(style: str, lang: str) -> list[str]:
    """The stop sequences of `style` for a question in `lang` (the end-of-sequence token stops every style)."""
    check_style(style)
    if style in lm_eval_mgsm.MODES:
        return lm_eval_mgsm.stop_sequences(lang)
    return list(_STOPS[style])


def reference_verdicts(style: str, output: str, gold: float, lang: str) -> dict[str, bool]:
    """Whether the reference protocol of `style` scores `output` correct, by each of its answer rules."""
    check_style(style)
    if style in lm_eval_mgsm.MODES:
        return lm_eval_mgsm.reference_verdicts(output, gold, lang, lm_eval_mgsm.MODES[style])
    if style in ("mathoctopus", "slam"):
        return mathoctopus.reference_verdicts(output, gold)
    return {}
