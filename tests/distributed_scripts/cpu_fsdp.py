"""Make FSDP under accelerate run on the CPU test machine (2 ranks, gloo). Imported first by the scripts here.

accelerate 1.16 turns a run into FSDP only when the process group sits on an accelerator
(`AcceleratorState.__init__` checks for a `MULTI_GPU`/`MULTI_XPU`/... type); on CPU the run stays `MULTI_CPU`, the
FSDP plugin is dropped and the model is wrapped in DDP without a word. With `ACCELERATE_USE_FSDP=true` (what
`accelerate launch` sets for an FSDP config) this switches the CPU state to FSDP after accelerate built it, as it would
on GPUs. Test-machine shim only, never in the package; torch's `fully_shard` itself runs on CPU with gloo.
"""

import os

from accelerate.state import AcceleratorState, DistributedType, PartialState


if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
    _init = AcceleratorState.__init__

    def _init_with_cpu_fsdp(self, *args, fsdp_plugin=None, **kwargs):
        _init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if self.distributed_type == DistributedType.MULTI_CPU and fsdp_plugin is not None:
            self.distributed_type = DistributedType.FSDP
            if self._mixed_precision != "no":
                fsdp_plugin.set_mixed_precision(self._mixed_precision)
            self.fsdp_plugin = fsdp_plugin
            PartialState._shared_state["distributed_type"] = self.distributed_type  # as accelerate does

    AcceleratorState.__init__ = _init_with_cpu_fsdp
