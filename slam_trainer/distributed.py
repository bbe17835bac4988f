"""Distributed helpers in one place: what a ZeRO-3- or FSDP2-sharded parameter really is, making it whole for a
moment, which launcher shards the model, and which process writes files or runs once for all.

Under DeepSpeed ZeRO-3 each rank holds an empty partition of every parameter; DeepSpeed records the full shape and
element count on it (`ds_shape`, `ds_numel`) and gathers it on request (`GatheredParameters`, a collective: every rank
must take part). Which process is the main one: see `is_main_process`.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch
from torch import nn


def full_shape(param: torch.Tensor) -> tuple[int, ...]:
    """The full shape, also under ZeRO-3 where the local tensor is an empty partition."""
    return tuple(getattr(param, "ds_shape", param.shape))


def numel(param: torch.Tensor) -> int:
    """Element count of a parameter, also when ZeRO-3 has partitioned it away (`ds_numel`)."""
    return int(getattr(param, "ds_numel", param.numel()))


def is_partitioned(model: nn.Module) -> bool:
    """Whether ZeRO-3 has partitioned the model's weights, so that no forward pass can run outside its engine."""
    return any(getattr(p, "ds_numel", 0) and p.numel() == 0 for p in model.parameters())


@contextmanager
def gathered(param: nn.Parameter, modifier_rank: int | None = None):
    """Make a ZeRO-3-partitioned parameter whole for the block (collective); a no-op for ordinary parameters.
    With `modifier_rank`, that rank's edits are partitioned back when the block ends."""
    if not hasattr(param, "ds_id"):
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters([param], modifier_rank=modifier_rank):
        yield


def full_tensor(param: nn.Parameter) -> torch.Tensor:
    """The whole value of a parameter: an FSDP2-sharded one (a `DTensor`) is all-gathered, which is collective, so
    every rank must call this; any other tensor is returned as it is (ZeRO-3: inside `gathered`)."""
    from torch.distributed.tensor import DTensor

    return param.full_tensor() if isinstance(param, DTensor) else param


def deepspeed_master(param: nn.Parameter) -> torch.Tensor | None:
    """DeepSpeed's float32 master copy of a trained parameter (collective), or `None` outside DeepSpeed or before its
    optimizer exists."""
    if not (hasattr(param, "_z3_optimizer") or hasattr(param, "_hp_mapping")):  # set on every rank, or on none
        return None
    from deepspeed.utils import safe_get_full_fp32_param

    return safe_get_full_fp32_param(param)


def model_class_name(model: nn.Module) -> str:
    """The model's class name; FSDP2's `fully_shard` swaps in a class `FSDP<Name>` deriving from it."""
    from torch.distributed.fsdp import FSDPModule

    cls = type(model)
    if issubclass(cls, FSDPModule):
        cls = next(base for base in cls.__bases__ if base is not FSDPModule)
    return cls.__name__


def uses_deepspeed(args) -> bool:
    """Whether the Trainer built with `args` runs under DeepSpeed (a JSON in `args.deepspeed`, or `accelerate
    launch` with a DeepSpeed config)."""
    return getattr(args, "deepspeed_plugin", None) is not None


def uses_fsdp(args) -> bool:
    """Whether the Trainer built with `args` shards the model with FSDP (`args.fsdp`, or `accelerate launch` with an
    FSDP config)."""
    return bool(getattr(args, "fsdp", None)) or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def is_distributed() -> bool:
    """Whether this process is one of several (`torch.distributed` is initialised)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def is_main_process() -> bool:
    """Whether this process writes the files and runs what is done once (rank 0, or the only process).

    With a process group, its rank decides: the group the collectives here run on, also when it was started
    without accelerate (`torchrun` + `init_process_group`, which accelerate's state does not see); otherwise
    accelerate's `PartialState` (the state `Trainer` uses) does."""
    if is_distributed():
        return torch.distributed.get_rank() == 0
    from accelerate import PartialState

    return PartialState().is_main_process


def broadcast_from_main(payload: object) -> object:
    """The main process's `payload`, on every process (the argument elsewhere is ignored); collective."""
    if not is_distributed():
        return payload
    shared = [payload]
    torch.distributed.broadcast_object_list(shared, src=0)
    return shared[0]
