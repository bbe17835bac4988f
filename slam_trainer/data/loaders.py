"""Read MGSM/MSVAMP-style JSON-lines files: one row per problem and language (`id`, `lang`, `question`, `answer`).

Rows with the same `id` are translations of each other, so such a file is both a benchmark and a parallel corpus.
Columns are checked up front so that a wrong file fails with the line and the column, not deep inside training.
"""

from __future__ import annotations

import json
from pathlib import Path

from slam_trainer.errors import DataError
from slam_trainer.languages import validate_languages


REQUIRED_COLUMNS = ("id", "lang", "question", "answer")


def _check_file(path: Path, columns) -> None:
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; pass a JSON-lines data file (columns {', '.join(columns)}).")
    if not path.is_file():
        raise FileNotFoundError(
            f"No such data file: {path}. Pass the path of a JSON-lines file with columns {', '.join(columns)}."
        )


def iter_jsonl_rows(path, *, required=REQUIRED_COLUMNS):
    """(line number, row) for each non-blank line of a JSON-lines file, checked as `load_jsonl_rows` says."""
    path = Path(path)
    _check_file(path, required)
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{path}:{number}: not UTF-8 text; save the file as UTF-8.") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{path}:{number}: not valid JSON ({error.msg}).") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{number}: expected a JSON object per line, got {type(row).__name__}.")
            missing = [column for column in required if column not in row]
            if missing:
                raise DataError(
                    f"{path}:{number}: missing column(s) {', '.join(missing)}; every row needs "
                    f"{', '.join(required)} (found {', '.join(row) or 'none'})."
                )
            yield number, row


def load_jsonl_rows(path, *, required=REQUIRED_COLUMNS, languages=None) -> list[dict]:
    """Load the rows of a JSON-lines file (UTF-8), checking every row has the `required` columns.

    Errors name the file and line: a missing file or a directory, text that is not UTF-8, a line that is not a JSON
    object, a row without a required column.

    Parameters:
        path (`str` or `Path`):
            The file, e.g. `../shared/data/mgsm/mgsm.jsonl`.
        required (`tuple[str]`, *optional*, defaults to `("id", "lang", "question", "answer")`):
            Columns each row must have; add `"cot"` for chains of thought (MGSM's `exemplars.jsonl`).
        languages (`list[str]`, *optional*):
            Keep only rows in these languages (codes of the language registry); all rows by default.
    """
    keep = None if languages is None else set(validate_languages(languages))
    return [row for _, row in iter_jsonl_rows(path, required=required) if keep is None or row.get("lang") in keep]


def is_saved_dataset(path) -> bool:
    """Whether `path` is a folder written by `Dataset.save_to_disk` (what `slam l2-build` writes), which
    `datasets.load_from_disk` reads and `load_dataset` refuses."""
    path = Path(path)
    return path.is_dir() and (path / "state.json").is_file() and (path / "dataset_info.json").is_file()


def check_unique_rows(rows, where: str) -> None:
    """One rule for every command (ours): a file holds each (`id`, `lang`) pair once. A repeated pair is refused,
    naming both rows: keeping either would be a guess (the later silently winning, or one dropped)."""
    seen = {}
    for number, row in enumerate(rows, start=1):
        key = (str(row.get("id")), str(row.get("lang")))
        if key in seen:
            example_id, lang = row.get("id"), row.get("lang")
            raise DataError(
                f"{where}: rows {seen[key]} and {number} are both id {example_id!r} in language {lang!r}; each "
                "(id, lang) pair must be one row. Remove or renumber one of them."
            )
        seen[key] = number


def _json_document_rows(path: Path) -> int:
    """Rows of a file holding one JSON document (an array of rows, or an object of columns), as `datasets` reads
    `.json` files that are not JSON lines."""
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; save the file as UTF-8.") from None
    except json.JSONDecodeError as error:
        raise DataError(f"{path}:{error.lineno}: not valid JSON ({error.msg}).") from None
    return len(document) if isinstance(document, (list, dict)) else 0


def _utf8_lines(path: Path) -> int:
    """The non-blank lines of a text file, each checked to be UTF-8 (`datasets` fails mid-read, naming no line)."""
    count = 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise DataError(
                    f"{path}:{number}: not UTF-8 text (byte 0x{raw[error.start]:02x}; a Latin-1 or Windows-1252 "
                    "export?); save the file as UTF-8."
                ) from None
            count += bool(line.strip())
    return count


def check_data_file(path) -> None:
    """Fail early, naming the file (and line), on a training file that is missing, empty, or (`.jsonl`, `.json`) not
    valid JSON, instead of deep inside `datasets`."""
    path = Path(path)
    _check_file(path, ())
    with path.open("rb") as handle:
        head = handle.read(4096).removeprefix(b"\xef\xbb\xbf").lstrip()  # after a UTF-8 byte-order mark
    if path.suffix == ".json" and head.startswith(b"["):
        rows = _json_document_rows(path)
    elif path.suffix in (".jsonl", ".json"):
        try:
            rows = sum(1 for _ in iter_jsonl_rows(path, required=()))
        except ValueError as line_error:
            if path.suffix == ".jsonl":
                raise
            try:
                rows = _json_document_rows(path)  # an object of columns spread over lines
            except ValueError:
                raise line_error from None
    elif path.suffix == ".csv":
        rows = _utf8_lines(path)
    else:
        rows = path.stat().st_size
    if not rows:
        raise DataError(f"{path} is empty: it holds no rows to train on.")
