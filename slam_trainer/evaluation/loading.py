"""Loading the model to evaluate (through `slam_trainer.loading`), on the device and in the dtype `slam eval` picks.

The tokenizer is prepared for batched generation here: left padding, and a pad token. A tokenizer without one gets
its end-of-sequence token as pad (the usual choice for decoder-only models; padding is masked, so it does not change
outputs); one with neither is an error.
"""

from __future__ import annotations

import torch

from slam_trainer.dtypes import DTYPES
from slam_trainer.errors import ConfigError, ModelError


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """`"auto"`: bfloat16 on a GPU that supports it, else float32 (bf16 matmuls on CPU are slow)."""
    if dtype == "auto":
        cuda_bf16 = device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else torch.float32
    choices = {name: getattr(torch, name) for name in DTYPES if name != "auto"}
    if dtype not in choices:
        raise ConfigError(f"`dtype` must be one of auto, {', '.join(choices)}; got {dtype!r}.")
    return choices[dtype]


def resolve_device(device: str) -> str:
    """`"auto"`: the first CUDA device when there is one, else the CPU. Anything else must name a device torch knows
    and that is present."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"`device` {device!r} is not a device; use auto, cpu, cuda or cuda:N.") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"`device` is {device!r} but no CUDA device is available; use `--device cpu`.")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ConfigError(f"`device` is {device!r} but there are {torch.cuda.device_count()} CUDA device(s).")
    elif parsed.type != "cpu" and not getattr(getattr(torch, parsed.type, None), "is_available", lambda: False)():
        raise ConfigError(f"`device` is {device!r} but no {parsed.type} device is available; use `--device cpu`.")
    return device


def read_model_config(model: str, trust_remote_code: bool = False, delta: str | None = None):
    """The text config of `model` (read without loading weights), for checks made before the model loads; with a
    `delta` that adds L² tags, the vocabulary size the model will have once it is applied."""
    from slam_trainer.loading import read_model_config as read_config

    config = read_config(model, trust_remote_code=trust_remote_code).get_text_config()
    if delta is not None:
        from slam_trainer.delta import DeltaMetadata, resolve_delta_directory

        config.vocab_size = DeltaMetadata.read(resolve_delta_directory(delta)).vocab_size or config.vocab_size
    return config


def context_window(config, tokenizer) -> int | None:
    """The longest sequence the model takes: its position limit, else the tokenizer's `model_max_length`."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and limit < 10**8 else None


def load_tokenizer(
    model: str, tokenizer: str | None = None, trust_remote_code: bool = False, delta: str | None = None
):
    """The tokenizer of `model` (or of `tokenizer`; `slam_trainer.loading`), set up for left-padded generation; with
    the L² tags of `delta` when it has some (`add_delta_tags`), so that prompts and the decoding intervention see
    them before the model loads."""
    from slam_trainer.loading import load_tokenizer as load

    loaded = load(model, tokenizer, trust_remote_code=trust_remote_code)
    if delta is not None:
        from slam_trainer.delta import add_delta_tags

        add_delta_tags(loaded, delta)
    loaded.padding_side = "left"
    if loaded.pad_token is None:
        if loaded.eos_token is None:
            raise ModelError(
                f"The tokenizer of {tokenizer or model} has neither a pad nor an end-of-sequence token; pass "
                "`--tokenizer` with one that has, or add a pad token and save the tokenizer."
            )
        loaded.pad_token = loaded.eos_token
    return loaded


def load_model(
    model: str,
    *,
    delta: str | None = None,
    tokenizer=None,
    dtype: str = "auto",
    device: str = "auto",
    trust_remote_code: bool = False,
):
    """The causal LM to evaluate, in eval mode on `device`, loaded by `slam_trainer.loading.load_model`.

    Parameters:
        model (`str`):
            A Hub id, local path or offline short name of a causal LM, or a local PEFT adapter directory (detected by
            its `adapter_config.json`; the adapter is merged into its base for faster generation).
        delta (`str`, *optional*):
            A saved FFN delta (`slam_trainer.delta`), applied in place on top of `model`.
        tokenizer (`PreTrainedTokenizerBase`, *optional*):
            The loaded tokenizer; a delta with L² tags needs it (`load_tokenizer(model, delta=delta)` adds them).
        dtype (`str`, *optional*, defaults to `"auto"`):
            `auto`, `bfloat16`, `float16` or `float32` (see `resolve_dtype`: `auto` here is bfloat16 on a GPU that
            supports it, else float32, not the checkpoint's dtype).
        device (`str`, *optional*, defaults to `"auto"`):
            `auto`, `cpu`, `cuda` or `cuda:N`.
        trust_remote_code (`bool`, *optional*, defaults to `False`):
            Run the model's own modelling code (`slam eval --trust_remote_code`).
    """
    from slam_trainer.loading import load_model as load

    device = resolve_device(device)
    kwargs = {"dtype": resolve_dtype(dtype, device), "device_map": None, "trust_remote_code": trust_remote_code}
    loaded = load(model, kwargs, delta=delta, tokenizer=tokenizer)
    return loaded.to(device).eval()
