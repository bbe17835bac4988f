"""lm-evaluation-harness's MGSM tasks (`mgsm_direct`, `mgsm_native_cot`, `mgsm_en_cot`), reproduced.

What is reproduced, from `lm_eval/tasks/mgsm/utils.py` (its `LANGUAGES` table and `gen_lang_yamls`) and the YAMLs
it generates (`direct/direct_yaml`, `native_cot/cot_yaml`, `en_cot/cot_yaml`, `*/mgsm_*_{lang}.yaml`):

- the prompt (`doc_to_text`): a test question becomes `"{QUESTION} " + question + "\\n{label}"`, where `label` is the
  language's `ANSWER` (native-cot), English's `ANSWER` (en-cot) or the language's `DIRECT` (direct); a few-shot
  exemplar (a train-split row, which holds its label) becomes `question + "\\n{label}"`;
- the exemplar's answer (`doc_to_target`): `answer[len(ANSWER) + 1:]` with the language's own `ANSWER`, joined to its
  prompt by the task's `target_delimiter` (`" "` for the CoT tasks, `""` for direct) and followed by lm-eval's
  `fewshot_delimiter` `"\\n\\n"`;
- the exemplar order: lm-eval's default sampler draws `random.Random(1234).sample(train_docs, n)` afresh for each test
  question, in test-set order, with one generator per task (`fewshot_random_seed` 1234);
- the stop sequences (`until`): the language's `QUESTION`, `"</s>"` and `"<|im_end|>"` (lm-eval's HF backend adds the
  tokenizer's end-of-sequence token);
- the filters: `strict-match` (the language's `REGEX` for native-cot, English's for en-cot; first match) and
  `flexible-extract` (`(-?[$0-9.,]{2,})|(-?[0-9]+)`, last match) for the CoT tasks, `remove_whitespace` and
  `flexible-extract` for direct; then `exact_match` (`ignore_case`, `ignore_punctuation`) against the gold number.

What we supply: lm-eval reads the exemplars from the `train` split of `juletxara/mgsm`; we read the same eight MGSM
exemplars from an exemplar file (`../shared/data/mgsm/exemplars.jsonl`). Its zh and ja rows write the label with a
full-width colon and no space (`逐步解答：罗杰…`); lm-eval's labels and its `+ 1` slice assume an ASCII colon and one
space (`逐步解答: 罗杰…`), so we rewrite a label's colon that way before applying lm-eval's templates (ours).
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass


@dataclass(frozen=True)
class MgsmLabels:
    question: str
    answer: str
    direct: str
    regex: str


# lm_eval/tasks/mgsm/utils.py, LANGUAGES (the Russian `ANSWER` has no space, as there).
LABELS: dict[str, MgsmLabels] = {
    "bn": MgsmLabels("প্রশ্ন:", "ধাপে ধাপে উত্তর:", "Answer:", r"The answer is (\-?[0-9\.\,]+)"),
    "de": MgsmLabels("Frage:", "Schritt-für-Schritt-Antwort:", "Antwort:", r"Die Antwort lautet (\-?[0-9\.\,]+)"),
    "en": MgsmLabels("Question:", "Step-by-Step Answer:", "Answer:", r"The answer is (\-?[0-9\.\,]+)"),
    "es": MgsmLabels("Pregunta:", "Respuesta paso a paso:", "Respuesta:", r"La respuesta es (\-?[0-9\.\,]+)"),
    "fr": MgsmLabels("Question :", "Réponse étape par étape :", "Réponse :", r"La réponse est (\-?[0-9\.\,]+)"),
    "ru": MgsmLabels("Задача:", "Пошаговоерешение:", "Answer:", r"Ответ — (\-?[0-9\.\,]+)"),
    "sw": MgsmLabels("Swali:", "Jibu la Hatua kwa Hatua:", "Answer:", r"Jibu ni (\-?[0-9\.\,]+)"),
    "te": MgsmLabels("ప్రశ్న:", "దశలవారీగా సమాధానం:", "Answer:", r"సమాధానం (\-?[0-9\.\,]+)"),
    "th": MgsmLabels("โจทย์:", "คำตอบทีละขั้นตอน:", "Answer:", r"คำตอบคือ (\-?[0-9\.\,]+)"),
    "ja": MgsmLabels("問題:", "ステップごとの答え:", "Answer:", r"答えは(\-?[0-9\.\,]+)です。"),
    "zh": MgsmLabels("问题:", "逐步解答:", "Answer:", r"答案是 (\-?[0-9\.\,]+)。"),
}
# Prompt style -> lm-eval mode (`gen_lang_yamls(mode=...)`).
MODES = {"mgsm_direct": "direct", "mgsm_native_cot": "native-cot", "mgsm_en_cot": "en-cot"}
FEWSHOT_RANDOM_SEED = 1234  # lm_eval.evaluator.simple_evaluate(fewshot_random_seed=1234)
FEWSHOT_DELIMITER = "\n\n"  # TaskConfig.fewshot_delimiter default
FLEXIBLE_REGEX = r"(-?[$0-9.,]{2,})|(-?[0-9]+)"
FALLBACK = "[invalid]"  # RegexFilter's answer when nothing matches


def _label(lang: str, mode: str) -> str:
    labels = LABELS[lang]
    return {"direct": labels.direct, "native-cot": labels.answer, "en-cot": LABELS["en"].answer}[mode]


def train_split_form(text: str) -> str:
    """An exemplar field as juletxara/mgsm's train split writes it: a full-width label colon as `": "`."""
    return re.sub(r"^([^:：\n]{1,40}?)：\s*", lambda match: match.group(1) + ": ", text, count=1)


