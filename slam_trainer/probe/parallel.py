"""Parallel text for the probe: the same items in several languages, aligned by item.

The probe compares languages neuron by neuron, so every language must see the same content; otherwise a layer
would look language-specific merely because the topics differ. Input comes in three shapes:

- a dict of lists, `{"en": [...], "zh": [...]}`: aligned by position, so every list must have the same length;
- a dict of dicts, `{"en": {id: text}, ...}`: aligned by id;
- rows with `id`, `lang` and `text` (or `question`) columns: a `datasets.Dataset`, a list of dicts, or a
  `.jsonl`/`.json` file of such rows (MGSM/MSVAMP-style files and FLORES-style corpora), aligned by `id`.

Ids missing from some language are dropped with a warning (our choice: real corpora often lack a few
translations, and dropping keeps the rest comparable); an error follows only if nothing parallel is left.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

from slam_trainer.data.loaders import check_unique_rows, load_jsonl_rows
from slam_trainer.errors import ConfigError, DataError


TEXT_COLUMNS = ("text", "question")


@dataclass
class ParallelTexts:
    """Texts aligned across languages: `texts[lang][i]` is item `ids[i]` in language `lang`."""

    ids: list
    texts: dict[str, list[str]]

    @property
    def languages(self) -> list[str]:
        return list(self.texts)


def _read_rows(path: str) -> list | dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Probe data file {path!r} does not exist; pass a .jsonl/.json file of parallel rows.")
    if path.endswith(".jsonl"):
        return load_jsonl_rows(path, required=())  # columns are checked by `_from_rows`
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    raise DataError(f"Probe data file {path!r}: expected a .jsonl or .json file.")


def _from_rows(rows: list[Mapping], text_column: str | None) -> dict[str, dict]:
    if not rows:
        raise DataError("The probe data has no rows; it needs parallel texts in at least two languages.")
    columns = set(rows[0])
    if text_column is None:
        text_column = next((c for c in TEXT_COLUMNS if c in columns), None)
    missing = [c for c in ("id", "lang") if c not in columns]
    if text_column not in columns or missing:
        raise DataError(
            f"The probe data rows have columns {sorted(columns)}; they need `id`, `lang` and a text column "
            f"({' or '.join(TEXT_COLUMNS)}, or name it with `text_column`)."
        )
    check_unique_rows(rows, "The probe data")
    by_lang: dict[str, dict] = {}
    for row in rows:
        by_lang.setdefault(row["lang"], {})[row["id"]] = row[text_column]
    return by_lang


def _align_by_id(by_lang: dict[str, dict]) -> ParallelTexts:
    """Keep the ids every language has, in the first language's order; warn about the others."""
    common = set.intersection(*(set(texts) for texts in by_lang.values()))
    first = next(iter(by_lang.values()))
    ids = [item for item in first if item in common]
    dropped = {lang: len(texts) - len(common) for lang, texts in by_lang.items() if len(texts) > len(common)}
    if dropped:
        warnings.warn(
            f"Probe data is not fully parallel: dropping ids missing from some language ({dropped} ids dropped per "
            f"language, {len(ids)} kept). Give every id a text in every language to keep them.",
            stacklevel=3,
        )
    return ParallelTexts(ids, {lang: [texts[item] for item in ids] for lang, texts in by_lang.items()})


def load_parallel_texts(data, *, languages=None, text_column: str | None = None) -> ParallelTexts:
    """Normalise probe input to `ParallelTexts` and check it is usable.

    Parameters:
        data (`dict`, `datasets.Dataset`, `list[dict]` or `str`):
            Parallel texts in one of the shapes listed in this module's docstring; a string is a file path.
        languages (`list[str]`, *optional*):
            Keep only these languages, in this order; each must be present in `data`. Defaults to all, in the
            order they appear.
        text_column (`str`, *optional*):
            Column holding the text in row-shaped data; defaults to `text`, else `question`.

    Raises:
        `ValueError`: fewer than two languages, lists of different lengths, no id shared by all languages, or a
        language whose texts are all empty.
    """
    if isinstance(data, (str, os.PathLike)):
        data = _read_rows(os.fspath(data))
    if isinstance(data, Mapping) and all(isinstance(v, Mapping) for v in data.values()):
        parallel = _align_by_id({lang: dict(texts) for lang, texts in data.items()})
    elif isinstance(data, Mapping):
        lengths = {lang: len(texts) for lang, texts in data.items()}
        if len(set(lengths.values())) > 1:
            raise DataError(
                f"`texts_by_lang` lists are aligned by position but have different lengths {lengths}; give every "
                "language the same items, or pass `{lang: {id: text}}` / rows with an `id` column to align by id."
            )
        parallel = ParallelTexts(list(range(min(lengths.values(), default=0))), {k: list(v) for k, v in data.items()})
    else:
        rows = data.to_list() if hasattr(data, "to_list") else list(data)
        parallel = _align_by_id(_from_rows(rows, text_column))
    if languages is not None:
        absent = [lang for lang in languages if lang not in parallel.texts]
        if absent:
            raise ConfigError(f"`languages` asks for {absent}, but the probe data has only {parallel.languages}.")
        parallel.texts = {lang: parallel.texts[lang] for lang in languages}
    if len(parallel.texts) < 2:
        raise DataError(
            f"The probe needs parallel texts in at least two languages to compare them; got {parallel.languages}."
        )
    if not parallel.ids:
        raise DataError(f"The probe data has no item present in every language of {parallel.languages}.")
    for lang, texts in parallel.texts.items():
        if not all(isinstance(text, str) for text in texts):
            raise DataError(f"Probe texts of language {lang!r} must be strings.")
        if not any(text.strip() for text in texts):
            raise DataError(f"Every probe text of language {lang!r} is empty; give it real text or leave it out.")
    return parallel
