"""`slam eval` generation speed, measured against the alternatives in the same run.

Usage:
    python benchmarks/bench_eval.py [--model smollm2-135m-instruct] [--rows_per_lang 8] [--max_new_tokens 64]
        [--batch_size 8] [--device cpu] [--skip_processor]

1. Batched, length-sorted, left-padded generation (`TransformersBackend`, the code behind `slam eval`) against
   plain `model.generate` on one prompt at a time, on the same MGSM prompts (../shared/data), the same model, greedy,
   the same stops: tokens per second counted up to each output's stop, and whether the outputs agree.
2. The L² `LanguageSwitchLogitsProcessor`'s cost: `run_evaluation` with and without it on a tiny model (every row
   generates exactly `--processor_tokens`), median tokens/s over repeats.

Results go to benchmarks/results/eval.md (with the machine and the command) and are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from slam_trainer.evaluation.generation import TransformersBackend, batch_order
from slam_trainer.evaluation.loading import load_model, load_tokenizer
from slam_trainer.evaluation.prompts import build_prompts, chat_end_of_turn, stop_strings
from slam_trainer.evaluation.runner import EvalSettings, InterventionSettings, run_evaluation
from slam_trainer.l2.tags import language_tag
from slam_trainer.prompts import uses_chat_template
from slam_trainer.tiny import build_tiny_model, build_tiny_tokenizer


LANGS = ["en", "de", "zh"]
MGSM = Path("../shared/data/mgsm/mgsm.jsonl")


def mgsm_rows(rows_per_lang: int, data: str = str(MGSM)) -> list[dict]:
    """The first `rows_per_lang` rows per language of an MGSM-style file, or of the package's synthetic problems."""
    if data == "synthetic":
        from slam_trainer.data.synthetic import synthetic_rows

        rows = synthetic_rows(rows_per_lang, languages=LANGS)
    else:
        rows = [json.loads(line) for line in Path(data).open(encoding="utf-8")]
    return [row for lang in LANGS for row in [row for row in rows if row["lang"] == lang][:rows_per_lang]]


def batched_against_plain(args) -> list[str]:
    """Part 1: the same prompts through the batched backend and through plain per-prompt `generate`."""
    tokenizer = load_tokenizer(args.model)
    dtype = args.dtype or ("float32" if args.device == "cpu" else "auto")
    model = load_model(args.model, dtype=dtype, device=args.device)
    rows = mgsm_rows(args.rows_per_lang, args.data)
    chat = uses_chat_template(tokenizer)
    prompts = build_prompts(rows, "mathoctopus", tokenizer=tokenizer, chat_template=chat)
    end_of_turn = chat_end_of_turn(tokenizer) if chat else None
    stops = {lang: stop_strings("mathoctopus", lang) + ([end_of_turn] if end_of_turn else []) for lang in LANGS}
    backend = TransformersBackend(model, tokenizer, add_special_tokens=not chat, max_new_tokens=args.max_new_tokens)
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]

    started = time.perf_counter()
    batched = {}
    for batch in batch_order(rows, lengths, args.batch_size):
        lang = rows[batch[0]]["lang"]
        for index, completion in zip(
            batch, backend.generate([prompts[i] for i in batch], [0] * len(batch), stops[lang])
        ):
            batched[index] = completion
    batched_seconds = time.perf_counter() - started

    started = time.perf_counter()
    plain = {}
    for index, (row, prompt) in enumerate(zip(rows, prompts)):
        # Plain `generate` on one unpadded prompt; the same stops and the same counting of the output.
        plain[index] = backend.generate([prompt], [0], stops[row["lang"]])[0]
    plain_seconds = time.perf_counter() - started

    tokens = sum(completion.num_tokens for completion in batched.values())
    plain_tokens = sum(completion.num_tokens for completion in plain.values())
    same = sum(batched[i].text == plain[i].text for i in range(len(rows)))
    ended = sum(completion.stopped_by != "length" for completion in batched.values())
    return [
        f"## 1. Batched and length-sorted vs plain per-prompt `generate` ({args.model})",
        "",
        f"{len(rows)} {'synthetic MGSM-style' if args.data == 'synthetic' else 'MGSM'} prompts "
        f"({', '.join(LANGS)}; `mathoctopus` style, chat template "
        f"{'on' if chat else 'absent'}), greedy, at most {args.max_new_tokens} new tokens, stops "
        f"at end-of-sequence and the style's stop sequences; batch {args.batch_size} (one language per batch, longest "
        f"prompt first, left padding) against one `generate` call per prompt. Tokens are counted up to each output's "
        f"stop; {ended}/{len(rows)} outputs ended before the limit.",
        "",
        "| condition | seconds | tokens | tokens/s |",
        "| --- | --- | --- | --- |",
        f"| batched (slam eval) | {batched_seconds:.1f} | {tokens} | {tokens / batched_seconds:.1f} |",
        f"| plain generate, one prompt at a time | {plain_seconds:.1f} | {plain_tokens} | "
        f"{plain_tokens / plain_seconds:.1f} |",
        "",
        f"Speed-up: {(tokens / batched_seconds) / (plain_tokens / plain_seconds):.2f}x tokens/s. Identical outputs: "
        f"{same}/{len(rows)} (left padding changes floating-point sums slightly, which can flip a greedy near-tie).",
        "",
    ]


