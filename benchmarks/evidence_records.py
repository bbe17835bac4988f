"""The evidence benchmark's records: one JSON file per finished unit of work, under a directory that can be committed.

A unit is written only when it is whole (to a temporary name, then renamed), so an interrupted run leaves no cut
record and a resumed one (on this machine or a fresh one with the committed directory) redoes only what has no file.
Keys are paths: `setup`, `base/{split}/{protocol}`, `search/{arm}/lr={rate}`, `final/{arm}/seed={seed}`.
"""

from __future__ import annotations

import json
from pathlib import Path

from slam_trainer.errors import ResumeError
from slam_trainer.resume import claim_settings, write_atomic


DESIGN_FILE = "design.json"


def search_key(arm: str, rate: float) -> str:
    return f"search/{arm}/lr={rate:g}"


def final_key(arm: str, seed: int) -> str:
    return f"final/{arm}/seed={seed}"


def base_key(split: str, protocol: str) -> str:
    return f"base/{split}/{protocol}"


class Records:
    """The finished units of one model's run, read from `root` and added to as they finish."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.records: dict[str, dict] = {}
        for path in sorted(self.root.rglob("*.json")) if self.root.is_dir() else ():
            if path.name != DESIGN_FILE:
                record = json.loads(path.read_text(encoding="utf-8"))
                self.records[record["key"]] = record

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def __getitem__(self, key: str) -> dict:
        return self.records[key]

    def get(self, key: str, default=None):
        return self.records.get(key, default)

    def add(self, record: dict) -> dict:
        path = self.root / f"{record['key']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(record, indent=1, ensure_ascii=False) + "\n")
        self.records[record["key"]] = record
        return record


def check_design(root: Path, design: dict) -> None:
    """Refuse to add to records made with another design (they would not compare); write it on first use."""
    try:
        claim_settings(root, design, flag="--records_dir", name=DESIGN_FILE, remedy="or the flags it was made with")
    except ResumeError as error:
        raise SystemExit(f"bench_evidence: error: {error}") from None
