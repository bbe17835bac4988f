"""Reading benchmark files in the MGSM/MSVAMP row format, with errors that say what is wrong before a model loads.

A benchmark is a JSONL file of rows `{"id", "lang", "question", "answer"}`; rows sharing an `id` are translations of
each other. Few-shot exemplars use the same format plus `cot`, a worked answer (MGSM's `exemplars.jsonl`).
"""

from __future__ import annotations

import math
from pathlib import Path

from slam_trainer.data.loaders import REQUIRED_COLUMNS, check_unique_rows, load_jsonl_rows
from slam_trainer.errors import ConfigError, DataError
from slam_trainer.evaluation.extraction import parse_gold
from slam_trainer.languages import LANGUAGES, validate_languages


def read_jsonl(path: str | Path, required: tuple[str, ...], argument: str) -> list[dict]:
    """The rows of a JSONL file, each checked to hold the `required` columns; an empty file is an error too."""
    rows = load_jsonl_rows(path, required=required)
    if not rows:
        raise DataError(f"`{argument}` {path} holds no rows.")
    return rows


def load_benchmark(path: str | Path, languages: list[str] | None = None, limit: int | None = None) -> list[dict]:
    """Rows of a benchmark file for the chosen languages, in the registry's language order, then file order.

    Parameters:
        path (`str` or `Path`):
            A JSONL file with columns `id`, `lang`, `question`, `answer`.
        languages (`list[str]`, *optional*):
            Language codes to keep; all languages in the file when None. A code outside the registry, or one the
            file does not hold, is an error.
        limit (`int`, *optional*):
            Keep the first `limit` rows of each language (quick runs).
    """
    rows = read_jsonl(path, REQUIRED_COLUMNS, "data")
    for number, row in enumerate(rows, start=1):
        check_row(row, f"`data` {path} row {number}")
    present = sorted(
        {row["lang"] for row in rows}, key=lambda code: list(LANGUAGES).index(code) if code in LANGUAGES else 99
    )
    unknown = [code for code in present if code not in LANGUAGES]
    if unknown:
        raise DataError(
            f"`data` {path} has rows in unknown language(s) {', '.join(map(str, unknown))}; "
            f"the shipped languages are {', '.join(LANGUAGES)}."
        )
    if languages is None:
        languages = present
    languages = validate_languages(languages)
    absent = [code for code in languages if code not in present]
    if absent:
        raise ConfigError(
            f"`languages` asks for {', '.join(absent)} but `data` {path} only holds {', '.join(present)}."
        )
    if limit is not None and limit <= 0:
        raise ConfigError(f"`limit` must be a positive number of rows per language, got {limit}.")
    selected = []
    for lang in sorted(languages, key=list(LANGUAGES).index):
        lang_rows = [row for row in rows if row["lang"] == lang][:limit]
        selected.extend(lang_rows)
    check_unique_rows(rows, f"`data` {path}")
    for row in selected:  # fails now, not after generation, on an answer that is not a finite number
        try:
            gold = parse_gold(row["answer"])
        except ValueError as error:
            raise DataError(f"`data` {path} row id {row['id']!r} ({row['lang']}): {error}") from None
        if not math.isfinite(gold):
            raise DataError(
                f"`data` {path} row id {row['id']!r} ({row['lang']}): the gold answer {row['answer']!r} is not a "
                "finite number (NaN or infinity); fix or drop the row."
            )
    return selected


def check_row(row: dict, where: str, text_columns: tuple[str, ...] = ("question",)) -> None:
    """Refuse a row whose `id` is not a number or a string, whose `lang` is not a string, or whose text is empty."""
    if isinstance(row.get("id"), bool) or not isinstance(row.get("id", ""), (int, str)):
        raise DataError(f"{where}: `id` is {row['id']!r}; it must be a number or a string.")
    if not isinstance(row["lang"], str):
        raise DataError(f'{where}: `lang` is {row["lang"]!r}; it must be a language code such as "en".')
    for column in text_columns:
        if not isinstance(row[column], str) or not row[column].strip():
            raise DataError(f"{where}: `{column}` is {row[column]!r}; it must be non-empty text.")


def load_exemplars(path: str | Path, languages: list[str], num_shots: int) -> dict[str, list[dict]]:
    """The first `num_shots` exemplars (`question`, `cot`) of each language, e.g. MGSM's `exemplars.jsonl`."""
    rows = read_jsonl(path, ("lang", "question", "cot"), "exemplars")
    for number, row in enumerate(rows, start=1):
        check_row(row, f"`exemplars` {path} row {number}", ("question", "cot"))
    exemplars = {lang: [row for row in rows if row["lang"] == lang][:num_shots] for lang in languages}
    short = [f"{lang} ({len(found)})" for lang, found in exemplars.items() if len(found) < num_shots]
    if short:
        raise DataError(
            f"`num_shots` is {num_shots} but `exemplars` {path} has fewer for {', '.join(short)}; "
            f"lower `num_shots` or add exemplars."
        )
    return exemplars
