"""Scoring predictions per language: accuracy, generated tokens, tokens per correct answer, language consistency.

Scores are recomputed from the raw outputs, never from stored verdicts, so a better extraction rule can rescore an
old predictions file. Numbers are rounded to 6 digits so that JSON written from the same predictions is identical.

Besides our accuracy, a run reports:

- `num_echo`: correct answers that are a number copied from the question (a model that repeats the question's last
  number is right whenever that number is the answer; needs the question in the record);
- `reference_accuracy`: the accuracy by the prompt style's reference answer rule(s) (MathOctopus's last number,
  lm-eval's strict/flexible filters), so numbers can be put next to published tables;
- `ended_share`: the share of outputs that ended (end-of-sequence or a stop sequence) before `max_new_tokens`;
- two averages: `average`, the unweighted mean over every evaluated language (named in `languages`), and, when Telugu
  is among several languages, `average_without_te` over the others (SLAM and MathOctopus report MGSM over ten
  languages, without Telugu).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from slam_trainer.errors import DataError
from slam_trainer.evaluation.extraction import extract_answer, find_numbers, is_correct, parse_gold
from slam_trainer.evaluation.language_id import is_in_language
from slam_trainer.evaluation.mathoctopus import LANGUAGES as MATHOCTOPUS_LANGUAGES
from slam_trainer.evaluation.prompts import reference_verdicts
from slam_trainer.languages import LANGUAGES


_AVERAGED = (
    "accuracy",
    "mean_tokens",
    "tokens_per_correct",
    "language_consistency",
    "ended_share",
)


def judge(
    output: str,
    gold: str | float,
    lang: str,
    tolerance: float = 1e-3,
    *,
    question: str | None = None,
    prompt_style: str | None = None,
) -> dict:
    """The verdict on one output: the extracted answer, whether it is correct, in `lang`, an echo of the question, and
    (with `prompt_style`) correct by the style's reference rules."""
    gold_value = parse_gold(gold)
    prediction = extract_answer(output, lang)
    correct = is_correct(prediction, gold_value, tolerance)
    verdict = {"prediction": prediction, "correct": correct, "in_language": is_in_language(output, lang)}
    if question is not None:
        verdict["echo"] = correct and any(
            is_correct(number, prediction, tolerance) for number in find_numbers(question, lang)
        )
    if prompt_style is not None:
        verdict["reference"] = reference_verdicts(prompt_style, output, gold_value, lang)
    return verdict


def score_records(records: Iterable[Mapping], tolerance: float = 1e-3, *, prompt_style: str | None = None) -> dict:
    """Per-language and averaged scores of prediction records.

    Parameters:
        records (iterable of mappings):
            Each with `lang`, `answer` (gold) and `output` (generated text); optional `num_tokens` (generated
            tokens; token statistics are None without it), `stopped_by` (`"eos"`, `"stop"` or `"length"`) and
            `question` (for the echo count).
        tolerance (`float`, *optional*, defaults to `1e-3`):
            Largest distance from the gold answer that still counts as correct (MathOctopus's value).
        prompt_style (`str`, *optional*):
            The prompt style the outputs answer; adds the accuracy by its reference answer rules.

    Returns:
        `dict`: `{"languages": {lang: {...}}, "average": {...}}` (plus `"average_without_te"`, see the module
        docstring). Each entry has `num_examples`, `num_correct`, `num_echo`, `accuracy`, `mean_tokens`,
        `tokens_per_correct` (total generated tokens / correct answers; None with no correct answer),
        `language_consistency` (share written in the question's language), `ended_share` and `reference_accuracy`.
    """
    by_lang: dict[str, list[tuple[dict, Mapping]]] = {}
    for record in records:
        verdict = judge(
            record["output"],
            record["answer"],
            record["lang"],
            tolerance,
            question=record.get("question"),
            prompt_style=prompt_style,
        )
        by_lang.setdefault(record["lang"], []).append((verdict, record))
    if not by_lang:
        raise DataError("No predictions to score: the records are empty.")
    order = [code for code in LANGUAGES if code in by_lang]
    languages = {lang: _summarise(by_lang[lang]) for lang in order}
    scores = {"languages": languages, "average": _average(languages, order)}
    if "te" in languages and len(languages) > 1:
        scores["average_without_te"] = _average(languages, [code for code in order if code in MATHOCTOPUS_LANGUAGES])
    return scores


def _summarise(items: list[tuple[dict, Mapping]]) -> dict:
    total = len(items)
    correct = sum(verdict["correct"] for verdict, _ in items)
    tokens = [record.get("num_tokens") for _, record in items]
    has_tokens = None not in tokens
    stops = [record.get("stopped_by") for _, record in items]
    echoes = [verdict.get("echo") for verdict, _ in items]
    rules = sorted({rule for verdict, _ in items for rule in verdict.get("reference", {})})
    return {
        "num_examples": total,
        "num_correct": correct,
        "num_echo": None if None in echoes else sum(echoes),
        "accuracy": round(correct / total, 6),
        "mean_tokens": round(sum(tokens) / total, 6) if has_tokens else None,
        "tokens_per_correct": round(sum(tokens) / correct, 6) if has_tokens and correct else None,
        "language_consistency": round(sum(verdict["in_language"] for verdict, _ in items) / total, 6),
        "ended_share": None if None in stops else round(sum(stop != "length" for stop in stops) / total, 6),
        "reference_accuracy": {
            rule: round(sum(verdict["reference"][rule] for verdict, _ in items) / total, 6) for rule in rules
        },
    }


def _average(languages: dict[str, dict], codes: list[str]) -> dict:
    entries = [languages[code] for code in codes]
    average = {key: _mean([entry[key] for entry in entries]) for key in _AVERAGED}
    rules = sorted({rule for entry in entries for rule in entry["reference_accuracy"]})
    average["reference_accuracy"] = {
        rule: _mean([entry["reference_accuracy"].get(rule) for entry in entries]) for rule in rules
    }
    average["num_examples"] = sum(entry["num_examples"] for entry in entries)
    average["num_correct"] = sum(entry["num_correct"] for entry in entries)
    echoes = [entry["num_echo"] for entry in entries]
    average["num_echo"] = None if None in echoes else sum(echoes)
    average["languages"] = codes
    return average


def _mean(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return round(sum(present) / len(present), 6) if present else None
