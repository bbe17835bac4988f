"""Distributed helpers in one place: what a ZeRO-3-partitioned parameter really is, making it whole for a moment,
and which process writes files or runs once for all.

Under DeepSpeed ZeRO-3 each rank holds an empty partition of every parameter; DeepSpeed records the full shape and
element count on it (`ds_shape`, `ds_numel`) and gathers it on request (`GatheredParameters`, a collective: every rank
must take part). Which process is the main one: see `is_main_process`.
"""

from __future__ import annotations

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
