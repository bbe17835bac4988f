"""Generation throughput of `slam eval` with and without the L² `LanguageSwitchLogitsProcessor`, in one run.

Usage:
    python benchmarks/bench_eval.py [--hidden_size 256] [--rows 12] [--max_new_tokens 32] [--repeats 3]

Both conditions run through `run_evaluation` (the code behind `slam eval`) on the same model and prompts (MGSM from
../shared/data when present, else a few synthetic questions); each repeat runs baseline then switch, and the report is
the ratio of median tokens/s. Results go to benchmarks/results/eval.md and are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

import torch

from slam_trainer.evaluation.runner import EvalSettings, InterventionSettings, run_evaluation
from slam_trainer.l2.tags import language_tag
from slam_trainer.tiny import build_tiny_model, build_tiny_tokenizer


LANGS = ["en", "de", "zh"]
MGSM = Path("../shared/data/mgsm/mgsm.jsonl")


def write_data(path: Path, rows_per_lang: int) -> str:
    if MGSM.is_file():
        rows = [json.loads(line) for line in MGSM.open(encoding="utf-8")]
        rows = [row for lang in LANGS for row in [row for row in rows if row["lang"] == lang][:rows_per_lang]]
        source = str(MGSM)
    else:
        rows = [
            {"id": i, "lang": lang, "question": f"What is {i} + {i}?", "answer": str(2 * i)}
            for lang in LANGS
            for i in range(rows_per_lang)
        ]
        source = "synthetic questions (../shared/data absent)"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden_size", type=int, default=256)
    parser.add_argument("--rows", type=int, default=12, help="rows in all (split over en, de, zh)")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--max_new_tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default="benchmarks/results/eval.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as workdir:
        workdir = Path(workdir)
        tokenizer = build_tiny_tokenizer()
        tokenizer.add_special_tokens({"additional_special_tokens": [language_tag(lang) for lang in LANGS]})
        model = build_tiny_model("llama", hidden_size=args.hidden_size)
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        # Both conditions do the same work: every row generates exactly max_new_tokens (no early end of sequence).
        model.generation_config.min_new_tokens = args.max_new_tokens
        tokenizer.save_pretrained(workdir / "model")
        model.save_pretrained(workdir / "model")
        source = write_data(workdir / "data.jsonl", args.rows // len(LANGS))
        device = "cuda" if torch.cuda.is_available() else "cpu"
        settings = EvalSettings(
            model=str(workdir / "model"),
            data=str(workdir / "data.jsonl"),
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
            device=device,
        )
        intervention = InterventionSettings(beta=2.0, top_k=10, boundary="any")
        speeds = {"baseline": [], "switch": []}
        for _ in range(args.repeats):
            for result in run_evaluation(
                settings, workdir / "out", intervention=intervention, overwrite=True, progress=False
            ):
                speeds[result["run"]].append(result["throughput"]["tokens_per_second"])

    baseline, switch = (statistics.median(speeds[run]) for run in ("baseline", "switch"))
    cost = 1 - switch / baseline
    device_name = (
        torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    )
    report = "\n".join(
        [
            "# `slam eval` generation throughput with and without the LanguageSwitchLogitsProcessor",
            "",
            f"Model: tiny Llama (hidden {args.hidden_size}, 4 layers, vocab {len(tokenizer)}), random weights; "
            f"{args.rows} prompts from {source}; batch {args.batch_size}, greedy, "
            f"exactly {args.max_new_tokens} new tokens; "
            f"device {device_name}; processor: beta 2, top_k 10, boundary any (acts on every step); "
            f"median of {args.repeats} repeats, baseline and switch alternating in one run; "
            f"load average at the end {os.getloadavg()[0]:.1f} (other processes distort CPU timings).",
            "",
            "| condition | tokens/s (median) | all repeats |",
            "| --- | --- | --- |",
            f"| baseline | {baseline:.1f} | {', '.join(f'{s:.1f}' for s in speeds['baseline'])} |",
            f"| with processor | {switch:.1f} | {', '.join(f'{s:.1f}' for s in speeds['switch'])} |",
            "",
            f"Processor cost: {100 * cost:.1f}% of throughput (target: < 5%); "
            f"switch/baseline = {switch / baseline:.3f}.",
            "",
        ]
    )
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(report, encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
