"""The evidence benchmark's records: one JSON file per finished unit of work, under a directory that can be committed.

A unit is written only when it is whole (to a temporary name, then renamed), so an interrupted run leaves no cut
record and a resumed one (on this machine or a fresh one with the committed directory) redoes only what has no file.
Keys are paths: `setup`, `base/{split}/{protocol}`, `search/{arm}/lr={rate}`, `final/{arm}/seed={seed}`, and
`topup/{arm}/seed={seed}`: a final run retrained later to score an evaluation it lacks (`with_top_ups`).
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


def topup_key(arm: str, seed: int) -> str:
    return f"topup/{arm}/seed={seed}"


def with_top_ups(records: dict[str, dict]) -> dict[str, dict]:
    """`records` with each top-up's evaluations added to its final run's (never replacing one the final has), and
    `top_up` on that final: whether the retraining reproduced it (the same training loss at every budget; on one
    thread the same seed and data order give the same steps) and the top-up's wall time. Records on disk stay as
    written: one file per unit."""
    merged = dict(records)
    for key, top_up in records.items():
        final = records.get(key.replace("topup/", "final/", 1)) if key.startswith("topup/") else None
        if final is None:
            continue
        losses = {budget: facts["train_loss"] for budget, facts in top_up["budgets"].items()}
        added = {name: scored for name, scored in top_up["evals"].items() if name not in final["evals"]}
        merged[final["key"]] = {
            **final,
            "evals": {**final["evals"], **added},
            "top_up": {
                "evaluations": sorted(added),
                "reproduced": losses == {budget: facts["train_loss"] for budget, facts in final["budgets"].items()},
                "train_loss": losses,
                "wall_seconds": top_up.get("wall_seconds"),
            },
        }
    return merged


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

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def written(self, key: str) -> bool:
        """Whether `key`'s record is on disk now (another process may have added it since this was read)."""
        return self.path(key).exists()

    def add(self, record: dict) -> dict:
        path = self.path(record["key"])
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
