"""Training memory of Llama 1B-70B: full fine-tuning, LoRA and SLAM, counted byte by byte on the meta device, and
checked against the measured peak of a real small run.

Usage:
    python benchmarks/bench_memory.py                          # the table (meta device, ~1 min) + the CPU check
    python benchmarks/bench_memory.py --check_device cuda      # the check on a GPU (peak `max_memory_allocated`)
    python benchmarks/bench_memory.py --sizes 1B --skip_check  # a quick look

Every model is built on the `meta` device from its published config (typed in `CONFIGS` with the source), so the
counts are exact and cost no memory. Per method:

- weights, gradients and AdamW states (m and v): the bytes of every tensor as the method holds it;
- activations: the bytes of every tensor autograd saves for the backward pass, recorded with
  `torch.autograd.graph.saved_tensors_hooks` during a real forward pass of the meta model (so what transformers'
  Llama actually saves, including the float32 logits of the loss), with two kernels emulated on the meta device
  (`meta_kernels`): attention as a fused kernel saves it (q, k, v, output, log-sum-exp; no length x length
  scores), and bf16 autocast casts the inputs of linear/matmul/attention to bf16. With gradient checkpointing
  (transformers' per-layer checkpointing) the saved bytes are those outside the decoder layers, each layer's input,
  and one layer's own activations (recomputed during the backward pass, one layer at a time);
- backward transient: the gradients of the float32 logits (two tensors of batch x length x vocab x 4 bytes, from
  `nll_loss` and `log_softmax`), alive at the start of the backward pass.

Predicted peak = weights + AdamW states + max(activations + backward transient, gradients): at the start of the
backward pass the activations are all saved; by its end they are freed and the gradients exist (AdamW's per-tensor
temporaries on the largest tensor are left out). The check runs the same accounting on a small Llama, trains it for
two steps in a fresh process (the second step has the AdamW states) and compares: CPU peak = peak RSS (`VmHWM`,
reset just before the model is built; glibc's `MALLOC_MMAP_THRESHOLD_=131072` so that freed tensors leave the RSS)
minus the RSS then; GPU peak = `max_memory_allocated` minus the bytes allocated before. Results:
benchmarks/results/memory.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path


RESULTS = Path(__file__).parent / "results" / "memory.md"
GIB = 2**30
GPUS_GIB = (24, 40, 80)
SLAM_LAYERS = [0, 1, 2, 3, 4, 5]
LORA_RANK = 64

# Published configs (config.json of each Hub repository), the fields that set the tensor shapes.
CONFIGS = {
    "1B": (
        dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
             num_key_value_heads=8, head_dim=64, vocab_size=128256, tie_word_embeddings=True),
        "https://huggingface.co/meta-llama/Llama-3.2-1B/blob/main/config.json",
    ),
    "7B": (
        dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
             num_key_value_heads=32, vocab_size=32000, tie_word_embeddings=False),
        "https://huggingface.co/meta-llama/Llama-2-7b-hf/blob/main/config.json",
    ),
    "13B": (
        dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40,
             num_key_value_heads=40, vocab_size=32000, tie_word_embeddings=False),
        "https://huggingface.co/meta-llama/Llama-2-13b-hf/blob/main/config.json",
    ),
    "70B": (
        dict(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
             num_key_value_heads=8, vocab_size=32000, tie_word_embeddings=False),
        "https://huggingface.co/meta-llama/Llama-2-70b-hf/blob/main/config.json",
    ),
}  # fmt: skip
# The small Llama of the check (ours): ~170M parameters, small enough for this machine's memory.
CHECK_CONFIG = dict(
    hidden_size=1024, intermediate_size=2816, num_hidden_layers=8, num_attention_heads=16, num_key_value_heads=16,
    vocab_size=32000, tie_word_embeddings=False,
)  # fmt: skip

# A tiny Llama trained first in the measuring process, so that libraries' one-time allocations (lazy imports, kernel
# and thread-pool buffers) happen before the baseline is read.
WARMUP_CONFIG = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=6, num_attention_heads=4, vocab_size=512)

METHODS = {
    "full-mixed": "full fine-tuning, mixed precision (fp32 weights, bf16 autocast, fp32 AdamW)",
    "full-bf16": "full fine-tuning, pure bf16 (bf16 weights, gradients and AdamW states)",
    "lora": f"LoRA r {LORA_RANK} on all linear layers (bf16 base, fp32 adapters and AdamW, bf16 autocast)",
    "slam": "SLAM, up+down of layers 0-5 (bf16 frozen, fp32 trained tensors and AdamW, bf16 autocast)",
}


def build_model(config_kwargs: dict, method: str, device: str):
    """A Llama set up as `method` trains it: dtypes, `requires_grad`, adapters (on `device`, `meta` for counting)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from slam_trainer.freezing import freeze_except_ffn

    config = LlamaConfig(**config_kwargs, attn_implementation="sdpa")
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.float32 if method == "full-mixed" else torch.bfloat16)
    model.train()
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=LORA_RANK, target_modules="all-linear"))  # adapters in fp32
    elif method == "slam":
        freeze_except_ffn(model, SLAM_LAYERS)
        with torch.no_grad():  # the precision policy, as `SelectiveFFNCallback` applies it
            for param in model.parameters():
                if param.requires_grad:
                    param.data = param.data.to(torch.float32)
    return model


