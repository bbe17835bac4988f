"""Forward hooks that count, per decoder layer, FFN neuron and language, how often the neuron is active (> 0).

The value read is the FFN non-linearity's output, one per intermediate neuron: `act_fn(gate_proj(x))` in gated
FFNs, `act(c_fc(x))` in GPT-2-style ones (the module `get_architecture_map` names as each layer's `activation`).
"Active" is `act > 0`, the same as "gate pre-activation > 0" for the sign-preserving activations the probe accepts
(`activation.py`). Only integer counts are kept, on the device of each layer, so memory does not grow with the
length of the corpus and a model sharded with `device_map="auto"` needs no transfer but the final one. The counts
are kept per bootstrap unit (a round-robin share of the parallel items, `batches.py`), so that the stability of
the choice can be measured by resampling counts instead of re-running the model: memory is
units x neurons x languages x 4 bytes (about 100 MB for a 135M model with 50 units and 11 languages).

MoE layers: a neuron is one intermediate unit of one expert, and it counts only on the tokens routed to that
expert. Expert banks (transformers 5) may run through fused kernels that never call `act_fn` per expert, so a
pre-hook on the experts module reads the routing (`top_k_index`) and evaluates `act_fn` on each routed expert's
gate projection itself; this costs one gate projection more per routed token, and reads only the bank's public
layout flags (`is_transposed`, `is_concatenated`, `has_bias`). A bank whose own gating adds clamps or casts around
`act_fn` (DeepSeek-V4, Step-3.7) keeps the gate's sign, so the same neurons count; a bank without a one-argument
`act_fn` (gpt-oss, Inkling-2) is refused. A shared expert, where present, is one more dense block.
The denominator stays all tokens of the language (our choice), so a neuron of an expert that a language is never
routed to has activation probability 0 for it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from slam_trainer.architectures import SHARED_EXPERT_NAMES, get_architecture_map
from slam_trainer.errors import ModelError
from slam_trainer.probe.activation import check_sign_preserving
from slam_trainer.probe.batches import ProbeBatch


@dataclass
class ActivationCounts:
    """How often each FFN neuron was active, per language, kept apart per bootstrap unit.

    Parameters:
        languages (`list[str]`): language codes, in the order of the last dimension of the counts.
        unit_active (`list[torch.Tensor]`): per decoder layer, int32 `[units, neurons, languages]` counts of tokens
            on which the neuron's activation was > 0 (MoE: experts' neurons one after the other, then the shared
            expert).
        unit_tokens (`torch.Tensor`): int64 `[units, languages]`, the counted (non-padding, non-special) tokens.
    """

    languages: list[str]
    unit_active: list[torch.Tensor]
    unit_tokens: torch.Tensor

    @property
    def num_units(self) -> int:
        return self.unit_tokens.shape[0]

    @property
    def active(self) -> list[torch.Tensor]:
        """Per layer, int64 `[neurons, languages]`: the counts over all units."""
        return [counts.sum(0, dtype=torch.int64) for counts in self.unit_active]

    @property
    def tokens(self) -> torch.Tensor:
        """int64 `[languages]`: counted tokens over all units."""
        return self.unit_tokens.sum(0)

    def probabilities(self) -> list[torch.Tensor]:
        """Per layer, `[neurons, languages]` activation probabilities P = active / tokens, in float64."""
        tokens = self.tokens.double()
        return [counts.double() / tokens for counts in self.active]


class _ExpertBank:
    """Reads the gate projection of each expert of a transformers-5 expert bank (3-D `gate_up_proj`)."""

    def __init__(self, experts: nn.Module, layer: int):
        weight = getattr(experts, "gate_up_proj", None)
        if not isinstance(weight, torch.Tensor) or weight.dim() != 3 or not getattr(experts, "has_gate", True):
            raise ModelError(
                f"The probe cannot read the experts of layer {layer} ({type(experts).__name__}): it supports MoE "
                "expert banks with a 3-D `gate_up_proj` (Mixtral, Qwen2-MoE, Qwen3-MoE in transformers 5)."
            )
        self.experts = experts
        self.transposed = getattr(experts, "is_transposed", False)
        self.concatenated = getattr(experts, "is_concatenated", True)
        self.num_experts = weight.shape[0]
        self.width = weight.shape[1 if not self.transposed else 2] // 2

    def gate(self, expert: int, hidden: torch.Tensor) -> torch.Tensor:
        weight = self.experts.gate_up_proj[expert]
        weight = weight.T if self.transposed else weight
        rows = slice(0, self.width) if self.concatenated else slice(0, None, 2)
        bias = self.experts.gate_up_proj_bias[expert][rows] if getattr(self.experts, "has_bias", False) else None
        return F.linear(hidden, weight[rows], bias)


class ActivationCounter:
    """Context manager holding the hooks; `set_batch` tells them which tokens count, for which language and unit."""

    def __init__(self, model: nn.Module, num_languages: int, num_units: int = 1):
        self.model = model
        self.num_languages = num_languages
        self.num_units = num_units
        self.layers = get_architecture_map(model).layers
        # Per layer and block: int32 [languages, units, neurons], so that one language's slice is contiguous.
        self._counts: list[dict[str, torch.Tensor]] = [{} for _ in self.layers]
        self._block_order: list[list[str]] = [[] for _ in self.layers]
        self._handles = []
        self._batch: ProbeBatch | None = None
        self._on_device: dict[torch.device, tuple[torch.Tensor, ...]] = {}

    def __enter__(self) -> ActivationCounter:
        seen = set()
        for layer in self.layers:
            if layer.activation is None:
                raise ModelError(
                    f"Layer {layer.index} ({layer.container}) has no activation module (`act_fn`/`act`) for the "
                    "probe to hook; choose `slam_layers` by hand for this architecture."
                )
            module = self.model.get_submodule(layer.activation)
            if id(module) in seen:
                raise ModelError(f"`{layer.activation}` is shared with another layer; the probe needs one per layer.")
            seen.add(id(module))
            check_sign_preserving(module, layer.activation)
            if layer.kind == "moe":
                experts = self.model.get_submodule(layer.activation.rsplit(".", 1)[0])
                bank = _ExpertBank(experts, layer.index)
                self._register(layer.index, "experts")
                hook = experts.register_forward_pre_hook(self._experts_hook(layer.index, bank), with_kwargs=True)
                self._handles.append(hook)
                container = self.model.get_submodule(layer.container)
                for attr in SHARED_EXPERT_NAMES:
                    shared_act = getattr(getattr(container, attr, None), "act_fn", None)
                    if isinstance(shared_act, nn.Module):
                        check_sign_preserving(shared_act, f"{layer.container}.{attr}.act_fn")
                        self._register(layer.index, attr)
                        self._handles.append(shared_act.register_forward_hook(self._dense_hook(layer.index, attr)))
            else:
                self._register(layer.index, "ffn")
                self._handles.append(module.register_forward_hook(self._dense_hook(layer.index, "ffn")))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def set_batch(self, batch: ProbeBatch) -> None:
        """The batch of the next forward pass: which tokens count (`count_mask`), its language and units."""
        self._batch, self._on_device = batch, {}

    def counts(self) -> list[torch.Tensor]:
        """Per layer, int32 `[units, neurons, languages]` on the CPU."""
        result = []
        for index, blocks in enumerate(self._counts):
            missing = [name for name in self._block_order[index] if name not in blocks]
            if missing:
                raise RuntimeError(f"The FFN of layer {index} never ran ({missing}); nothing was counted for it.")
            stacked = torch.cat([blocks[name].cpu() for name in self._block_order[index]], dim=-1)
            result.append(stacked.permute(1, 2, 0).contiguous())
        return result

    def _register(self, layer: int, block: str) -> None:
        self._block_order[layer].append(block)

    def _batch_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The batch's count mask on `device` as float32 `[batch, seq]` (to count by a matmul) and as flat bool (to
        select tokens), and the unit of every row."""
        if device not in self._on_device:
            mask = self._batch.count_mask.to(device, non_blocking=True)
            units = self._batch.units.to(device, non_blocking=True)
            self._on_device[device] = (mask.float(), mask.reshape(-1), units)
        return self._on_device[device]

    def _slot(self, layer: int, block: str, width: int, device: torch.device) -> torch.Tensor:
        """This batch's language's `[units, width]` counts of one block (created on first use)."""
        blocks = self._counts[layer]
        if block not in blocks:
            shape = (self.num_languages, self.num_units, width)
            blocks[block] = torch.zeros(shape, dtype=torch.int32, device=device)
        return blocks[block][self._batch.language]

    def _dense_hook(self, layer: int, block: str):
        def hook(module, args, output):
            weights, _, units = self._batch_on(output.device)
            width = output.shape[-1]
            if output.numel() != weights.numel() * width:
                raise RuntimeError(
                    f"Layer {layer}: the FFN saw {output.numel() // width} token positions but the batch has "
                    f"{weights.numel()}."
                )
            active = (output.reshape(*weights.shape, width) > 0).float()
            # Masked count per row as a batched float32 matrix-vector product: exact (sums stay far below 2**24),
            # and it copies no rows, unlike boolean indexing.
            per_row = torch.bmm(weights.unsqueeze(1), active).squeeze(1)
            self._slot(layer, block, width, output.device).index_add_(0, units, per_row.to(torch.int32))

        return hook

    def _experts_hook(self, layer: int, bank: _ExpertBank):
        def hook(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            top_k = args[1] if len(args) > 1 else kwargs["top_k_index"]
            weights, mask, units = self._batch_on(hidden.device)
            hidden = hidden.reshape(-1, hidden.shape[-1])[mask]
            top_k = top_k.reshape(-1, top_k.shape[-1])[mask]
            # Which batch row each counted token comes from, one-hot: per-row counts are then one small matmul
            # (cheaper than scattering every token's row into the unit counts).
            rows = torch.arange(weights.shape[0], device=hidden.device).repeat_interleave(weights.shape[1])[mask]
            row_of_token = F.one_hot(rows, weights.shape[0]).T.float()  # [batch, counted tokens]
            slot = self._slot(layer, "experts", bank.num_experts * bank.width, hidden.device)
            for expert in torch.unique(top_k).tolist():
                if expert >= bank.num_experts:  # transformers' placeholder for "no expert"
                    continue
                routed = (top_k == expert).any(-1)
                active = module.act_fn(bank.gate(expert, hidden[routed])) > 0
                per_row = row_of_token[:, routed] @ active.float()
                columns = slice(expert * bank.width, (expert + 1) * bank.width)
                slot[:, columns].index_add_(0, units, per_row.to(torch.int32))

        return hook


def forward_kwargs(model: nn.Module) -> dict:
    """`use_cache=False`, and logits for one position only where the model allows it: the probe needs no logits."""
    kwargs = {"use_cache": False}
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if "logits_to_keep" in inspect.signature(base.forward).parameters:
        kwargs["logits_to_keep"] = 1
    return kwargs


def run_forward(model: nn.Module, batch: ProbeBatch, kwargs: dict | None = None):
    """One forward pass of the model over a probe batch (shared by the probe and its benchmark baseline)."""
    device = model.get_input_embeddings().weight.device
    return model(
        input_ids=batch.input_ids.to(device),
        attention_mask=batch.attention_mask.to(device),
        position_ids=batch.position_ids.to(device),
        **(kwargs if kwargs is not None else forward_kwargs(model)),
    )


def count_activations(model: nn.Module, batches: list[ProbeBatch], languages: list[str], *, progress: bool = False):
    """Run the model once over `batches` with the counting hooks on; returns `ActivationCounts`.

    Parameters:
        model (`PreTrainedModel`): a causal LM, plain, PEFT-wrapped or sharded with `device_map`; any dtype.
        batches (`list[ProbeBatch]`): from `make_batches`; their `units` say how many bootstrap units to keep.
        languages (`list[str]`): the language codes that `ProbeBatch.language` indexes.
        progress (`bool`, *optional*, defaults to `False`): show a progress bar over the tokens fed (time left).
    """
    from tqdm.auto import tqdm

    num_units = max(int(batch.units.max()) for batch in batches) + 1
    tokens = torch.zeros(num_units, len(languages), dtype=torch.int64)
    kwargs = forward_kwargs(model)
    was_training = model.training
    model.eval()
    try:
        with ActivationCounter(model, len(languages), num_units) as counter, torch.inference_mode():
            # Counted in tokens fed (padding included: it costs the same), so the bar's time left is weighted by
            # what each batch costs, not by the number of batches.
            fed = sum(int(batch.input_ids.numel()) for batch in batches)
            bar = tqdm(total=fed, desc="Probing FFN neurons", unit="tok", unit_scale=True, disable=not progress)
            with bar:
                for batch in batches:
                    counter.set_batch(batch)
                    run_forward(model, batch, kwargs)
                    tokens[:, batch.language].index_add_(0, batch.units, batch.count_mask.sum(-1))
                    bar.update(int(batch.input_ids.numel()))
    finally:
        model.train(was_training)
    return ActivationCounts(list(languages), counter.counts(), tokens)
