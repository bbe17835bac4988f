"""Resuming into a folder without mixing two runs: the settings record, the writer's lock, atomic JSON writes.

A folder that long work writes into (an evaluation run, a benchmark's work directory) holds `settings.json`, what the
work was asked to do. `claim_settings` is the one guard every resumable command uses: it refuses a folder whose
recorded settings differ from the ones asked for, naming the differing keys and the flag to change, and then records
them (written atomically: a temporary file renamed into place, so a kill never leaves half a file). Some settings
are known only after expensive work starts (the fingerprint of a model's weights, once it is loaded): a first call
with `pending=("model_fingerprint",)` checks everything else before that work, a second call with the value checks
it too. `exclusive_lock` keeps a second process out of a folder while the first writes to it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from slam_trainer.errors import ResumeError


__all__ = ["SETTINGS_NAME", "claim_settings", "exclusive_lock", "read_settings", "write_atomic", "write_json_atomic"]

SETTINGS_NAME = "settings.json"
LOCK_NAME = ".slam.lock"


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write `data` (text as UTF-8) to `path` whole or not at all: a temporary file in the same folder, named for this
    process so that concurrent writers never share one, synced, renamed."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with temporary.open("wb") as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def write_json_atomic(path: str | Path, value) -> None:
    """Write `value` as JSON to `path` whole or not at all (`write_atomic`)."""
    write_atomic(path, json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def read_settings(directory: str | Path, flag: str, name: str = SETTINGS_NAME) -> dict | None:
    """The settings in `directory/name` (None when there are none); an unreadable record is a `ResumeError`."""
    path = Path(directory) / name
    if not path.exists():
        return None
    try:
        recorded = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        recorded = None
    if not isinstance(recorded, dict):
        raise ResumeError(
            f"`{flag}` {directory}: its {name} is unreadable (cut short or edited), so the work there cannot "
            f"be matched to these settings; pass a new `{flag}`, or delete the folder (or pass --overwrite) to start "
            "again."
        )
    return recorded


def claim_settings(
    directory: str | Path,
    settings: dict,
    *,
    flag: str = "--output_dir",
    pending: tuple[str, ...] = (),
    write: bool = True,
    remedy: str = "or --overwrite to start again",
    name: str = SETTINGS_NAME,
) -> dict | None:
    """Refuse `directory` if it holds work done with other `settings`, then record them (when `write`).

    Parameters:
        directory (`str` or `Path`):
            The folder; created when `write`.
        settings (`dict`):
            JSON-able settings; every key is compared with the recorded ones, both ways.
        flag (`str`, *optional*, defaults to `"--output_dir"`):
            The option that named the folder, as the user typed it (for the message).
        pending (`tuple[str]`, *optional*):
            Keys not known yet (left out of `settings`): compared when a later call gives them, and kept meanwhile.
        write (`bool`, *optional*, defaults to `True`):
            Record the settings (atomically); False only checks.
        remedy (`str`, *optional*):
            The end of the message's advice after "pass a new `flag`".
        name (`str`, *optional*, defaults to `"settings.json"`):
            The file in `directory` that holds the settings.

    Returns the settings recorded before, or None.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ResumeError(f"`{flag}` {directory} is a file; give a folder.")
    previous = read_settings(directory, flag, name)
    if previous is not None:
        keys = (settings.keys() | previous.keys()) - {key for key in pending if key not in settings}
        differing = sorted(key for key in keys if _jsonable(settings.get(key)) != previous.get(key))
        if differing:
            raise ResumeError(
                f"`{flag}` {directory} holds work done with other settings ({', '.join(differing)}); resuming would "
                f"mix the two. Pass a new `{flag}`, {remedy}."
            )
    if write:
        directory.mkdir(parents=True, exist_ok=True)
        kept = {key: previous[key] for key in pending if previous and key in previous and key not in settings}
        write_json_atomic(directory / name, {**settings, **kept})
    return previous


def _jsonable(value):
    """`value` as it reads back from JSON (tuples become lists), so that a fresh value compares with a recorded one."""
    return json.loads(json.dumps(value)) if value is not None else None


@contextmanager
def exclusive_lock(directory: str | Path, flag: str = "--output_dir") -> Iterator[None]:
    """Hold `directory`'s lock for the block; another process holding it is a `ResumeError` (no waiting).

    An advisory `flock` on `.slam.lock`: the system drops it when the holder exits, even by `kill -9`, so a stale lock
    never blocks a rerun.
    """
    import fcntl

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ResumeError(f"`{flag}` {directory} is a file; give a folder.")
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK_NAME, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ResumeError(
                f"`{flag}` {directory} is in use by {holder}, which is writing to it; wait for it to finish or pass "
                f"another `{flag}`."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
