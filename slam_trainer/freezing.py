"""Choose and freeze parameters: only the chosen layers' FFN projections (and any `extra`) stay trainable.

This is SLAM's whole training-side intervention: every parameter gets `requires_grad=False`, then the chosen
tensors are re-enabled, before an optimizer exists, so the optimizer only ever sees (and keeps state for) those.
The returned `FreezeReport` says what trains; its counts read DeepSpeed's `ds_numel`, so they are right under
ZeRO-3 partitioning and on the `meta` device.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from slam_trainer.architectures import FFNTensor, full_shape, get_architecture_map


# Aliases accepted in `extra`, resolved structurally.
EXTRA_ALIASES = ("embeddings", "lm_head", "final_norm")
FINAL_NORM_NAMES = ("norm", "ln_f", "final_layer_norm", "final_layernorm", "norm_f")
_MASK_HOOKS_ATTR = "_slam_gradient_mask_hooks"
PEFT_OWN_TRAINABLE = ("modules_to_save.", "trainable_tokens_")


@dataclass
class FreezeReport:
    """What `freeze_except_ffn` left trainable.

    Parameters:
        model_class (`str`): class name of the model.
        layers (`list[int]`): trained decoder layers, 0-indexed from the bottom.
        projections (`list[str]`): trained FFN roles.
        trainable_params (`int`): elements that train; of a fused tensor only the chosen half counts.
        total_params (`int`): all elements of the model.
        optimizer_params (`int`): elements of the tensors with `requires_grad=True`, i.e. what the optimizer
            holds; it exceeds `trainable_params` only when a fused tensor is half-trained behind a gradient mask.
        names_by_layer (`dict[int, list[str]]`): trained tensor names per layer.
        extra_names (`list[str]`): tensors trained through `extra`.
        masked_names (`list[str]`): fused tensors of which a gradient mask keeps the other half unchanged.
        peft (`bool`): the trained tensors are PEFT adapter weights on the chosen projections.
    """

    model_class: str
    layers: list[int]
    projections: list[str]
    trainable_params: int
    total_params: int
    optimizer_params: int
    names_by_layer: dict[int, list[str]] = field(default_factory=dict)
    extra_names: list[str] = field(default_factory=list)
    masked_names: list[str] = field(default_factory=list)
    peft: bool = False

    @property
    def share(self) -> float:
        """Trainable share of all parameters, in [0, 1]."""
        return self.trainable_params / self.total_params if self.total_params else 0.0

    @property
    def trainable_names(self) -> list[str]:
        return [name for names in self.names_by_layer.values() for name in names] + self.extra_names

    def to_dict(self) -> dict:
        return {**asdict(self), "share": self.share}

    def __str__(self) -> str:
        what = "LoRA adapters on " if self.peft else ""
        lines = [f"SLAM: training {what}{'+'.join(self.projections)} of layers {self.layers} of {self.model_class}"]
        for layer, names in self.names_by_layer.items():
            shown = sorted({name.rpartition(f".{layer}.")[2] for name in names})
            lines.append(f"  layer {layer:>3}  {', '.join(shown)}")
        if self.extra_names:
            lines.append(f"  extra      {', '.join(self.extra_names)}")
        lines.append(
            f"  trainable  {self.trainable_params:,} / {self.total_params:,} parameters ({100 * self.share:.2f}%)"
        )
        if self.masked_names:
            lines.append(f"  fused tensors half-trained behind a gradient mask: {', '.join(self.masked_names)}")
        return "\n".join(lines)


def numel(param: torch.Tensor) -> int:
    """Element count of a parameter, also when ZeRO-3 has partitioned it away (`ds_numel`)."""
    return int(getattr(param, "ds_numel", param.numel()))


def _peft_adapter_params(model: nn.Module, module_name: str) -> list[tuple[str, nn.Parameter]]:
    """Adapter parameters (everything but `base_layer`) of a PEFT-wrapped projection."""
    module = model.get_submodule(module_name)
    if not hasattr(module, "base_layer"):
        return []
    return [
        (f"{module_name}.{name}", param)
        for name, param in module.named_parameters()
        if not name.startswith("base_layer.")
    ]


def _final_norm_names(model: nn.Module, layers_path: str) -> list[str]:
    parent_path = layers_path.rpartition(".")[0]
    parent = model.get_submodule(parent_path) if parent_path else model
    for attr in FINAL_NORM_NAMES:
        if isinstance(getattr(parent, attr, None), nn.Module):
            prefix = f"{parent_path}.{attr}" if parent_path else attr
            return [f"{prefix}.{name}" for name, _ in getattr(parent, attr).named_parameters()]
    return []


def resolve_extra(model: nn.Module, extra: str | Sequence[str], layers_path: str) -> list[str]:
    """Parameter names selected by `extra`.

    A string is a full-match regex on dotted parameter names; a list holds aliases (`"embeddings"`, `"lm_head"`,
    `"final_norm"`) or names matched exactly or by suffix (`name == t or name.endswith("." + t)`), as PEFT matches
    `target_modules`. Each entry must match something.
    """
    names = {id(param): name for name, param in model.named_parameters()}
    if isinstance(extra, str):
        matched = [name for name in names.values() if re.fullmatch(extra, name)]
        if not matched:
            raise ValueError(f"`extra` regex {extra!r} matches no parameter name of {type(model).__name__}.")
        return matched
    selected = []
    for target in extra:
        if target == "embeddings":
            module = model.get_input_embeddings()
            matched = [names[id(p)] for p in module.parameters()] if module is not None else []
        elif target == "lm_head":
            module = model.get_output_embeddings()
            matched = [names[id(p)] for p in module.parameters()] if module is not None else []
        elif target == "final_norm":
            matched = _final_norm_names(model, layers_path)
        else:
            matched = [
                name
                for name in names.values()
                if name == target
                or name.endswith("." + target)
                or name.startswith(target + ".")
                or ("." + target + ".") in name
            ]
        if not matched:
            raise ValueError(
                f"`extra` entry {target!r} matches no parameter of {type(model).__name__}; use an alias "
                f"({', '.join(EXTRA_ALIASES)}), a parameter or module name (exact or suffix), or a regex string."
            )
        selected += [name for name in matched if name not in selected]
    return selected


def _slice_numel(param: nn.Parameter, tensor: FFNTensor) -> int:
    if tensor.fused_slice is None:
        return numel(param)
    dim, start, stop = tensor.fused_slice
    return numel(param) * (stop - start) // full_shape(param)[dim]


def _install_gradient_mask(param: nn.Parameter, keep: list[tuple[int, int, int]]):
    """Zero the gradient outside the chosen slices of a fused tensor, so that the other half does not move."""

    def mask_gradient(grad: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros_like(grad, dtype=torch.bool)
        for dim, start, stop in keep:
            mask.narrow(dim, start, stop - start).fill_(True)
        return torch.where(mask, grad, torch.zeros_like(grad))

    return param.register_hook(mask_gradient)


def freeze_except_ffn(
    model: nn.Module,
    layers: Sequence[int],
    projections: str | Sequence[str] = ("up", "down"),
    extra: str | Sequence[str] = (),
    modules: dict[str, str] | None = None,
) -> FreezeReport:
    """Freeze every parameter of `model` except the FFN projections of `layers` (and `extra`).

    Parameters:
        model (`torch.nn.Module`):
            A causal LM (see `slam_trainer.architectures` for the families covered). When it is a PEFT model, the
            trainable tensors are the adapter weights on the chosen projections, which must carry adapters.
        layers (`Sequence[int]`):
            Decoder layers to train; negatives count from the top; order and gaps are free.
        projections (`str` or `Sequence[str]`, *optional*, defaults to `("up", "down")`):
            FFN roles to train. The default follows the official SLAM code, which trains `up_proj` and `down_proj`
            and leaves `gate_proj` frozen; `"all"` trains every FFN role the architecture has. `"router"` adds an
            MoE layer's router.
        extra (`str` or `Sequence[str]`, *optional*):
            More tensors to train, e.g. `["embeddings", "lm_head"]` after adding language tokens (see
            `resolve_extra` for the matching rules).
        modules (`dict[str, str]`, *optional*):
            Explicit projection names relative to a decoder layer, for architectures not found structurally.

    Returns:
        `FreezeReport`: trainable and total counts, share and names; `print(report)` shows a short table.
    """
    amap = get_architecture_map(model, modules)
    chosen_layers = amap.resolve_layers(layers)
    roles = amap.resolve_roles(projections)
    chosen = amap.tensors(chosen_layers, roles)
    params = dict(model.named_parameters())
    is_peft = any(hasattr(module, "base_layer") for module in model.modules())
    if is_peft and any(getattr(c, "inference_mode", False) for c in getattr(model, "peft_config", {}).values()):
        raise ValueError(
            f"{type(model).__name__} was loaded for inference (every parameter frozen, `inference_mode=True`); load "
            "the adapter with `PeftModel.from_pretrained(..., is_trainable=True)` to train it."
        )

    for handle in getattr(model, _MASK_HOOKS_ATTR, []):
        handle.remove()
    hooks = []
    names_by_layer: dict[int, list[str]] = {index: [] for index in chosen_layers}
    trainable_elements = 0
    to_train: dict[str, nn.Parameter] = {}
    layer_of = {layer.prefix: layer.index for layer in amap.layers}
    masked: dict[str, list[tuple[int, int, int]]] = {}

    if is_peft:
        for module_name in dict.fromkeys(tensor.module for tensor in chosen):
            adapter = [(n, p) for n, p in _peft_adapter_params(model, module_name) if p.is_floating_point()]
            if not adapter:
                raise ValueError(
                    f"{type(model).__name__} is a PEFT model but `{module_name}` carries no adapter. Pass "
                    "`peft_config` to SelectiveFFNTrainer (it targets exactly the chosen projections), or set "
                    "the LoRA `target_modules` to cover them."
                )
            for name, param in adapter:
                to_train[name] = param
                names_by_layer[_layer_index(name, layer_of)].append(name)
                trainable_elements += numel(param)
    else:
        keep_slices: dict[str, list[tuple[int, int, int]]] = {}
        for tensor in chosen:
            param = params[tensor.name]
            if not param.is_floating_point():
                raise ValueError(
                    f"`{tensor.name}` is {param.dtype} (a quantized weight) and cannot be trained directly; "
                    "pass a `peft_config` to train LoRA adapters on the chosen projections instead."
                )
            to_train[tensor.name] = param
            trainable_elements += _slice_numel(param, tensor)
            if tensor.name not in names_by_layer[_layer_index(tensor.name, layer_of)]:
                names_by_layer[_layer_index(tensor.name, layer_of)].append(tensor.name)
            if tensor.fused_slice is not None:
                keep_slices.setdefault(tensor.name, []).append(tensor.fused_slice)
        for name, slices in keep_slices.items():
            dim = slices[0][0]
            covered = sum(stop - start for _, start, stop in slices)
            if covered < full_shape(params[name])[dim]:
                masked[name] = slices
        for name, slices in masked.items():
            hooks.append(_install_gradient_mask(params[name], slices))

    extra_names = []
    if is_peft:
        # Copies PEFT itself made trainable (`modules_to_save`, `trainable_token_indices`) stay trainable.
        extra_names += [n for n, p in params.items() if p.requires_grad and any(k in n for k in PEFT_OWN_TRAINABLE)]
    if extra:
        extra_names += [name for name in resolve_extra(model, extra, amap.layers_path) if name not in to_train]
    extra_names = list(dict.fromkeys(n for n in extra_names if n not in to_train))
    for name in extra_names:
        to_train[name] = params[name]
        trainable_elements += numel(params[name])

    for param in model.parameters():
        param.requires_grad_(False)
    for param in to_train.values():
        param.requires_grad_(True)
    setattr(model, _MASK_HOOKS_ATTR, hooks)

    return FreezeReport(
        model_class=amap.model_class,
        layers=chosen_layers,
        projections=roles,
        trainable_params=trainable_elements,
        total_params=sum(numel(p) for p in params.values()),
        optimizer_params=sum(numel(p) for p in to_train.values()),
        names_by_layer=names_by_layer,
        extra_names=extra_names,
        masked_names=list(masked),
        peft=is_peft,
    )


def _layer_index(name: str, layer_of: dict[str, int]) -> int:
    """The decoder layer a dotted name lies in (its longest layer-prefix match)."""
    prefix = max((p for p in layer_of if name.startswith(p + ".")), key=len)
    return layer_of[prefix]
