"""Read MGSM/MSVAMP-style JSON-lines files: one row per problem and language (`id`, `lang`, `question`, `answer`).

Rows with the same `id` are translations of each other, so such a file is both a benchmark and a parallel corpus.
Columns are checked up front so that a wrong file fails with the line and the column, not deep inside training.
"""

from __future__ import annotations

import json
from pathlib import Path

from slam_trainer.languages import validate_languages


REQUIRED_COLUMNS = ("id", "lang", "question", "answer")


def load_jsonl_rows(path, *, required=REQUIRED_COLUMNS, languages=None) -> list[dict]:
    """Load the rows of a JSON-lines file, checking every row has the `required` columns.

    Parameters:
        path (`str` or `Path`):
            The file, e.g. `../shared/data/mgsm/mgsm.jsonl`.
        required (`tuple[str]`, *optional*, defaults to `("id", "lang", "question", "answer")`):
            Columns each row must have; add `"cot"` for chains of thought (MGSM's `exemplars.jsonl`).
        languages (`list[str]`, *optional*):
            Keep only rows in these languages (codes of the language registry); all rows by default.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"No such data file: {path}. Pass the path of a JSON-lines file with columns {', '.join(required)}."
        )
    keep = None if languages is None else set(validate_languages(languages))
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid JSON ({error.msg}).") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object per line, got {type(row).__name__}.")
            missing = [column for column in required if column not in row]
            if missing:
                raise ValueError(
                    f"{path}:{number}: missing column(s) {', '.join(missing)}; every row needs "
                    f"{', '.join(required)} (found {', '.join(row) or 'none'})."
                )
            if keep is None or row.get("lang") in keep:
                rows.append(row)
    return rows