def uses_autocast(method: str) -> bool:
    return method != "full-bf16"


def state_bytes(model) -> dict[str, int]:
    """Weights, gradients and AdamW states (m, v in the dtype of each trained tensor, as `torch.optim.AdamW`)."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    trained = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return {
        "weights": weights,
        "gradients": trained,
        "optimizer": 2 * trained,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in model.parameters()),
    }


def meta_kernels(autocast: bool):
    """What a GPU (or CPU) run does that the meta device does not, as a `TorchFunctionMode`:

    - attention through a fused kernel (flash / memory-efficient, as `scaled_dot_product_attention` picks on a GPU
      and for these shapes on a CPU), which saves query, key, value, the output and a float32 log-sum-exp per row,
      not the batch x heads x length x length scores that the meta device's fallback (the math path) would save;
    - with `autocast`, bf16 autocast: the inputs of linear, matmul and attention are cast to bf16, as
      `torch.autocast` does (whose cast copies of float32 weights are then saved for the backward pass).
    """
    import torch
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode
    from torch.utils._pytree import tree_map

    lower = {F.linear, torch.matmul, torch.bmm, torch.Tensor.matmul, torch.Tensor.__matmul__}
    lower.add(F.scaled_dot_product_attention)

    def cast(value):
        if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != torch.bfloat16:
            return value.to(torch.bfloat16)
        return value

    class FusedAttention(torch.autograd.Function):
        @staticmethod
        def forward(ctx, query, key, value):
            output = torch.empty_like(query)
            log_sum_exp = query.new_empty(query.shape[:-1], dtype=torch.float32)
            ctx.save_for_backward(query, key, value, output, log_sum_exp)
            return output

        @staticmethod
        def backward(ctx, grad):  # never run: only what the forward saves is counted
            raise NotImplementedError

    class MetaKernels(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if autocast and func in lower:
                args, kwargs = tree_map(cast, args), tree_map(cast, kwargs)
            if func is F.scaled_dot_product_attention:
                return FusedAttention.apply(*args[:3])
            return func(*args, **kwargs)

    return MetaKernels()


def activation_bytes(model, method: str, batch: int, length: int) -> dict[str, int]:
    """Bytes autograd saves in one forward pass (each storage once, parameters excluded), without and with
    per-layer gradient checkpointing, and the backward transient."""
    import torch
    from torch.autograd.graph import saved_tensors_hooks

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = base.model.layers
    param_storages = {p.untyped_storage()._cdata for p in model.parameters()}
    saved: dict[int, tuple[int, int | None]] = {}  # storage -> (bytes, layer index or None)
    current: list[int | None] = [None]
    inputs: dict[int, int] = {}

    def enter(index):
        def hook(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            inputs[index] = hidden.numel() * hidden.element_size()
            current[0] = index

        return hook

    handles = [layer.register_forward_pre_hook(enter(i), with_kwargs=True) for i, layer in enumerate(layers)]
    handles += [layer.register_forward_hook(lambda *_: current.__setitem__(0, None)) for layer in layers]

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage._cdata not in param_storages and storage._cdata not in saved:
            saved[storage._cdata] = (storage.nbytes(), current[0])
        return tensor

    ids = torch.zeros(batch, length, dtype=torch.long, device=next(model.parameters()).device)
    with saved_tensors_hooks(pack, lambda tensor: tensor), meta_kernels(uses_autocast(method)):
        model(input_ids=ids, labels=ids)
    for handle in handles:
        handle.remove()
    per_layer = [sum(size for size, layer in saved.values() if layer == i) for i in range(len(layers))]
    outside = sum(size for size, layer in saved.values() if layer is None)
    vocab = base.config.vocab_size
    return {
        "activations": outside + sum(per_layer),
        "activations_checkpointed": outside + sum(inputs.values()) + max(per_layer),
        "transient": 2 * batch * length * vocab * 4,
    }


def account(config_kwargs: dict, method: str, batch: int, length: int, device: str = "meta") -> dict:
    model = build_model(config_kwargs, method, device)
    row = {**state_bytes(model), **activation_bytes(model, method, batch, length)}
    for kind, key in (("no_checkpointing", "activations"), ("checkpointing", "activations_checkpointed")):
        row[f"peak_{kind}"] = row["weights"] + row["optimizer"] + max(row[key] + row["transient"], row["gradients"])
    return row


def measure(method: str, batch: int, length: int, device: str) -> dict:
    """Train the check model for two steps (the second holds the AdamW states) and return its peak memory, counted from
    just before it was built, after a warm-up run of a tiny model of the same method."""
    import torch

    def status(field: str) -> int:  # bytes of a `/proc/self/status` field (kB)
        with open("/proc/self/status") as handle:
            return next(int(line.split()[1]) * 1024 for line in handle if line.startswith(field + ":"))

    ids = torch.randint(0, CHECK_CONFIG["vocab_size"], (batch, length), generator=torch.Generator().manual_seed(0))
    ids = ids.to(device)
    _train(build_model(WARMUP_CONFIG, method, device), ids % WARMUP_CONFIG["vocab_size"], method, device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # reset the peak RSS (VmHWM) to the current RSS
        before = status("VmRSS")
    _train(build_model(CHECK_CONFIG, method, device), ids, method, device)
    if device == "cuda":
        return {"measured_peak": torch.cuda.max_memory_allocated() - before}
    return {"measured_peak": status("VmHWM") - before}


def _train(model, ids, method: str, device: str) -> None:
    import torch

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, foreach=False)
    for _ in range(2):
        with torch.autocast(device, dtype=torch.bfloat16, enabled=uses_autocast(method)):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def gib(value: int) -> str:
    return f"{value / GIB:.2f}"


def table(rows: dict, sizes: list[str], batch: int, length: int) -> list[str]:
    lines = [
        f"Batch {batch} x {length} tokens, bf16 compute; parts in GiB; activations with gradient checkpointing "
        "(per decoder layer) and without. Fits: predicted peak with checkpointing <= the GPU's memory (no "
        "allowance for the CUDA context, ~0.5-1 GiB, or fragmentation).",
        "",
        "| size | method | trainable | weights | gradients | AdamW | activations (ckpt / none) | peak (ckpt / none) "
        "| fits 24 / 40 / 80 GB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size in sizes:
        for method in METHODS:
            row = rows[size][method]
            fits = " / ".join("yes" if row["peak_checkpointing"] <= gb * GIB else "no" for gb in GPUS_GIB)
            share = 100 * row["trainable_params"] / row["total_params"]
            lines.append(
                f"| {size} ({row['total_params'] / 1e9:.2f}B) | {method} | {share:.2f}% | {gib(row['weights'])} | "
                f"{gib(row['gradients'])} | {gib(row['optimizer'])} | {gib(row['activations_checkpointed'])} / "
                f"{gib(row['activations'])} | {gib(row['peak_checkpointing'])} / {gib(row['peak_no_checkpointing'])}"
                f" | {fits} |"
            )
    return lines


def check_lines(args) -> list[str]:
    size = account(CHECK_CONFIG, "full-bf16", 1, 8)["total_params"] / 1e6
    if args.check_device == "cuda":
        how = "`torch.cuda.max_memory_allocated()` minus the bytes allocated before the model was built."
    else:
        how = (
            "peak RSS (`VmHWM`, reset through `/proc/self/clear_refs` just before the model was built) minus the RSS "
            "then, in a fresh process after a warm-up run of a tiny model (so the interpreter, libraries and their "
            "one-time buffers are left out), with glibc's `MALLOC_MMAP_THRESHOLD_=131072` so that freed tensors leave "
            "the RSS (without it the RSS also holds the blocks the allocator kept after freeing them)."
        )
    lines = [
        "",
        f"### Check against a real run ({args.check_device}, {size:.0f}M-parameter Llama, batch {args.check_batch} x "
        f"{args.check_length}, no checkpointing)",
        "",
        f"Config (ours): `{json.dumps(CHECK_CONFIG)}`. Measured: {how} Two steps of AdamW (`foreach=False`), bf16 "
        "autocast where the method uses it.",
        "",
        "| method | predicted peak (GiB) | measured peak (GiB) | measured / predicted |",
        "| --- | --- | --- | --- |",
    ]
    for method in args.check_methods:
        predicted = account(CHECK_CONFIG, method, args.check_batch, args.check_length)["peak_no_checkpointing"]
        command = [sys.executable, __file__, "--measure", method, *_check_flags(args)]
        child = subprocess.run(command, capture_output=True, text=True, check=True, env=MEASURE_ENV)
        measured = json.loads(child.stdout.strip().splitlines()[-1])["measured_peak"]
        lines.append(f"| {method} | {gib(predicted)} | {gib(measured)} | {measured / predicted:.3f} |")
    return lines


# glibc keeps freed blocks below its (dynamically raised) mmap threshold resident, so RSS would report the allocator's
# high-water mark instead of live tensors; a fixed threshold of 128 KiB returns every tensor-sized block to the OS.
MEASURE_ENV = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}


def _check_flags(args) -> list[str]:
    return ["--check_device", args.check_device, "--check_batch", str(args.check_batch),
            "--check_length", str(args.check_length)]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--length", type=int, default=2048)
    parser.add_argument("--check_device", default="cpu")
    parser.add_argument("--check_batch", type=int, default=2)
    parser.add_argument("--check_length", type=int, default=256)
    parser.add_argument("--check_methods", nargs="+", choices=list(METHODS), default=["slam", "full-bf16", "lora"])
    parser.add_argument("--skip_check", action="store_true")
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument("--measure", choices=list(METHODS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # child process: one measured run
        print(json.dumps(measure(args.measure, args.check_batch, args.check_length, args.check_device)))
        return

    rows = {size: {m: account(CONFIGS[size][0], m, args.batch, args.length) for m in METHODS} for size in args.sizes}
    lines = [
        "# Training memory, Llama 1B-70B: full fine-tuning, LoRA, SLAM",
        "",
        "Produced by `python benchmarks/bench_memory.py` (method: its docstring). Machine for the check: "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}.",
        "",
        "Methods: " + "; ".join(f"**{name}**: {text}" for name, text in METHODS.items()) + ".",
        "",
        "Configs: " + ", ".join(f"[{size}]({CONFIGS[size][1]})" for size in args.sizes) + ".",
        "",
        *table(rows, args.sizes, args.batch, args.length),
    ]
    if not args.skip_check:
        lines += check_lines(args)
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text, encoding="utf-8")
    (Path(args.output).with_suffix(".json")).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
