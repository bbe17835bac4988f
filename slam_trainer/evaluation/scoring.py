"""Scoring predictions per language: accuracy, generated tokens, tokens per correct answer, language consistency.

Scores are recomputed from the raw outputs, never from stored verdicts, so a better extraction rule can rescore an
old predictions file. Numbers are rounded to 6 digits so that JSON written from the same predictions is identical.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from slam_trainer.evaluation.extraction import extract_answer, is_correct, parse_gold
from slam_trainer.evaluation.language_id import is_in_language
from slam_trainer.languages import LANGUAGES


def judge(output: str, gold: str | float, lang: str, tolerance: float = 1e-3) -> dict:
    """The verdict on one output: the extracted answer, whether it is correct, whether it is in `lang`."""
    prediction = extract_answer(output, lang)
    return {
        "prediction": prediction,
        "correct": is_correct(prediction, parse_gold(gold), tolerance),
        "in_language": is_in_language(output, lang),
    }


def score_records(records: Iterable[Mapping], tolerance: float = 1e-3) -> dict:
    """Per-language and macro-averaged scores of prediction records.

    Parameters:
        records (iterable of mappings):
            Each with `lang`, `answer` (gold) and `output` (generated text); `num_tokens` (generated tokens) is
            optional and, when absent, token statistics are reported as None.
        tolerance (`float`, *optional*, defaults to `1e-3`):
            Largest distance from the gold answer that still counts as correct (MathOctopus's value).

    Returns:
        `dict`: `{"languages": {lang: {...}}, "average": {...}}`, where each entry has `num_examples`, `num_correct`,
        `accuracy`, `mean_tokens`, `tokens_per_correct` (total generated tokens / correct answers; None with no
        correct answer) and `language_consistency` (share of outputs written in the question's language). The
        average is the unweighted mean over languages, as MGSM papers report it.
    """
    by_lang: dict[str, list[tuple[dict, int | None]]] = {}
    for record in records:
        verdict = judge(record["output"], record["answer"], record["lang"], tolerance)
        by_lang.setdefault(record["lang"], []).append((verdict, record.get("num_tokens")))
    if not by_lang:
        raise ValueError("No predictions to score: the records are empty.")
    order = [code for code in LANGUAGES if code in by_lang]
    languages = {lang: _summarise(by_lang[lang]) for lang in order}
    keys = ("accuracy", "mean_tokens", "tokens_per_correct", "language_consistency")
    average = {key: _mean([scores[key] for scores in languages.values()]) for key in keys}
    average["num_examples"] = sum(scores["num_examples"] for scores in languages.values())
    average["num_correct"] = sum(scores["num_correct"] for scores in languages.values())
    return {"languages": languages, "average": average}


def _summarise(items: list[tuple[dict, int | None]]) -> dict:
    total = len(items)
    correct = sum(verdict["correct"] for verdict, _ in items)
    tokens = [count for _, count in items if count is not None]
    has_tokens = len(tokens) == total
    return {
        "num_examples": total,
        "num_correct": correct,
        "accuracy": round(correct / total, 6),
        "mean_tokens": round(sum(tokens) / total, 6) if has_tokens else None,
        "tokens_per_correct": round(sum(tokens) / correct, 6) if has_tokens and correct else None,
        "language_consistency": round(sum(verdict["in_language"] for verdict, _ in items) / total, 6),
    }


def _mean(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return round(sum(present) / len(present), 6) if present else None
