"""Start-up costs a user meets first: importing the public classes against TRL's, and `slam ... --help`.

Usage:
    python benchmarks/bench_startup.py                  # writes results/startup.md
    python benchmarks/bench_startup.py --repeats 7

Each measurement is a fresh Python process (nothing cached in memory), the two imports alternating so that load on a
shared machine hits both alike; the median of `--repeats` is reported, and the ratio of the medians. `-X importtime`
then names what `slam_trainer` imports beyond what TRL's own line imports, with its own (self) time: the part of the
import the package is responsible for. The help commands are timed the same way and their line counts given.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


RESULTS = Path(__file__).resolve().parent / "results" / "startup.md"
REPO = Path(__file__).resolve().parents[1]
IMPORTS = {
    "trl": "from trl import SFTConfig, SFTTrainer",
    "slam_trainer": "from slam_trainer import SelectiveFFNConfig, SelectiveFFNTrainer",
}
HELPS = [["--help"], ["train", "--help"], ["train", "--help-all"], ["identify", "--help"]]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def timed(argv: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=_env(), cwd=REPO, check=True)
    return time.perf_counter() - start, done.stdout


def import_times(repeats: int) -> dict[str, list[float]]:
    times = {name: [] for name in IMPORTS}
    for _ in range(repeats):
        for name, line in IMPORTS.items():
            times[name].append(timed([sys.executable, "-c", line])[0])
    return times


def self_times(line: str) -> dict[str, int]:
    """Module -> its own import time in microseconds, from `python -X importtime`."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", line], capture_output=True, text=True, env=_env(), check=True
    )
    result = {}
    for row in done.stderr.splitlines():
        if row.startswith("import time:") and "self [us]" not in row:
            own, _, module = row.removeprefix("import time:").split("|")
            result[module.strip()] = int(own)
    return result


def main() -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    repeats = parser.parse_args().repeats
    times = import_times(repeats)
    medians = {name: statistics.median(values) for name, values in times.items()}
    ours, theirs = self_times(IMPORTS["slam_trainer"]), self_times(IMPORTS["trl"])
    extra = {module: own for module, own in ours.items() if module not in theirs}
    lines = [
        "# Start-up: the public import against TRL's, and `--help`",
        "",
        f"`python benchmarks/bench_startup.py --repeats {repeats}`; fresh processes, the two imports alternating; "
        f"median of {repeats}. Machine: {os.cpu_count()} CPU cores, shared (other jobs ran).",
        "",
        "| import | median s | runs (s) |",
        "| --- | --- | --- |",
    ]
    for name, line in IMPORTS.items():
        runs = ", ".join(f"{value:.2f}" for value in times[name])
        lines.append(f"| `{line}` | {medians[name]:.2f} | {runs} |")
    lines += [
        "",
        f"Ratio slam_trainer / trl: **{medians['slam_trainer'] / medians['trl']:.2f}**. Modules the package line "
        f"imports beyond TRL's: {len(extra)}, {sum(extra.values()) / 1e6:.3f} s of their own import time in all "
        "(the rest is TRL, transformers and torch, which both lines import):",
        "",
        "| module | self ms |",
        "| --- | --- |",
    ]
    lines += [
        f"| `{module}` | {own / 1000:.1f} |" for module, own in sorted(extra.items(), key=lambda kv: -kv[1])[:12]
    ]
    lines += ["", "| command | median s | lines printed |", "| --- | --- | --- |"]
    for argv in HELPS:
        runs = [timed([sys.executable, "-m", "slam_trainer.cli", *argv]) for _ in range(repeats)]
        median = statistics.median(seconds for seconds, _ in runs)
        lines.append(f"| `slam {' '.join(argv)}` | {median:.2f} | {len(runs[0][1].splitlines())} |")
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return "\n".join(lines)


if __name__ == "__main__":
    print(main())
