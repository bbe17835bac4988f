"""One optimizer step of SLAM's selective FFN training against full fine-tuning, same model and batch, one run.

Usage:
    python benchmarks/bench_selective_step.py                      # ~130M Llama-shaped model, CPU, fp32
    python benchmarks/bench_selective_step.py --preset 7b --device cuda --dtype bfloat16   # on a GPU

Each mode runs in its own fresh subprocess (so that peak memory is that mode's alone): build the model, freeze
(selective) or not (full), then time `steps` optimizer steps (forward, backward, AdamW) after `warmup` ones.
Reported: the ratio of median step times and of peak memory (CPU: max RSS; GPU: max allocated), next to the
arithmetic lower bound on the time ratio,

    (forward + activation-gradients + trained weight-gradients) / (forward + 2 x backward-half)
        = (1 + 1 + w) / 3,   w = trained matmul weights / all matmul weights (lm_head included),

because the backward pass still propagates activation gradients through every layer above the lowest trained one.
Results are appended to `benchmarks/results/selective_step.md`.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from results_file import append_section


PRESETS = {
    # ~134M parameters, Llama-shaped: hidden 768, FFN 2048, 12 layers, vocab 32000.
    "100m": dict(
        hidden_size=768,
        intermediate_size=2048,
        num_hidden_layers=12,
        num_attention_heads=12,
        num_key_value_heads=12,
        vocab_size=32000,
    ),
    # LLaMA-2-7B shape.
    "7b": dict(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32000,
    ),
}
RESULTS = Path(__file__).parent / "results" / "selective_step.md"


def run_mode(args) -> dict:
    import resource

    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from slam_trainer.freezing import freeze_except_ffn

    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    config = LlamaConfig(**PRESETS[args.preset], max_position_embeddings=max(2048, args.seq_len))
    model = AutoModelForCausalLM.from_config(config, dtype=dtype).to(args.device)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    report = freeze_except_ffn(model, range(args.layers)) if args.mode == "selective" else None
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5)
    batch = torch.randint(0, config.vocab_size, (args.batch_size, args.seq_len), device=args.device)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    phases = {"forward": [], "backward": [], "optimizer": [], "step": []}

    def now():
        if args.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    for step in range(args.warmup + args.steps):
        t0 = now()
        loss = model(input_ids=batch, labels=batch).loss
        t1 = now()
        loss.backward()
        t2 = now()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t3 = now()
        if step >= args.warmup:
            for phase, seconds in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                phases[phase].append(seconds)
    if args.device == "cuda":
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    matmul = [p for n, p in model.named_parameters() if p.dim() == 2 and "embed_tokens" not in n]
    return {
        "mode": args.mode,
        **{f"{phase}_seconds": statistics.median(values) for phase, values in phases.items()},
        "peak_bytes": peak,
        "trainable": sum(p.numel() for p in trainable),
        "total": sum(p.numel() for p in model.parameters()),
        "trained_matmul_share": sum(p.numel() for p in matmul if p.requires_grad) / sum(p.numel() for p in matmul),
        "share": report.share if report else 1.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="100m")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--seq_len", type=int, default=256)
    parser.add_argument("--layers", type=int, default=6, help="selective mode trains up+down of layers 0..N-1")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--gradient_checkpointing", action="store_true")
    parser.add_argument("--output", default=str(RESULTS), help="Markdown file the section is appended to.")
    parser.add_argument("--mode", choices=["selective", "full"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:  # child process: one mode
        print(json.dumps(run_mode(args)))
        return

    results = {}
    for mode in ("full", "selective"):
        child = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--mode", mode], capture_output=True, text=True, check=True
        )
        results[mode] = json.loads(child.stdout.strip().splitlines()[-1])
    full, selective = results["full"], results["selective"]
    time_ratio = selective["step_seconds"] / full["step_seconds"]
    memory_ratio = selective["peak_bytes"] / full["peak_bytes"]
    bound = (2 + selective["trained_matmul_share"]) / 3
    compute_ratio = (selective["forward_seconds"] + selective["backward_seconds"]) / (
        full["forward_seconds"] + full["backward_seconds"]
    )
    checkpointing = ", gradient checkpointing" if args.gradient_checkpointing else ""
    memory_kind = "max allocated" if args.device == "cuda" else "max RSS"
    lines = [
        f"### {args.preset} Llama-shaped ({full['total'] / 1e6:.0f}M params), {args.device} {args.dtype}, "
        f"batch {args.batch_size}x{args.seq_len}, layers 0-{args.layers - 1} up+down "
        f"({100 * selective['share']:.2f}% trainable){checkpointing}",
        "",
        f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}; "
        f"median of {args.steps} steps after {args.warmup} warm-up.",
        "",
        "| | full fine-tuning | SLAM selective | ratio |",
        "| --- | --- | --- | --- |",
        *(
            f"| {phase} | {full[phase + '_seconds']:.3f} s | {selective[phase + '_seconds']:.3f} s | "
            f"{selective[phase + '_seconds'] / full[phase + '_seconds']:.3f} |"
            for phase in ("forward", "backward", "optimizer", "step")
        ),
        f"| peak memory ({memory_kind}) | {full['peak_bytes'] / 2**30:.2f} GiB | "
        f"{selective['peak_bytes'] / 2**30:.2f} GiB | {memory_ratio:.3f} |",
        f"| trainable parameters | {full['trainable']:,} | {selective['trainable']:,} | "
        f"{selective['trainable'] / full['trainable']:.3f} |",
        "",
        f"Arithmetic bound on the time ratio (matmul FLOPs only): (2 + w) / 3 = {bound:.3f} with w = "
        f"{selective['trained_matmul_share']:.3f} (trained share of matmul weights); measured {time_ratio:.3f}. "
        f"The bound counts forward and backward FLOPs; it leaves out the optimizer update, which full fine-tuning "
        f"runs over all {full['trainable']:,} parameters (here {full['optimizer_seconds']:.3f} s vs "
        f"{selective['optimizer_seconds']:.3f} s), and the memory traffic of gradients for frozen weights. "
        f"Forward+backward alone: {compute_ratio:.3f}.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    append_section(
        args.output,
        "Selective (SLAM) vs full fine-tuning: one optimizer step",
        "benchmarks/bench_selective_step.py",
        text,
    )


if __name__ == "__main__":
    main()
