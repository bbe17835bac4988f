"""The parallel chain-of-thought schema L² trains on, and its builder from per-language rows.

One example is a question in several languages and a chain of thought cut into the same number of steps in each:
`{"id": str, "question": {lang: str}, "steps": {lang: [str, ...]}, "answer": str}`. Step `i` in every language says
the same thing, which is what lets the collator switch language at any step boundary.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from slam_trainer.data.loaders import check_unique_rows
from slam_trainer.errors import ConfigError, DataError
from slam_trainer.l2.segmentation import split_steps
from slam_trainer.languages import validate_languages


if TYPE_CHECKING:
    from datasets import Dataset

ON_INVALID = ("drop", "raise")


@dataclass
class BuildReport:
    """What the builder kept and what it dropped, with one line per problem: `id`, language and reason."""

    kept: int = 0
    dropped: int = 0
    reasons: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        reasons = ", ".join(f"{count} {reason}" for reason, count in self.reasons.most_common())
        return f"kept {self.kept} example(s), dropped {self.dropped}" + (f" ({reasons})" if reasons else "")


def _problem(example_id, lang, reason) -> tuple[str, str]:
    where = f"id {example_id!r}" + (f", language {lang!r}" if lang else "")
    return reason, f"{where}: {reason}"


def _check(example_id, by_lang: dict[str, dict], languages: list[str]) -> list[tuple[str, str]]:
    """Problems of one grouped example; empty when it is valid."""
    problems = [_problem(example_id, lang, "missing language") for lang in languages if lang not in by_lang]
    for lang in languages:
        if lang not in by_lang:
            continue
        row = by_lang[lang]
        if not isinstance(row["question"], str) or not row["question"].strip():
            problems.append(_problem(example_id, lang, "empty question"))
        if not row["steps"]:
            problems.append(_problem(example_id, lang, "no steps"))
        elif any(not step.strip() for step in row["steps"]):
            problems.append(_problem(example_id, lang, "empty step"))
    counts = {lang: len(by_lang[lang]["steps"]) for lang in languages if lang in by_lang}
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"{lang}={count}" for lang, count in counts.items())
        problems.append(("step counts differ", f"id {example_id!r}: step counts differ between languages ({detail})"))
    answers = {str(by_lang[lang]["answer"]).strip() for lang in languages if lang in by_lang}
    if len(answers) > 1:
        problems.append(("answers differ", f"id {example_id!r}: answers differ between languages ({sorted(answers)})"))
    return problems


def build_parallel_dataset(
    rows,
    *,
    languages=None,
    on_invalid: str = "drop",
    segmentation: str = "auto",
    cues: dict[str, list[str]] | None = None,
) -> tuple[Dataset, BuildReport]:
    """Group per-language rows by `id` into parallel, step-aligned examples and validate them.

    Parameters:
        rows (iterable of `dict`):
            MGSM/MSVAMP-style rows with `id`, `lang`, `question`, `answer`, and either `steps` (a list) or `cot`
            (text, cut with `split_steps`).
        languages (`list[str]`, *optional*):
            Languages every example must have; by default every language seen in `rows`.
        on_invalid (`str`, *optional*, defaults to `"drop"`):
            `"drop"` leaves out invalid examples (missing language, different step counts, empty steps or question,
            answers that differ) and logs a count per reason; `"raise"` fails with the list of problems. Ours.
        segmentation (`str`, *optional*, defaults to `"auto"`):
            `mode` of `split_steps` for rows given as `cot` text.
        cues (`dict[str, list[str]]`, *optional*):
            Reflection cues per language, replacing the shipped ones.

    Returns:
        `(datasets.Dataset, BuildReport)`: columns `id` (str), `question`, `steps`, `answer` (str).
    """
    from datasets import Dataset  # here, not at the top: `slam l2-build --help` reads ON_INVALID without datasets
    from transformers.utils import logging

    if on_invalid not in ON_INVALID:
        raise ConfigError(f"`on_invalid` must be one of {', '.join(ON_INVALID)}, got {on_invalid!r}.")
    grouped = _group_rows(rows, segmentation, cues)
    if languages is None:
        languages = sorted({lang for group in grouped.values() for lang in group})
    languages = validate_languages(languages)
    check_languages_present(languages, {lang for group in grouped.values() for lang in group})
    examples, report = _validated_examples(grouped, languages)
    if report.problems and on_invalid == "raise":
        shown = "\n  ".join(report.problems[:20])
        more = f"\n  ... and {len(report.problems) - 20} more" if len(report.problems) > 20 else ""
        raise DataError(
            f"{report.dropped} invalid example(s) (pass on_invalid='drop' to leave them out):\n  {shown}{more}"
        )
    if report.dropped:
        first = "; ".join(report.problems[:5])
        logging.get_logger(__name__).warning("Parallel CoT builder: %s. First problems: %s", report.summary(), first)
    if not examples:
        raise DataError(
            f"No valid parallel example for languages {languages}: {report.summary()}. "
            f"First problems: {'; '.join(report.problems[:5])}"
        )
    return Dataset.from_list(examples), report


def check_languages_present(languages: list[str], present, flag: str = "languages") -> None:
    """Refuse languages no row is in, naming the ones the data holds (instead of filtering every row away and then
    blaming the data)."""
    absent = [lang for lang in languages if lang not in present]
    if absent:
        raise ConfigError(
            f"`{flag}` asks for {', '.join(absent)}, but no row is in {'it' if len(absent) == 1 else 'them'}: the "
            f"data holds {', '.join(sorted(map(str, present))) or 'no language'}. Drop {', '.join(absent)} from "
            f"`{flag}` or add rows in {'it' if len(absent) == 1 else 'them'}."
        )


def select_languages(rows: list[dict], languages, flag: str = "languages") -> list[dict]:
    """The rows in `languages` (all when None); a language no row is in is refused (`check_languages_present`)."""
    if languages is None:
        return rows
    check_languages_present(validate_languages(languages), {row.get("lang") for row in rows}, flag)
    return [row for row in rows if row.get("lang") in languages]


def _group_rows(rows, segmentation: str, cues) -> dict[str, dict[str, dict]]:
    """Rows grouped by `id`, then language (`cot` text cut into steps); a repeated (id, lang) pair is refused."""
    rows = list(rows)
    grouped: dict[str, dict[str, dict]] = {}
    for number, row in enumerate(rows):
        # A column absent from some rows reads as None in a `datasets.Dataset` (mixed `steps`/`cot` files): the same.
        missing = [key for key in ("id", "lang", "question", "answer") if row.get(key) is None]
        if row.get("steps") is None and row.get("cot") is None:
            missing.append("steps or cot")
        if missing:
            raise DataError(
                f"Row {number} is missing {', '.join(missing)}; each row needs id, lang, question, "
                f"answer and steps (a list) or cot (text)."
            )
        example_id, lang = str(row["id"]), row["lang"]
        validate_languages([lang], argument=f"lang of row {number}")
        grouped.setdefault(example_id, {})[lang] = {
            "question": row["question"],
            "steps": _row_steps(row, number, segmentation, cues),
            "answer": row["answer"],
        }
    check_unique_rows(rows, "The parallel rows")
    return grouped


def _row_steps(row: dict, number: int, segmentation: str, cues) -> list[str]:
    """A row's steps: its `steps` (a list of texts; a string would become one-character steps) or its `cot` cut."""
    where = f"Row {number} (id {row['id']!r}, lang {row['lang']!r})"
    # A column absent from some rows reads as None in a `datasets.Dataset` (a file mixing `steps` and `cot` rows).
    if row.get("steps") is not None:
        steps = row["steps"]
        if not isinstance(steps, list) or not all(isinstance(step, str) for step in steps):
            kind = "a string (it would become one-character steps)" if isinstance(steps, str) else repr(steps)[:80]
            raise DataError(f"{where}: `steps` must be a list of texts, got {kind}; or give the text as `cot`.")
        return list(steps)
    if not isinstance(row["cot"], str):
        raise DataError(f"{where}: `cot` must be a text, got {type(row['cot']).__name__}.")
    return split_steps(row["cot"], row["lang"], mode=segmentation, cues=(cues or {}).get(row["lang"]))


