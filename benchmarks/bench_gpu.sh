#!/usr/bin/env bash
# Every speed and memory benchmark on one GPU in bf16, with models built from configs (random weights: no download,
# no network), in one call of under 10 minutes. Results go to benchmarks/results/gpu/ (OUT=... to change).
#
#   make bench-gpu                                  # on a machine with a CUDA GPU (an H100: ~5 min expected)
#   make bench-gpu DEVICE=cpu QUICK=1 OUT=/tmp/gpu-dry    # dry run of the same commands at tiny sizes, on a CPU
#
# 1. step time and peak memory of one SLAM step vs a full fine-tuning step, 7B Llama shape (bench_selective_step.py);
# 2. the memory model, 1B-70B, checked against a real run on the GPU (bench_memory.py);
# 3. the language-layer probe's throughput vs a plain forward (bench_probe.py);
# 4. `slam eval`'s batched generation vs per-prompt `generate`, and the L² processor's cost (bench_eval.py), on a
#    config-built 1B-sized Llama with the package's synthetic MGSM-style prompts.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1

if [ "$QUICK" = 1 ]; then  # tiny sizes: checks that every command runs, measures nothing worth keeping
    STEP=(--preset 100m --batch_size 1 --seq_len 32 --steps 1 --warmup 0)
    MEMORY=(--sizes 1B --check_batch 1 --check_length 32 --check_methods slam)
    PROBE=(--hidden 64 --layers 2 --max_items 4 --repeats 1)
    EVAL_MODEL=(--hidden_size 64 --num_layers 2)
    EVAL=(--rows_per_lang 1 --max_new_tokens 4 --repeats 1 --processor_tokens 4)
else
    STEP=(--preset 7b --batch_size 2 --seq_len 512 --steps 3 --warmup 1)  # full FT in bf16: ~65 GiB
    MEMORY=(--check_batch 4 --check_length 1024)
    PROBE=(--hidden 1024 --layers 16 --batch_size 16 --max_items 64)
    EVAL_MODEL=(--hidden_size 2048 --num_layers 16)
    EVAL=(--rows_per_lang 8 --max_new_tokens 128 --batch_size 8)
fi

$PY benchmarks/bench_selective_step.py --device "$DEVICE" --dtype bfloat16 "${STEP[@]}" --output "$OUT/selective_step.md"
$PY benchmarks/bench_memory.py --check_device "$DEVICE" "${MEMORY[@]}" --output "$OUT/memory.md"
$PY benchmarks/bench_probe.py --device "$DEVICE" "${PROBE[@]}" --output "$OUT/probe.md"
$PY - "$OUT/eval_model" "${EVAL_MODEL[@]}" <<'PYTHON'
"""A config-built Llama (random weights) and the byte-level tokenizer, saved for bench_eval.py."""
import argparse

from slam_trainer.tiny import build_tiny_model, build_tiny_tokenizer

parser = argparse.ArgumentParser()
parser.add_argument("path")
parser.add_argument("--hidden_size", type=int)
parser.add_argument("--num_layers", type=int)
args = parser.parse_args()
heads = max(2, args.hidden_size // 128)  # head dimension 128, as Llama's
model = build_tiny_model(
    "llama", hidden_size=args.hidden_size, num_layers=args.num_layers, num_attention_heads=heads, num_key_value_heads=heads
)
model.save_pretrained(args.path)
build_tiny_tokenizer().save_pretrained(args.path)
PYTHON
$PY benchmarks/bench_eval.py --model "$OUT/eval_model" --data synthetic --dtype bfloat16 --device "$DEVICE" \
    "${EVAL[@]}" --output "$OUT/eval.md"
rm -rf "$OUT/eval_model"
echo "Results in $OUT/"
