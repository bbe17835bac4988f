"""FFN-delta vs full checkpoint: size and save time, measured in one run; on a GPU, SLAM vs full FT peak memory.

Usage:
    python benchmarks/bench_delta.py                    # CPU: size and save-time ratios, written to results/delta.md
    python benchmarks/bench_delta.py --device cuda      # adds the ZeRO-2 peak-memory comparison of a 7B shape

The CPU part saves a Llama-shaped model (LLaMA-2-7B proportions, scaled down so it runs anywhere) with
`save_pretrained` and its 6-layer up+down delta with `save_ffn_delta`, `--repeats` times each, and reports the ratios;
it also gives the delta share of a real LLaMA-2-7B shape, counted on the `meta` device. The GPU part trains one
step of a 7B-shaped Llama (bf16, ZeRO-2 via recipes/accelerate/ds_zero2.json, one process) with SLAM and with full
fine-tuning and reports each peak of `torch.cuda.max_memory_allocated`, or that full fine-tuning ran out of memory.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch


RESULTS = Path(__file__).resolve().parent / "results" / "delta.md"
LAYERS = [0, 1, 2, 3, 4, 5]
LLAMA2_7B = {"hidden_size": 4096, "intermediate_size": 11008, "num_layers": 32, "vocab_size": 32000}


def folder_bytes(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def timed(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def cpu_part(repeats: int) -> list[str]:
    from slam_trainer.delta import DELTA_WEIGHTS_NAME, save_ffn_delta
    from slam_trainer.freezing import freeze_except_ffn
    from slam_trainer.tiny import build_tiny_model

    # LLaMA-2-7B proportions (FFN 2.6875 x hidden, 32 layers) at hidden 512.
    model = build_tiny_model(
        "llama",
        hidden_size=512,
        intermediate_size=1376,
        num_layers=32,
        vocab_size=32000,
        num_attention_heads=8,
        num_key_value_heads=8,
    )
    report = freeze_except_ffn(model, LAYERS)
    with tempfile.TemporaryDirectory() as tmp:
        full_dir, delta_dir = os.path.join(tmp, "full"), os.path.join(tmp, "delta")
        full_s = timed(lambda: model.save_pretrained(full_dir), repeats)
        delta_s = timed(lambda: save_ffn_delta(model, delta_dir), repeats)
        full_b = folder_bytes(full_dir)
        delta_b = os.path.getsize(os.path.join(delta_dir, DELTA_WEIGHTS_NAME))

    with torch.device("meta"):
        big = build_tiny_model("llama", **LLAMA2_7B, num_attention_heads=32, num_key_value_heads=32)
    big_share = freeze_except_ffn(big, LAYERS).share
    return [
        f"- Model: Llama, 32 layers, hidden 512, FFN 1376, vocab 32000 ({report.total_params / 1e6:.1f}M params, "
        f"fp32); delta = layers 0-5 up+down; median of {repeats} saves",
        "",
        "| artefact | bytes | save time (s) |",
        "| --- | ---: | ---: |",
        f"| full checkpoint (`save_pretrained`) | {full_b:,} | {full_s:.3f} |",
        f"| FFN delta (`save_ffn_delta`, incl. fingerprint) | {delta_b:,} | {delta_s:.3f} |",
        f"| **delta / full** | **{delta_b / full_b:.3f}** | **{delta_s / full_s:.3f}** |",
        "",
        f"- LLaMA-2-7B shape (counted on `meta`): 6 layers up+down = {100 * big_share:.2f}% of the parameters, so the "
        f"delta is ~{100 * big_share:.1f}% of the full checkpoint in the same dtype.",
    ]


def gpu_peak(slam: bool) -> str:
    """Peak GPU memory of one ZeRO-2 training step of a 7B-shaped Llama (random weights, bf16)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from slam_trainer.config import SelectiveFFNConfig
    from slam_trainer.tiny import build_tiny_model, build_tiny_tokenizer
    from slam_trainer.trainer import SelectiveFFNTrainer

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29511")
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = build_tiny_model(
            "llama", **{**LLAMA2_7B, "vocab_size": 260}, num_attention_heads=32, num_key_value_heads=32
        )
    torch.set_default_dtype(torch.float32)
    fields = dict(
        output_dir=tempfile.mkdtemp(),
        max_steps=1,
        per_device_train_batch_size=1,
        bf16=True,
        activation_checkpointing=True,
        report_to="none",
        save_strategy="no",
        deepspeed=str(Path(__file__).resolve().parents[1] / "recipes" / "accelerate" / "ds_zero2.json"),
    )
    # Full fine-tuning is the same SFT run without the freezing.
    trainer_cls, args = (
        (SelectiveFFNTrainer, SelectiveFFNConfig(slam_layers=LAYERS, **fields))
        if slam
        else (SFTTrainer, SFTConfig(**fields))
    )
    data = Dataset.from_dict({"prompt": ["1+2="] * 8, "completion": [" 3" * 200] * 8})
    try:
        trainer_cls(model, args=args, train_dataset=data, processing_class=build_tiny_tokenizer()).train()
    except torch.cuda.OutOfMemoryError:
        return "out of memory"
    return f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=5)
    cli = parser.parse_args()
    lines = ["# FFN delta vs full checkpoint", "", "Written by `python benchmarks/bench_delta.py`.", ""]
    lines += cpu_part(cli.repeats)
    lines += ["", "## Peak GPU memory, 7B-shaped Llama, ZeRO-2, one GPU", ""]
    if cli.device == "cuda":
        slam, full = gpu_peak(slam=True), gpu_peak(slam=False)
        lines += [
            "| run | peak memory |",
            "| --- | ---: |",
            f"| SLAM (layers 0-5 up+down) | {slam} |",
            f"| full fine-tuning | {full} |",
            "",
            f"- Device: {torch.cuda.get_device_name()}",
        ]
    else:
        lines.append("Not run in this session (no GPU). Run `python benchmarks/bench_delta.py --device cuda` on one.")
    text = "\n".join(lines) + "\n"
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
