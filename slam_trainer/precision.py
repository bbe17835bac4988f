"""SLAM's precision policy: the trained tensors in float32, every frozen tensor as it was loaded.

SLAM's saving is the frozen part of the model, so the frozen weights should be held in half precision (load the model
with `dtype=torch.bfloat16`); the few trained tensors keep float32 values, gradients and AdamW states, so small
updates are not rounded away (LLaMA-Factory's freeze mode upcasts its trainable parameters the same way). Forward and
backward then run under the Trainer's `bf16`/`fp16` autocast, which casts each matmul's inputs to one dtype.

`slam_trainable_dtype="float32"` (ours) upcasts the trained tensors when the trainer is built; `"model"` keeps what
was loaded (pure bf16 training when the model was loaded in bf16). Under DeepSpeed the engine casts every parameter
to its own 16-bit dtype and its ZeRO optimizer keeps float32 master weights and states of the trained tensors only,
which is this policy already: nothing is upcast here. Under FSDP2 with mixed precision, accelerate upcasts the
trainable parameters to float32 itself (`MixedPrecisionPolicy` casts them to bf16 for compute).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.utils import logging

from slam_trainer.distributed import uses_deepspeed
from slam_trainer.errors import ConfigError


logger = logging.get_logger(__name__)

TRAINABLE_DTYPES = ("float32", "model")
HALF_DTYPES = (torch.bfloat16, torch.float16)


def check_trainable_dtype(value: str, flag: str = "slam_trainable_dtype") -> str:
    """`value` if it is one of `TRAINABLE_DTYPES`, else a `ConfigError` naming `flag`."""
    if value not in TRAINABLE_DTYPES:
        raise ConfigError(
            f"`{flag}` must be 'float32' (train the chosen tensors in float32, frozen ones as loaded) or 'model' "
            f"(keep the loaded dtype), got {value!r}."
        )
    return value


def autocast_dtype(args) -> torch.dtype | None:
    """The dtype the Trainer's forward autocasts to: bf16, or fp16 on an accelerator (accelerate does not autocast
    fp16 on a CPU); `None` when autocast is off."""
    if getattr(args, "bf16", False):
        return torch.bfloat16
    if getattr(args, "fp16", False) and args.device.type != "cpu":
        return torch.float16
    return None


def apply_precision_policy(model: nn.Module, to_train: dict[str, nn.Parameter], trainable_dtype: str, args) -> int:
    """Upcast the tensors of `to_train` to float32 (`trainable_dtype="float32"`) in place, after checking that the
    Trainer built with `args` can run the result; returns how many tensors were cast.

    Called before the optimizer exists, so that it holds (and keeps state for) the float32 tensors. A combination
    that cannot train is a `ConfigError` before anything changes: half-precision tensors mixed with float32 ones and
    no autocast (`F.linear` refuses mixed dtypes; a PEFT model's adapter layers cast for themselves), float16
    trained tensors under `fp16` (the gradient scaler refuses to unscale float16 gradients), or a half-precision model
    under DeepSpeed with neither `bf16` nor `fp16`.
    """
    check_trainable_dtype(trainable_dtype)
    params = [p for p in model.parameters() if p.is_floating_point()]
    trained = [p for p in to_train.values() if p.is_floating_point()]
    has_half = any(p.dtype in HALF_DTYPES for p in params)
    if uses_deepspeed(args):
        if has_half and not (getattr(args, "bf16", False) or getattr(args, "fp16", False)):
            raise ConfigError(
                "The model holds bfloat16/float16 weights and runs under DeepSpeed without its mixed precision: set "
                "`bf16=True` (`--bf16 true`), so that DeepSpeed keeps float32 master weights of the trained tensors, "
                "or load the model in float32."
            )
        return 0
    trained_dtype = {p.dtype for p in trained} if trainable_dtype == "model" else {torch.float32}
    if getattr(args, "fp16", False) and torch.float16 in trained_dtype:
        raise ConfigError(
            "`fp16=True` with float16 trained tensors (`slam_trainable_dtype='model'` on a float16 model) cannot "
            "train: the gradient scaler refuses float16 gradients. Use `slam_trainable_dtype='float32'` or `bf16`."
        )
    trained_ids = {id(p) for p in trained}
    frozen_dtypes = {p.dtype for p in params if id(p) not in trained_ids}
    peft = hasattr(model, "peft_config")  # PEFT's adapter layers cast their inputs to the adapter's dtype themselves
    if len(frozen_dtypes | trained_dtype) > 1 and autocast_dtype(args) is None and not peft:
        raise ConfigError(
            f"The frozen weights are {_names(frozen_dtypes)} and the trained tensors {_names(trained_dtype)}, and "
            "the Trainer does not autocast (`bf16` and `fp16` are off, or `fp16` on a CPU), so the forward would mix "
            "dtypes. Set `bf16=True` (`--bf16 true`), or `slam_trainable_dtype='model'` to train in the loaded dtype, "
            "or load the model in float32."
        )
    if trainable_dtype == "model":
        return 0
    cast = [p for p in trained if p.dtype != torch.float32]
    with torch.no_grad():
        for param in cast:
            param.data = param.data.to(torch.float32)
    if cast:
        logger.info("SLAM precision policy: %d trained tensors upcast to float32; frozen tensors kept.", len(cast))
    return len(cast)


def _names(dtypes: set[torch.dtype]) -> str:
    return "/".join(sorted(str(dtype).removeprefix("torch.") for dtype in dtypes))