def doc_to_text(question: str, lang: str, mode: str, *, exemplar: bool = False) -> str:
    """The task's `doc_to_text`: an exemplar (train split) already holds its question label, a test question not."""
    if exemplar:
        return question + "\n" + _label(lang, mode)
    return LABELS[lang].question + " " + question + "\n" + _label(lang, mode)


def doc_to_target(answer: str, lang: str) -> str:
    """The task's `doc_to_target` for an exemplar: its worked answer without the language's `ANSWER` label."""
    return answer[len(LABELS[lang].answer) + 1 :]


def build_prompts(questions: list[str], lang: str, mode: str, exemplars: list[dict] = ()) -> list[str]:
    """lm-eval's prompt for each test question of `lang`, given in test-set order (the few-shot draws follow it).

    Parameters:
        questions (`list[str]`):
            The language's test questions, in the order of the test set (the first `limit` questions keep lm-eval's
            draws; another subset or order does not).
        lang (`str`), mode (`str`):
            The language and the lm-eval mode (`"direct"`, `"native-cot"`, `"en-cot"`).
        exemplars (`list[dict]`, *optional*):
            The language's train-split exemplars (`question`, `cot`), in file order; all of them form the pool that
            lm-eval's sampler draws `len(exemplars)` shots from.
    """
    delimiter = "" if mode == "direct" else " "
    shots = [
        doc_to_text(train_split_form(row["question"]), lang, mode, exemplar=True)
        + delimiter
        + doc_to_target(train_split_form(row["cot"]), lang)
        + FEWSHOT_DELIMITER
        for row in exemplars
    ]
    draws = random.Random(FEWSHOT_RANDOM_SEED)
    prompts = []
    for question in questions:
        order = draws.sample(range(len(shots)), len(shots)) if shots else []
        prompts.append("".join(shots[index] for index in order) + doc_to_text(question, lang, mode))
    return prompts


def stop_sequences(lang: str) -> list[str]:
    """The task's `until` list."""
    return [LABELS[lang].question, "</s>", "<|im_end|>"]


def regex_filter(output: str, pattern: str, group_select: int = 0) -> str:
    """lm-eval's `regex` filter followed by `take_first`: the selected match (a tuple's first non-empty group)."""
    matches = re.findall(pattern, output)
    if not matches:
        return FALLBACK
    match = matches[group_select]
    if isinstance(match, tuple):
        match = next((group for group in match if group), FALLBACK)
    return match.strip()


def exact_match(prediction: str, gold: float) -> bool:
    """lm-eval's `exact_match` with `ignore_case` and `ignore_punctuation` against `answer_number|string`."""
    reference = str(int(gold)) if float(gold).is_integer() else str(gold)
    strip = str.maketrans("", "", string.punctuation)
    return prediction.lower().translate(strip) == reference.lower().translate(strip)


def reference_verdicts(output: str, gold: float, lang: str, mode: str) -> dict[str, bool]:
    """Whether each of the task's filters, then `exact_match`, scores `output` correct."""
    flexible = exact_match(regex_filter(output, FLEXIBLE_REGEX, group_select=-1), gold)
    if mode == "direct":
        return {"remove_whitespace": exact_match(output.lstrip(), gold), "flexible-extract": flexible}
    strict_pattern = LABELS["en" if mode == "en-cot" else lang].regex
    return {"strict-match": exact_match(regex_filter(output, strict_pattern), gold), "flexible-extract": flexible}