def _validated_examples(grouped, languages: list[str]) -> tuple[list[dict], BuildReport]:
    """The valid examples in the parallel schema, and the report of what was dropped and why."""
    report = BuildReport()
    examples = []
    for example_id, by_lang in grouped.items():
        problems = _check(example_id, by_lang, languages)
        if problems:
            report.dropped += 1
            report.reasons.update(reason for reason, _ in problems)
            report.problems.extend(message for _, message in problems)
            continue
        examples.append(
            {
                "id": example_id,
                "question": {lang: by_lang[lang]["question"] for lang in languages},
                "steps": {lang: by_lang[lang]["steps"] for lang in languages},
                "answer": str(by_lang[languages[0]]["answer"]).strip(),
            }
        )
    report.kept = len(examples)
    return examples, report


PARALLEL_COLUMNS = ("id", "question", "steps", "answer")


def is_parallel_dataset(dataset) -> bool:
    """Whether `dataset` is already in the parallel schema (what `build_parallel_dataset` and `slam l2-build` write:
    `question` and `steps` keyed by language), not per-language rows."""
    if not set(PARALLEL_COLUMNS) <= set(dataset.column_names) or len(dataset) == 0:
        return False
    first = dataset[0]
    return isinstance(first["question"], dict) and isinstance(first["steps"], dict)


def parallel_rows(dataset) -> list[dict]:
    """The per-language rows (`id`, `lang`, `question`, `answer`, `steps`) of a parallel-schema dataset: the inverse of
    `build_parallel_dataset`, for consumers of rows (SLAM's training set)."""
    return [
        {"id": example["id"], "lang": lang, "question": question, "answer": example["answer"], "steps": steps}
        for example in dataset
        for lang, question in example["question"].items()
        if (steps := example["steps"].get(lang)) is not None
    ]


def dataset_name(source: str, num_languages: int, num_samples: int) -> str:
    """The paper's naming: `L2-M {source} {languages} {samples}`, e.g. `L2-M o1 10 6`."""
    return f"L2-M {source} {num_languages} {num_samples}"


def parallel_statistics(dataset: Dataset) -> dict:
    """Examples, languages, steps per example (min/mean/max) and characters per language of a parallel dataset."""
    if len(dataset) == 0:
        return {"examples": 0, "languages": [], "steps": {}, "characters": {}}
    languages = list(dataset[0]["steps"])
    steps = [len(example[languages[0]]) for example in dataset["steps"]]
    characters = {
        lang: sum(len(q[lang]) + sum(len(s) for s in st[lang]) for q, st in zip(dataset["question"], dataset["steps"]))
        for lang in languages
    }
    return {
        "examples": len(dataset),
        "languages": languages,
        "steps": {"min": min(steps), "mean": round(sum(steps) / len(steps), 2), "max": max(steps)},
        "characters": characters,
    }
