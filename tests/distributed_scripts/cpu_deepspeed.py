"""Make DeepSpeed under accelerate run on the CPU test machine (2 ranks, gloo). Imported first by the scripts here.

Two gaps of a GPU-less machine, closed for tests only, never in the package:

- accelerate 1.15 picks a process-group backend only for accelerators (`PartialState._prepare_backend`); under
  DeepSpeed without a GPU it finds none and every rank believes it is the only process (`num_processes == 1`).
  With `DS_ACCELERATOR=cpu` we give it gloo, as accelerate does for plain multi-CPU runs.
- DeepSpeed's CPU accelerator compiles a shared-memory all-reduce kernel on first use (about 2 minutes on 2 cores).
  It only speeds up the all-reduce; without it DeepSpeed uses torch.distributed's (gloo), so results are the same.
"""

import os

import deepspeed.ops
from accelerate.state import DistributedType, PartialState


if os.environ.get("DS_ACCELERATOR") == "cpu":
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    _prepare_backend = PartialState._prepare_backend

    def _prepare_backend_with_gloo(self, cpu=False, sagemaker_dp=False, backend=None):
        chosen, distributed_type = _prepare_backend(self, cpu, sagemaker_dp, backend)
        if chosen is None and int(os.environ.get("LOCAL_RANK", -1)) != -1:
            return "gloo", DistributedType.MULTI_CPU
        return chosen, distributed_type

    PartialState._prepare_backend = _prepare_backend_with_gloo
