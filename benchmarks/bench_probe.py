"""Throughput of the language-layer probe against a plain forward pass over the same batches, in one run.

Usage:
    python benchmarks/bench_probe.py                 # CPU: a small Llama and a small Mixtral, fp32 and bf16
    OMP_NUM_THREADS=1 python benchmarks/bench_probe.py   # steadier on a small, shared CPU
    python benchmarks/bench_probe.py --device cuda --hidden 1024 --layers 16

Both sides run the same `ProbeBatch`es (the built-in corpus) through the same forward call; the probe adds the
counting hooks, with the counts kept per bootstrap unit as `identify_language_layers` keeps them. Runs alternate
(plain, probe, plain, ...) and the median of `--repeats` is kept, so load on the machine affects both alike.
Writes `benchmarks/results/probe.md` and prints it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

from slam_trainer.probe.batches import make_batches, tokenize_parallel
from slam_trainer.probe.corpus import load_probe_corpus
from slam_trainer.probe.counting import ActivationCounter, forward_kwargs, run_forward
from slam_trainer.probe.parallel import load_parallel_texts
from slam_trainer.probe.settings import BOOTSTRAP_UNITS, DEFAULTS
from slam_trainer.tiny import build_tiny_model, build_tiny_tokenizer


RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "probe.md")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed_pass(model, batches, kwargs, device, counter=None) -> float:
    _sync(device)
    start = time.perf_counter()
    for batch in batches:
        if counter is not None:
            counter.set_batch(batch)
        run_forward(model, batch, kwargs)
    _sync(device)
    return time.perf_counter() - start


def measure(model, batches, languages, units, device, repeats) -> tuple[float, float]:
    """Median seconds of a plain pass and of a probe pass over `batches`."""
    kwargs = forward_kwargs(model)
    plain, probe = [], []
    with torch.inference_mode():
        for _ in range(repeats + 1):  # the first round warms up and is dropped
            plain.append(_timed_pass(model, batches, kwargs, device))
            with ActivationCounter(model, len(languages), units) as counter:
                probe.append(_timed_pass(model, batches, kwargs, device, counter))
    return statistics.median(plain[1:]), statistics.median(probe[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_length", type=int, default=DEFAULTS["max_length"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max_items", type=int, default=24, help="First N corpus items (default: 24, 2-core CPU).")
    parser.add_argument("--output", default=RESULTS)
    args = parser.parse_args()

    tokenizer = build_tiny_tokenizer()
    corpus = {lang: dict(list(texts.items())[: args.max_items]) for lang, texts in load_probe_corpus().items()}
    parallel = load_parallel_texts(corpus)
    tokenized = tokenize_parallel(tokenizer, parallel, max_length=args.max_length)
    units = min(len(tokenized.ids), BOOTSTRAP_UNITS)  # as `identify_language_layers` keeps them
    batches = make_batches(tokenizer, tokenized, batch_size=args.batch_size, units=units)
    tokens = sum(batch.num_tokens for batch in batches)
    rows = []
    for architecture in ("llama", "mixtral"):
        for dtype in (torch.float32, torch.bfloat16):
            model = build_tiny_model(architecture, hidden_size=args.hidden, num_layers=args.layers)
            model = model.to(device=args.device, dtype=dtype).eval()
            plain, probe = measure(model, batches, parallel.languages, units, args.device, args.repeats)
            rows.append(
                f"| {architecture} | {str(dtype).removeprefix('torch.')} | {tokens / plain:,.0f} | "
                f"{tokens / probe:,.0f} | {plain / probe:.2f} |"
            )
    device = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
    )
    text = "\n".join(
        [
            "# Probe throughput vs plain forward",
            "",
            f"Device: {device}. Model: hidden {args.hidden}, {args.layers} layers, FFN 4x "
            "(Mixtral: 4 experts, top-2).",
            f"Data: built-in corpus, first {len(tokenized.ids)} items, {len(parallel.languages)} languages, "
            f"{len(batches)} batches of {args.batch_size}, {tokens:,} counted tokens, counts kept per item "
            f"(bootstrap units). Median of {args.repeats} alternating runs.",
            "",
            "| model | dtype | plain tokens/s | probe tokens/s | probe / plain |",
            "| --- | --- | --- | --- | --- |",
            *rows,
            "",
            f"Generated by `{' '.join(['python', 'benchmarks/bench_probe.py', *sys.argv[1:]])}`; the aim is probe / "
            "plain >= 0.8.",
        ]
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
