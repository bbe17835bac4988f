"""Forward hooks that count, per decoder layer, FFN neuron and language, how often the neuron is active (> 0).

The value read is the FFN non-linearity's output, one per intermediate neuron: `act_fn(gate_proj(x))` in gated
FFNs, `act(c_fc(x))` in GPT-2-style ones (the module `get_architecture_map` names as each layer's `activation`).
Only running integer counts are kept, on the device of each layer, so memory does not grow with the corpus and a
model sharded with `device_map="auto"` needs no transfer but the final one.

MoE layers: a neuron is one intermediate unit of one expert, and it counts only on the tokens routed to that
expert. Expert banks (transformers 5) may run through fused kernels that never call `act_fn` per expert, so a
pre-hook on the experts module reads the routing (`top_k_index`) and evaluates each routed expert's gate
projection itself; this costs one gate projection more per routed token, and reads only the bank's public layout
flags (`is_transposed`, `is_concatenated`, `has_bias`). A shared expert, where present, is one more dense block.
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
from slam_trainer.probe.batches import ProbeBatch


@dataclass
class ActivationCounts:
    """How often each FFN neuron was active, per language.

    Parameters:
        languages (`list[str]`): language codes, in the order of the last dimension of `active`.
        active (`list[torch.Tensor]`): per decoder layer, int64 `[neurons, languages]` counts of tokens on which
            the neuron's activation was > 0 (MoE: experts' neurons one after the other, then the shared expert).
        tokens (`torch.Tensor`): int64 `[languages]`, the counted (non-padding, non-special) tokens per language.
    """

    languages: list[str]
    active: list[torch.Tensor]
    tokens: torch.Tensor

    def probabilities(self) -> list[torch.Tensor]:
        """Per layer, `[neurons, languages]` activation probabilities P = active / tokens, in float64."""
        return [counts.double() / self.tokens.double() for counts in self.active]


class _ExpertBank:
    """Reads the gate projection of each expert of a transformers-5 expert bank (3-D `gate_up_proj`)."""

    def __init__(self, experts: nn.Module, layer: int):
        weight = getattr(experts, "gate_up_proj", None)
        custom_gate = getattr(type(experts), "_apply_gate", None)
        default_gate = custom_gate is None or custom_gate.__name__ == "_default_apply_gate"
        if not isinstance(weight, torch.Tensor) or weight.dim() != 3 or not getattr(experts, "has_gate", True):
            raise ValueError(
                f"The probe cannot read the experts of layer {layer} ({type(experts).__name__}): it supports MoE "
                "expert banks with a 3-D `gate_up_proj` (Mixtral, Qwen2-MoE, Qwen3-MoE in transformers 5)."
            )
        if not default_gate:
            raise ValueError(
                f"The probe cannot read the experts of layer {layer} ({type(experts).__name__}): they apply a custom "
                "gating function, so `act_fn(gate)` is not their activation. Choose `slam_layers` by hand."
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
    """Context manager holding the hooks; `set_batch` tells them which tokens count and for which language."""

    def __init__(self, model: nn.Module, num_languages: int):
        self.model = model
        self.num_languages = num_languages
        self.layers = get_architecture_map(model).layers
        self._counts: list[dict[str, torch.Tensor]] = [{} for _ in self.layers]
        self._block_order: list[list[str]] = [[] for _ in self.layers]
        self._handles = []
        self._mask = None
        self._masks: dict[torch.device, torch.Tensor] = {}
        self._language = 0

    def __enter__(self) -> ActivationCounter:
        seen = set()
        for layer in self.layers:
            if layer.activation is None:
                raise ValueError(
                    f"Layer {layer.index} ({layer.container}) has no activation module (`act_fn`/`act`) for the "
                    "probe to hook; choose `slam_layers` by hand for this architecture."
                )
            module = self.model.get_submodule(layer.activation)
            if id(module) in seen:
                raise ValueError(f"`{layer.activation}` is shared with another layer; the probe needs one per layer.")
            seen.add(id(module))
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

    def set_batch(self, count_mask: torch.Tensor, language: int) -> None:
        """The tokens of the next forward pass that count (flattened `[batch * seq]` bool), and their language."""
        self._mask, self._masks, self._language = count_mask.reshape(-1), {}, language

    def counts(self) -> list[torch.Tensor]:
        """Per layer, int64 `[neurons, languages]` on the CPU."""
        result = []
        for index, blocks in enumerate(self._counts):
            missing = [name for name in self._block_order[index] if name not in blocks]
            if missing:
                raise RuntimeError(f"The FFN of layer {index} never ran ({missing}); nothing was counted for it.")
            result.append(torch.cat([blocks[name].cpu() for name in self._block_order[index]]))
        return result

    def _register(self, layer: int, block: str) -> None:
        self._block_order[layer].append(block)

    def _mask_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's count mask on `device`, as bool (to select rows) and as float32 (to count by a matmul)."""
        if device not in self._masks:
            mask = self._mask.to(device, non_blocking=True)
            self._masks[device] = (mask, mask.float())
        return self._masks[device]

    def _slot(self, layer: int, block: str, width: int, device: torch.device) -> torch.Tensor:
        blocks = self._counts[layer]
        if block not in blocks:
            blocks[block] = torch.zeros(width, self.num_languages, dtype=torch.int64, device=device)
        return blocks[block]

    def _dense_hook(self, layer: int, block: str):
        def hook(module, args, output):
            active = output.reshape(-1, output.shape[-1]) > 0
            weights = self._mask_on(active.device)[1]
            if active.shape[0] != weights.shape[0]:
                raise RuntimeError(
                    f"Layer {layer}: the FFN saw {active.shape[0]} token positions but the batch has "
                    f"{weights.shape[0]}."
                )
            slot = self._slot(layer, block, active.shape[-1], active.device)
            # Masked count as a float32 matrix-vector product: exact (sums stay far below 2**24), and it copies no
            # rows, unlike boolean indexing.
            slot[:, self._language] += (weights @ active.float()).long()

        return hook

    def _experts_hook(self, layer: int, bank: _ExpertBank):
        def hook(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            top_k = args[1] if len(args) > 1 else kwargs["top_k_index"]
            mask = self._mask_on(hidden.device)[0]
            hidden = hidden.reshape(-1, hidden.shape[-1])[mask]
            top_k = top_k.reshape(-1, top_k.shape[-1])[mask]
            slot = self._slot(layer, "experts", bank.num_experts * bank.width, hidden.device)
            for expert in torch.unique(top_k).tolist():
                if expert >= bank.num_experts:  # transformers' placeholder for "no expert"
                    continue
                routed = hidden[(top_k == expert).any(-1)]
                active = module.act_fn(bank.gate(expert, routed)) > 0
                slot[expert * bank.width : (expert + 1) * bank.width, self._language] += active.sum(0)

        return hook


def _forward_kwargs(model: nn.Module) -> dict:
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
        **(kwargs if kwargs is not None else _forward_kwargs(model)),
    )


def count_activations(model: nn.Module, batches: list[ProbeBatch], languages: list[str], *, progress: bool = False):
    """Run the model once over `batches` with the counting hooks on; returns `ActivationCounts`.

    Parameters:
        model (`PreTrainedModel`): a causal LM, plain, PEFT-wrapped or sharded with `device_map`; any dtype.
        batches (`list[ProbeBatch]`): from `make_batches`.
        languages (`list[str]`): the language codes that `ProbeBatch.language` indexes.
        progress (`bool`, *optional*, defaults to `False`): show a progress bar.
    """
    from tqdm.auto import tqdm

    tokens = torch.zeros(len(languages), dtype=torch.int64)
    kwargs = _forward_kwargs(model)
    was_training = model.training
    model.eval()
    try:
        with ActivationCounter(model, len(languages)) as counter, torch.inference_mode():
            for batch in tqdm(batches, desc="Probing FFN neurons", unit="batch", disable=not progress):
                counter.set_batch(batch.count_mask, batch.language)
                run_forward(model, batch, kwargs)
                tokens[batch.language] += batch.num_tokens
    finally:
        model.train(was_training)
    return ActivationCounts(list(languages), counter.counts(), tokens)
