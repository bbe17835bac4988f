"""Loading the model to evaluate: a Hub id or local path, a PEFT adapter directory, or a base model plus an FFN delta.

The tokenizer is prepared for batched generation here: left padding, and a pad token. A tokenizer without one gets
its end-of-sequence token as pad (the usual choice for decoder-only models; padding is masked, so it does not change
outputs); one with neither is an error.
"""

from __future__ import annotations

from pathlib import Path

import torch

from slam_trainer.dtypes import DTYPES


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """`"auto"`: bfloat16 on a GPU that supports it, else float32 (bf16 matmuls on CPU are slow)."""
    if dtype == "auto":
        cuda_bf16 = device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else torch.float32
    choices = {name: getattr(torch, name) for name in DTYPES if name != "auto"}
    if dtype not in choices:
        raise ValueError(f"`dtype` must be one of auto, {', '.join(choices)}; got {dtype!r}.")
    return choices[dtype]


def resolve_device(device: str) -> str:
    """`"auto"`: the first CUDA device when there is one, else the CPU. Anything else must name a device torch knows
    and that is present."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"`device` {device!r} is not a device; use auto, cpu, cuda or cuda:N.") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"`device` is {device!r} but no CUDA device is available; use `--device cpu`.")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"`device` is {device!r} but there are {torch.cuda.device_count()} CUDA device(s).")
    elif parsed.type != "cpu" and not getattr(getattr(torch, parsed.type, None), "is_available", lambda: False)():
        raise ValueError(f"`device` is {device!r} but no {parsed.type} device is available; use `--device cpu`.")
    return device


def model_source(model: str) -> str:
    """The local folder or Hub id whose config describes `model` (the base model of a PEFT adapter)."""
    from slam_trainer.offline_models import resolve_model_path

    return resolve_model_path(adapter_base(model) if is_adapter(model) else model)


def read_model_config(model: str):
    """The text config of `model` (read without loading weights), for checks made before the model loads."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(model_source(model)).get_text_config()


def context_window(config, tokenizer) -> int | None:
    """The longest sequence the model takes: its position limit, else the tokenizer's `model_max_length`."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and limit < 10**8 else None


def load_tokenizer(model: str, tokenizer: str | None = None):
    """The tokenizer of `model` (or of `tokenizer`), set up for left-padded batched generation."""
    from transformers import AutoTokenizer

    from slam_trainer.offline_models import resolve_model_path

    source = resolve_model_path(tokenizer or model, "--tokenizer" if tokenizer else "--model")
    if tokenizer is None and is_adapter(model):
        # Adapters are often saved without a tokenizer: fall back to the base model's.
        adapter_dir = Path(model)
        if not (adapter_dir / "tokenizer_config.json").exists():
            source = adapter_base(model)
    try:
        loaded = AutoTokenizer.from_pretrained(source)
    except OSError:
        argument = "tokenizer" if tokenizer else "model"
        raise ValueError(
            f"`{argument}` {source}: no tokenizer there; pass a local model folder or a Hub id (downloaded ones only "
            "when offline)."
        ) from None
    loaded.padding_side = "left"
    if loaded.pad_token is None:
        if loaded.eos_token is None:
            raise ValueError(
                f"The tokenizer of {source} has neither a pad nor an end-of-sequence token; pass `--tokenizer` with "
                "one that has, or add a pad token and save the tokenizer."
            )
        loaded.pad_token = loaded.eos_token
    return loaded


def is_adapter(model: str) -> bool:
    """Whether `model` is a local PEFT adapter directory."""
    return (Path(model) / "adapter_config.json").is_file()


def adapter_base(model: str) -> str:
    """The base model named in a PEFT adapter's config."""
    from peft import PeftConfig

    return PeftConfig.from_pretrained(model).base_model_name_or_path


def load_model(model: str, *, delta: str | None = None, dtype: str = "auto", device: str = "auto"):
    """The causal LM to evaluate, in eval mode on `device`.

    Parameters:
        model (`str`):
            A Hub id or local path of a causal LM, or a local PEFT adapter directory (detected by its
            `adapter_config.json`; the adapter is merged into its base for faster generation).
        delta (`str`, *optional*):
            A saved FFN delta (`slam_trainer.delta`), applied in place on top of `model`.
        dtype (`str`, *optional*, defaults to `"auto"`):
            `auto`, `bfloat16`, `float16` or `float32` (see `resolve_dtype`).
        device (`str`, *optional*, defaults to `"auto"`):
            `auto`, `cpu`, `cuda` or `cuda:N`.
    """
    from transformers import AutoModelForCausalLM

    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    if is_adapter(model):
        if delta is not None:
            raise ValueError("`delta` applies to a full base model, not to a PEFT adapter given as `model`.")
        from peft import AutoPeftModelForCausalLM

        loaded = AutoPeftModelForCausalLM.from_pretrained(model, dtype=torch_dtype).merge_and_unload()
    else:
        from slam_trainer.offline_models import resolve_model_path

        loaded = AutoModelForCausalLM.from_pretrained(resolve_model_path(model), dtype=torch_dtype)
        if delta is not None:
            from slam_trainer.delta import load_ffn_delta

            load_ffn_delta(loaded, delta)
    return loaded.to(device).eval()
