"""Prompts per language: the MathOctopus instruction prompt, SLAM's training prompt, or the tokenizer's chat template.

Zero-shot prompts hold the question as it is. Few-shot prompts put the language's exemplars (a question with its
worked answer `cot`) first, each as a completed turn of the same template, and prefix the question with the
exemplars' own question label ("Question:", "Frage:", "问题：" — the text up to the exemplar's first colon), so the
model sees one consistent pattern (our choice; the papers evaluate zero-shot).
"""

from __future__ import annotations

import re

from slam_trainer.languages import get_language


PROMPT_STYLES = ("mathoctopus", "slam", "chat")

# MathOctopus's evaluation prompt (Alpaca-style, asks for an answer in the question's language).
_MATHOCTOPUS_HEADER = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request "
    "in {language}. Please answer in {language}.\n\n"
)
_TEXT_TEMPLATES = {
    # style: (header, turn with the question, a completed answer after a turn)
    "mathoctopus": (_MATHOCTOPUS_HEADER, "### Instruction:\n{question}\n\n### Response:", " {answer}\n\n"),
    # The prompt of the official SLAM training code (LLaMA-Factory's "vanilla" Human/Assistant format).
    "slam": ("", "Human: {question}\nAssistant:", " {answer}\n"),
}
_LABEL = re.compile(r"^[^:：]{1,40}[:：]\s*")


def question_label(exemplar_question: str) -> str:
    """The label that starts an exemplar's question, e.g. `"Question: "`; empty when it has none."""
    match = _LABEL.match(exemplar_question)
    return match.group(0) if match else ""


def build_prompt(
    question: str, lang: str, style: str = "mathoctopus", *, tokenizer=None, exemplars: list[dict] = ()
) -> str:
    """The prompt text for one question.

    Parameters:
        question (`str`):
            The question, in `lang`.
        lang (`str`):
            Its language code; the MathOctopus prompt names the language.
        style (`str`, *optional*, defaults to `"mathoctopus"`):
            One of `PROMPT_STYLES`: `"mathoctopus"` (MathOctopus's evaluation prompt, which SLAM's evaluation
            uses), `"slam"` (`Human: ...\\nAssistant:` as in SLAM's training data) or `"chat"` (the tokenizer's chat
            template with a generation prompt; needs `tokenizer`).
        tokenizer (`PreTrainedTokenizerBase`, *optional*):
            Needed for `"chat"`.
        exemplars (`list[dict]`, *optional*):
            Few-shot exemplars in `lang`, each with `question` and `cot`.
    """
    language = get_language(lang).name
    if exemplars:
        question = question_label(exemplars[0]["question"]) + question
    if style == "chat":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "`prompt_style='chat'` needs a tokenizer with a chat template; use 'mathoctopus' or 'slam'."
            )
        messages = []
        for exemplar in exemplars:
            messages += [
                {"role": "user", "content": exemplar["question"]},
                {"role": "assistant", "content": exemplar["cot"]},
            ]
        messages.append({"role": "user", "content": question})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if style not in _TEXT_TEMPLATES:
        raise ValueError(f"`prompt_style` must be one of {', '.join(PROMPT_STYLES)}, got {style!r}.")
    header, turn, answer = _TEXT_TEMPLATES[style]
    shots = "".join(turn.format(question=ex["question"]) + answer.format(answer=ex["cot"]) for ex in exemplars)
    return header.format(language=language) + shots + turn.format(question=question)
