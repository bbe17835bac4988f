"""bf16 mixed precision against float32 on a real model, CPU or GPU: a training step and greedy generation.

Usage:
    python benchmarks/bench_precision.py                          # SmolLM2-135M-Instruct, CPU
    python benchmarks/bench_precision.py --model gemma3-270m      # Gemma-3-270M

Why: the evidence run trains Gemma-3-270M under bf16 autocast and evaluates it with bf16 weights, because this
machine's cores (AMX) make that cheaper; this measures how much, with both precisions in the same run and the
same process, interleaved (fp32, bf16, fp32, bf16, ...) so that a shared machine's load falls on both alike.

Measured, each as the median over `--repeats` rounds after one warm-up:
- a training step (forward, backward, AdamW) of full fine-tuning and of SLAM's selective FFN training (the first
  `--layers` layers, up+down), with float32 weights, without and with `torch.autocast(dtype=torch.bfloat16)`, as
  `bf16=True` runs it;
- greedy generation of `--new_tokens` tokens for a batch of prompts, with float32 weights and with the weights cast
  to bf16, as the evidence run evaluates; once as loaded, once with every weight frozen, and once frozen with the
  fix `slam eval` applies (`FROZEN_NOTE`).
Token ids are drawn at random: time depends on the shapes only, and generation runs exactly `--new_tokens` tokens.
Results are appended to `benchmarks/results/precision.md`.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from results_file import append_section


RESULTS = Path(__file__).parent / "results" / "precision.md"
FROZEN_NOTE = (
    "Frozen weights (every weight of a merged LoRA adapter is): `generate` computes the logits of the last position "
    "only, a strided slice of the hidden states; with an lm_head weight that does not require grad, `torch.matmul` "
    "runs that slice as `bmm` against the weight expanded over the batch, which on CPU in bf16 copies the whole "
    "matrix once per prompt (pytorch/pytorch#151934). `slam eval` hands the lm_head a contiguous input "
    "(`slam_trainer.evaluation.generation.contiguous_lm_head_input`), which folds to one `mm`."
)


def time_training_step(model, batch, autocast: bool) -> list[float]:
    """Seconds of one optimizer step, after a warm-up step with a fresh AdamW (its state's first allocation)."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    for _ in range(2):
        start = time.perf_counter()
        with torch.autocast(batch.device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return [time.perf_counter() - start]


def time_generation(model, prompts, new_tokens: int) -> float:
    """Seconds to generate exactly `new_tokens` greedy tokens for every prompt."""
    start = time.perf_counter()
    with torch.no_grad():
        model.generate(
            prompts,
            attention_mask=torch.ones_like(prompts),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
        )
    return time.perf_counter() - start


def measure(args) -> dict:
    """Median seconds per mode: (generate, as loaded or frozen, fp32 or bf16) and (train, full or slam, ...)."""
    from slam_trainer.evaluation.generation import contiguous_lm_head_input
    from slam_trainer.freezing import freeze_except_ffn
    from slam_trainer.loading import load_model_and_tokenizer

    torch.manual_seed(0)
    model, tokenizer = load_model_and_tokenizer(args.model, {"dtype": torch.float32})
    model.to(args.device)
    vocab = len(tokenizer)
    batch = torch.randint(100, vocab, (args.batch_size, args.seq_len), device=args.device)
    prompts = torch.randint(100, vocab, (args.prompts, args.prompt_len), device=args.device)
    medians = {}

    def interleaved(kind, variant, measure_once):
        runs = {"fp32": [], "bf16": []}
        for _ in range(args.repeats):
            for precision in runs:
                runs[precision] += measure_once(precision)
        for precision, seconds in runs.items():
            medians[(kind, variant, precision)] = statistics.median(seconds)

    def generation(precision):
        model.to(torch.bfloat16 if precision == "bf16" else torch.float32)
        return [time_generation(model, prompts, args.new_tokens)]

    model.eval()
    time_generation(model, prompts, 2)  # warm-up
    interleaved("generate", "loaded", generation)
    model.requires_grad_(False)
    interleaved("generate", "frozen", generation)
    with contiguous_lm_head_input(model):
        interleaved("generate", "frozen, contiguous", generation)
    model.to(torch.float32).requires_grad_(True).train()
    interleaved("train", "full", lambda precision: time_training_step(model, batch, precision == "bf16"))
    freeze_except_ffn(model, range(args.layers))
    interleaved("train", "slam", lambda precision: time_training_step(model, batch, precision == "bf16"))
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="offline short name, Hub id or folder")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seq_len", type=int, default=100)
    parser.add_argument("--layers", type=int, default=6, help="SLAM trains up+down of layers 0..N-1")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--prompt_len", type=int, default=150)
    parser.add_argument("--new_tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds per mode (median reported)")
    parser.add_argument("--output", default=str(RESULTS), help="Markdown file the section is appended to.")
    args = parser.parse_args()
    medians = measure(args)

    def row(label, kind, method):
        fp32, bf16 = medians[(kind, method, "fp32")], medians[(kind, method, "bf16")]
        return f"| {label} | {fp32:.2f} s | {bf16:.2f} s | {bf16 / fp32:.2f} |"

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    text = "\n".join(
        [
            f"### {args.model}, {args.device}, torch {torch.__version__}",
            "",
            f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads, load "
            f"average {load:.1f}; median of {args.repeats} interleaved rounds after one warm-up each.",
            "",
            "| | float32 | bf16 | ratio |",
            "| --- | --- | --- | --- |",
            row(f"training step, full fine-tuning (batch {args.batch_size}x{args.seq_len})", "train", "full"),
            row(f"training step, SLAM layers 0-{args.layers - 1} FFN up+down", "train", "slam"),
            row(f"generation, {args.prompts} prompts x {args.prompt_len} + {args.new_tokens}", "generate", "loaded"),
            row("generation, every weight frozen (`requires_grad_(False)`)", "generate", "frozen"),
            row(
                "generation, frozen, contiguous lm_head input (as `slam eval` runs it)",
                "generate",
                "frozen, contiguous",
            ),
            "",
            "Training: float32 weights, bf16 under `torch.autocast` (what `bf16=True` runs). Generation: the weights "
            "cast to bf16.",
            "",
            FROZEN_NOTE,
            "",
        ]
    )
    print(text)
    append_section(
        args.output,
        "bf16 mixed precision against float32: training step and generation",
        "benchmarks/bench_precision.py",
        text,
    )


if __name__ == "__main__":
    main()