def processor_cost(args) -> list[str]:
    """Part 2: run_evaluation with and without the LanguageSwitchLogitsProcessor on a tiny model."""
    with tempfile.TemporaryDirectory() as workdir:
        workdir = Path(workdir)
        tokenizer = build_tiny_tokenizer()
        tokenizer.add_special_tokens({"additional_special_tokens": [language_tag(lang) for lang in LANGS]})
        model = build_tiny_model("llama", hidden_size=args.processor_hidden_size)
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        # Both conditions do the same work: every row generates exactly the budget (no early end of sequence).
        model.generation_config.min_new_tokens = args.processor_tokens
        tokenizer.save_pretrained(workdir / "model")
        model.save_pretrained(workdir / "model")
        rows = mgsm_rows(4, args.data)
        (workdir / "data.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
        settings = EvalSettings(
            model=str(workdir / "model"),
            data=str(workdir / "data.jsonl"),
            batch_size=4,
            max_new_tokens=args.processor_tokens,
            device=args.device,
            stop_strings=[],
        )
        intervention = InterventionSettings(beta=2.0, top_k=10, boundary="any")
        speeds = {"baseline": [], "switch": []}
        for _ in range(args.repeats):
            for result in run_evaluation(
                settings, workdir / "out", intervention=intervention, overwrite=True, progress=False
            ):
                speeds[result["run"]].append(result["throughput"]["tokens_per_second"])
    baseline, switch = (statistics.median(speeds[run]) for run in ("baseline", "switch"))
    return [
        "## 2. The LanguageSwitchLogitsProcessor's cost",
        "",
        f"Tiny Llama (hidden {args.processor_hidden_size}, 4 layers, vocab {len(tokenizer)}), random weights; "
        f"{len(rows)} MGSM prompts; batch 4, greedy, exactly {args.processor_tokens} new tokens; processor: beta 2, "
        f"top_k 10, boundary any (acts on every step); median of {args.repeats} repeats, baseline and switch "
        "alternating in one run.",
        "",
        "| condition | tokens/s (median) | all repeats |",
        "| --- | --- | --- |",
        f"| baseline | {baseline:.1f} | {', '.join(f'{s:.1f}' for s in speeds['baseline'])} |",
        f"| with processor | {switch:.1f} | {', '.join(f'{s:.1f}' for s in speeds['switch'])} |",
        "",
        f"Processor cost: {100 * (1 - switch / baseline):.1f}% of throughput (target: < 5%); "
        f"switch/baseline = {switch / baseline:.3f}.",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--rows_per_lang", type=int, default=8)
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--processor_hidden_size", type=int, default=256)
    parser.add_argument("--processor_tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip_processor", action="store_true")
    parser.add_argument("--output", default="benchmarks/results/eval.md")
    parser.add_argument("--data", default=str(MGSM), help="MGSM-style jsonl, or 'synthetic' (the package's problems).")
    parser.add_argument(
        "--dtype", help="Weights' dtype for part 1 (default: float32 on CPU, the stored one elsewhere)."
    )
    args = parser.parse_args()

    device_name = (
        torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU ({torch.get_num_threads()} threads)"
    )
    report = [
        "# `slam eval` generation speed",
        "",
        f"Machine: {platform.machine()} {device_name}, {os.cpu_count()} cores, torch {torch.__version__}. "
        f"Command: `{' '.join(['python', *sys.argv])}`. Load average at the start "
        f"{os.getloadavg()[0]:.1f} (other processes share this machine and slow every condition alike).",
        "",
    ]
    report += batched_against_plain(args)
    if not args.skip_processor:
        report += processor_cost(args)
    report.append(f"Load average at the end: {os.getloadavg()[0]:.1f}.")
    text = "\n".join(report) + "\n"
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
