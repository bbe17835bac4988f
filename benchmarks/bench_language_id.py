"""Language labels on MGSM's own texts: the identifier-based rule against the function-word heuristic it replaced.

Usage:
    python benchmarks/bench_language_id.py [--heuristic_rev 06a2dbb] [--output benchmarks/results/language_id.md]

Every MGSM question (250 per language) and exemplar answer (8 per language) carries its language, so both rules are
scored against the truth, and against each other (agreement); on the stored real model outputs, which carry no label,
only their agreement is counted. The old heuristic is read from git at `--heuristic_rev` (the last commit that had it).
Results go to benchmarks/results/language_id.md and are printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from slam_trainer.evaluation.language_id import detect_language
from slam_trainer.languages import LANGUAGES


MGSM = Path("../shared/data/mgsm")
REAL_OUTPUTS = Path("tests/data/real_outputs.jsonl")


def load_heuristic(revision: str):
    """`detect_language` of slam_trainer/evaluation/language_id.py as it was at `revision`."""
    source = subprocess.run(
        ["git", "show", f"{revision}:slam_trainer/evaluation/language_id.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False, encoding="utf-8") as handle:
        handle.write(source)
    spec = importlib.util.spec_from_file_location("heuristic_language_id", handle.name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.detect_language


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--heuristic_rev", default="06a2dbb")
    parser.add_argument("--output", default="benchmarks/results/language_id.md")
    args = parser.parse_args()
    heuristic = load_heuristic(args.heuristic_rev)
    texts = [
        (row["lang"], row["question"], f"question {row['id']}")
        for row in map(json.loads, (MGSM / "mgsm.jsonl").open())
    ]
    texts += [
        (row["lang"], row["cot"], f"exemplar {row['id']}")
        for row in map(json.loads, (MGSM / "exemplars.jsonl").open())
    ]
    detect_language("warm-up")  # load the identifier's model outside the timing
    started = time.perf_counter()
    ours = [detect_language(text) for _, text, _ in texts]
    seconds = time.perf_counter() - started
    old = [heuristic(text) for _, text, _ in texts]

    lines = [
        "# Language labels on MGSM's own texts",
        "",
        f"{len(texts)} texts: every MGSM question and exemplar answer (`../shared/data/mgsm`), each labelled with its "
        f"language. Identifier rule (`slam_trainer.evaluation.language_id`, py3langid) against the function-word "
        f"heuristic at {args.heuristic_rev}. Command: `python benchmarks/bench_language_id.py`. Identifier rule: "
        f"{1000 * seconds / len(texts):.2f} ms per text on this machine (CPU, Python {sys.version.split()[0]}).",
        "",
        "| lang | texts | identifier correct | heuristic correct | the two agree |",
        "| --- | --- | --- | --- | --- |",
    ]
    for lang in [*LANGUAGES, "all"]:
        picked = [i for i, (code, _, _) in enumerate(texts) if lang in ("all", code)]
        correct_ours = sum(ours[i] == texts[i][0] for i in picked)
        correct_old = sum(old[i] == texts[i][0] for i in picked)
        agree = sum(ours[i] == old[i] for i in picked)
        cells = [f"{count} ({100 * count / len(picked):.1f}%)" for count in (correct_ours, correct_old, agree)]
        lines.append(f"| {lang} | {len(picked)} | " + " | ".join(cells) + " |")
    outputs = [json.loads(line)["output"] for line in REAL_OUTPUTS.open(encoding="utf-8")]
    differ = [(heuristic(text), detect_language(text)) for text in outputs]
    differ = [pair for pair in differ if pair[0] != pair[1]]
    lines += [
        "",
        f"On the {len(outputs)} stored outputs of SmolLM2-135M-Instruct and Gemma-3-270M ({REAL_OUTPUTS}, no labels) "
        f"the two rules agree on {len(outputs) - len(differ)}; where they differ (heuristic → identifier): "
        + ", ".join(f"{old} → {new}" for old, new in differ)
        + ". The rows of tests/test_real_outputs.py say which a reader sees.",
    ]
    # Which texts, by id only: the MGSM text itself stays in ../shared/data.
    misses = [f"{texts[i][0]} {texts[i][2]} → {ours[i]}" for i in range(len(texts)) if ours[i] != texts[i][0]]
    lines += ["", "Texts the identifier rule labels wrongly: " + (", ".join(misses) or "none") + "."]
    report = "\n".join(lines) + "\n"
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(report, encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
