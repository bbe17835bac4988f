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
from transformers.utils import logging

from slam_trainer.architectures import (
    FUSED_NAMES,
    ROLES,
    FFNTensor,
    FusedSlice,
    get_architecture_map,
)
from slam_trainer.distributed import full_shape, numel
from slam_trainer.errors import ConfigError, ModelError
from slam_trainer.l2.tag_rows import TAG_ROWS, install_tag_rows, plan_tag_rows, tag_row_count


logger = logging.get_logger(__name__)

# Aliases accepted in `extra`, resolved structurally.
EXTRA_ALIASES = ("embeddings", "lm_head", "final_norm")
FINAL_NORM_NAMES = ("norm", "ln_f", "final_layer_norm", "final_layernorm", "norm_f")
FUSED_ROLES = tuple(role for roles in FUSED_NAMES.values() for role in roles)
_MASK_HOOKS_ATTR = "_slam_gradient_mask_hooks"
_INPUT_GRAD_HOOK_ATTR = "_slam_input_grad_hook"
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
        tag_rows (`dict[str, list[int]]`): the language-tag rows that train, by vocabulary matrix (see
            `slam_trainer.l2.tag_rows`); their elements are part of `trainable_params`.
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
    tag_rows: dict[str, list[int]] = field(default_factory=dict)

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
        for name, ids in self.tag_rows.items():
            lines.append(f"  tag rows   {len(ids)} rows ({ids[0]}..{ids[-1]}) of {name}")
        lines.append(
            f"  trainable  {self.trainable_params:,} / {self.total_params:,} parameters ({100 * self.share:.2f}%)"
        )
        if self.masked_names:
            lines.append(f"  fused tensors half-trained behind a gradient mask: {', '.join(self.masked_names)}")
        return "\n".join(lines)


@dataclass
class FreezePlan:
    """What `freeze_except_ffn` will do, computed without touching the model (`plan_freeze`).

    Parameters:
        report (`FreezeReport`): what will train.
        to_train (`dict[str, nn.Parameter]`): the tensors that get `requires_grad=True`, by name.
        masks (`dict[str, list[FusedSlice]]`): fused tensors of which only these entries train (the rest of each is
            held still by a gradient mask).
    """

    report: FreezeReport
    to_train: dict[str, nn.Parameter]
    masks: dict[str, list[FusedSlice]]


def freeze_except_ffn(
    model: nn.Module,
    layers: Sequence[int],
    projections: str | Sequence[str] = ("up", "down"),
    extra: str | Sequence[str] = (),
    modules: dict[str, str] | None = None,
    *,
    allow_large_extra: bool = False,
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
            More tensors to train, matched as PEFT matches `target_modules`: a string is a full-match regex on
            module and parameter names; a list holds names matched exactly or as a dotted suffix
            (`name == t or name.endswith("." + t)`), or the aliases `"embeddings"`, `"lm_head"`, `"final_norm"`.
            Language tags added with `add_language_tokens` need none of this: their rows train alone (a small
            parameter per matrix, see `slam_trainer.l2.tag_rows`) unless `extra` trains the whole matrix.
        modules (`dict[str, str]`, *optional*):
            Explicit projection names relative to a decoder layer, for architectures not found structurally.
        allow_large_extra (`bool`, *optional*, defaults to `False`):
            Names and regexes in `extra` may select more parameters than the chosen FFN tensors hold only when this
            is set: a loose pattern (`"weight"`, `"mlp"`) would otherwise silently turn SLAM into (nearly) full
            fine-tuning. The aliases are exempt: they name exactly what they train. Ours.

    Returns:
        `FreezeReport`: trainable and total counts, share and names; `print(report)` shows a short table.
    """
    plan = plan_freeze(model, layers, projections, extra, modules, allow_large_extra=allow_large_extra)
    apply_freeze(model, plan)
    return plan.report


def plan_freeze(
    model: nn.Module,
    layers: Sequence[int],
    projections: str | Sequence[str] = ("up", "down"),
    extra: str | Sequence[str] = (),
    modules: dict[str, str] | None = None,
    *,
    allow_large_extra: bool = False,
) -> FreezePlan:
    """What `freeze_except_ffn` (same arguments) would train, without changing the model."""
    architecture = get_architecture_map(model, modules)
    chosen_layers = architecture.resolve_layers(layers)
    roles = architecture.resolve_roles(projections)
    chosen = architecture.tensors(chosen_layers, roles)
    is_peft = any(hasattr(module, "get_base_layer") for module in model.modules())
    if is_peft:
        _refuse_inference_peft(model)
        to_train, trainable, roles = _adapter_selection(model, chosen, roles, architecture.model_class)
        masks = {}
    else:
        to_train, trainable, masks = _tensor_selection(model, chosen)
    layer_of = {layer.prefix: layer.index for layer in architecture.layers}
    names_by_layer: dict[int, list[str]] = {index: [] for index in chosen_layers}
    for name in to_train:
        names_by_layer[_layer_index(name, layer_of)].append(name)

    params = {name: param for name, param in model.named_parameters() if not name.endswith(TAG_ROWS)}
    extra_names = []
    if is_peft:
        # Copies PEFT itself made trainable (`modules_to_save`, `trainable_token_indices`) stay trainable.
        extra_names += [n for n, p in params.items() if p.requires_grad and any(k in n for k in PEFT_OWN_TRAINABLE)]
    if extra:
        extra_names += resolve_extra(
            model, extra, architecture.layers_path, exclude=to_train, budget=trainable, allow_large=allow_large_extra
        )
    extra_names = list(dict.fromkeys(n for n in extra_names if n not in to_train))
    for name in extra_names:
        to_train[name] = params[name]
        trainable += numel(params[name])
    tag_rows = {} if is_peft else plan_tag_rows(model, trained_whole=to_train)  # PEFT: `trainable_token_indices`
    trainable += tag_row_count(model, tag_rows)

    report = FreezeReport(
        model_class=architecture.model_class,
        layers=chosen_layers,
        projections=roles,
        trainable_params=trainable,
        total_params=sum(numel(p) for p in params.values()),
        optimizer_params=sum(numel(p) for p in to_train.values()) + tag_row_count(model, tag_rows),
        names_by_layer=names_by_layer,
        extra_names=extra_names,
        masked_names=list(masks),
        peft=is_peft,
        tag_rows=tag_rows,
    )
    return FreezePlan(report, to_train, masks)


def apply_freeze(model: nn.Module, plan: FreezePlan) -> None:
    """Set `requires_grad` as `plan` says and install the gradient masks of half-trained fused tensors (replacing
    those of an earlier freezing)."""
    for handle in getattr(model, _MASK_HOOKS_ATTR, {}).values():
        handle.remove()
    for param in model.parameters():
        param.requires_grad_(False)
    for param in plan.to_train.values():
        param.requires_grad_(True)
    setattr(
        model,
        _MASK_HOOKS_ATTR,
        {name: _install_gradient_mask(plan.to_train[name], kept) for name, kept in plan.masks.items()},
    )
    install_tag_rows(model, plan.report.tag_rows)


def masked_tensor_names(model: nn.Module) -> set[str]:
    """Names of the fused tensors that carry a gradient mask installed by `freeze_except_ffn`."""
    return set(getattr(model, _MASK_HOOKS_ATTR, {}))


def make_inputs_require_grad(model: nn.Module) -> None:
    """Make the input embeddings' output require grad (once per model), whatever transformers does.

    With gradient checkpointing (reentrant) and frozen embeddings, no input of a checkpointed layer requires grad,
    so the layers' parameters get no gradient; if something above trains (`extra=["lm_head"]`) the loss still has a
    graph and nothing fails: the lower layers just silently stop training. transformers 5.23 registers such a hook
    in `activation_checkpointing_enable`; this one does not depend on it.
    """
    if getattr(model, _INPUT_GRAD_HOOK_ATTR, None) is None:
        handle = model.get_input_embeddings().register_forward_hook(_output_requires_grad)
        setattr(model, _INPUT_GRAD_HOOK_ATTR, handle)


def _output_requires_grad(module, inputs, output):
    output.requires_grad_(True)


def _refuse_inference_peft(model: nn.Module) -> None:
    if any(getattr(c, "inference_mode", False) for c in getattr(model, "peft_config", {}).values()):
        raise ModelError(
            f"{type(model).__name__} was loaded for inference (every parameter frozen, `inference_mode=True`); load "
            "the adapter with `PeftModel.from_pretrained(..., is_trainable=True)` to train it."
        )


def _tensor_selection(model: nn.Module, chosen: list[FFNTensor]):
    """The chosen tensors of a plain model: `(to_train, trainable elements, masks of half-trained fused tensors)`."""
    params = dict(model.named_parameters())
    to_train: dict[str, nn.Parameter] = {}
    kept: dict[str, list[FusedSlice]] = {}
    trainable = 0
    for tensor in chosen:
        param = params[tensor.name]
        if not param.is_floating_point():
            raise ModelError(
                f"`{tensor.name}` is {param.dtype} (a quantized weight) and cannot be trained directly; "
                "pass a `peft_config` to train LoRA adapters on the chosen projections instead."
            )
        to_train[tensor.name] = param
        if tensor.fused_slice is None:
            trainable += numel(param)
        else:
            trainable += numel(param) * tensor.fused_slice.size // full_shape(param)[tensor.fused_slice.dim]
            kept.setdefault(tensor.name, []).append(tensor.fused_slice)
    masks = {
        name: slices
        for name, slices in kept.items()
        if sum(s.size for s in slices) < full_shape(params[name])[slices[0].dim]
    }
    return to_train, trainable, masks


def _adapter_selection(model: nn.Module, chosen: list[FFNTensor], roles: list[str], model_class: str):
    """The adapter weights on the chosen projections of a PEFT model: `(to_train, trainable elements, roles)`.

    A low-rank update of a fused `gate_up_proj` changes the whole tensor, so when only one of its roles was chosen
    the roles trained include the other one too (and a warning says so).
    """
    to_train: dict[str, nn.Parameter] = {}
    covered = set(roles)
    for tensor in chosen:
        adapter = [(n, p) for n, p in _adapter_params(model, tensor) if p.is_floating_point()]
        if not adapter:
            if not tensor.name.endswith("bias"):  # LoRA adapts weights; a bias without adapter just stays frozen
                raise ConfigError(
                    f"{model_class} is a PEFT model but `{tensor.name}` carries no adapter. Pass `peft_config` to "
                    "SelectiveFFNTrainer (it targets exactly the chosen projections), or set the LoRA "
                    "`target_modules` (`target_parameters` for expert banks) to cover them."
                )
            continue
        to_train.update(adapter)
        if tensor.fused_slice is not None:
            covered |= set(FUSED_ROLES)
    if covered != set(roles):
        added = sorted(covered - set(roles))
        logger.warning(
            "SLAM + LoRA: a LoRA adapter on a fused `gate_up_proj` updates the whole tensor, so it also trains %s; "
            "the report lists it. Choose both roles to make this explicit, or train without LoRA to keep it frozen.",
            ", ".join(added),
        )
    trained_roles = [role for role in ROLES if role in covered]
    return to_train, sum(numel(p) for p in to_train.values()), trained_roles


def _adapter_params(model: nn.Module, tensor: FFNTensor) -> list[tuple[str, nn.Parameter]]:
    """Adapter parameters that PEFT put on `tensor`: those of its wrapper(s) that are not the base layer's own.

    A `Linear`/`Conv1D` projection has one wrapper; an expert bank has one `ParamWrapper` per targeted parameter,
    nested, each with its `parameter_name`.
    """
    module = model.get_submodule(tensor.module)
    if not hasattr(module, "get_base_layer"):
        return []
    base_params = {id(p) for p in module.get_base_layer().parameters()}
    param_attr = tensor.name.rpartition(".")[2]
    params = []
    prefix, wrapper = tensor.module, module
    while hasattr(wrapper, "get_base_layer"):
        wrapper_param = getattr(wrapper, "parameter_name", None)
        if tensor.is_module_weight or wrapper_param == param_attr:
            params += [
                (f"{prefix}.{name}", param)
                for name, param in wrapper.named_parameters()
                if id(param) not in base_params and not name.startswith("base_layer.")
            ]
        prefix, wrapper = f"{prefix}.base_layer", wrapper.base_layer
    return params


def _install_gradient_mask(param: nn.Parameter, keep: list[FusedSlice]):
    """Zero the gradient outside the chosen entries of a fused tensor, so that the other role does not move."""
    dim = keep[0].dim
    kept = set().union(*(range(s.start, s.stop, s.step) for s in keep))
    frozen = torch.tensor(sorted(set(range(full_shape(param)[dim])) - kept), dtype=torch.long)

    def mask_gradient(grad: torch.Tensor) -> torch.Tensor:
        return grad.index_fill(dim, frozen.to(grad.device), 0)

    return param.register_hook(mask_gradient)


def _final_norm_names(model: nn.Module, layers_path: str) -> list[str]:
    parent_path = layers_path.rpartition(".")[0]
    parent = model.get_submodule(parent_path) if parent_path else model
    for attr in FINAL_NORM_NAMES:
        if isinstance(getattr(parent, attr, None), nn.Module):
            prefix = f"{parent_path}.{attr}" if parent_path else attr
            return [f"{prefix}.{name}" for name, _ in getattr(parent, attr).named_parameters()]
    return []


def _alias_names(model: nn.Module, alias: str, layers_path: str) -> list[str]:
    names = {id(param): name for name, param in model.named_parameters()}
    if alias == "final_norm":
        return _final_norm_names(model, layers_path)
    module = model.get_input_embeddings() if alias == "embeddings" else model.get_output_embeddings()
    return [names[id(p)] for p in module.parameters()] if module is not None else []


def matches_target(name: str, target: str, regex: bool) -> bool:
    """PEFT's rule for `target_modules`: a regex must match the whole name; a plain name matches exactly or as a
    dotted suffix."""
    if regex:
        return re.fullmatch(target, name) is not None
    return name == target or name.endswith("." + target)


def _names_matching(model: nn.Module, target: str, regex: bool) -> list[str]:
    """Parameter names selected by `target`: the parameters of every matching module, and every matching parameter
    (names as `named_modules()` / `named_parameters()` give them; a tied weight under its first name)."""
    names = {id(param): name for name, param in model.named_parameters()}
    selected = [
        names[id(param)]
        for module_name, module in model.named_modules()
        if module_name and matches_target(module_name, target, regex)
        for param in module.parameters()
    ]
    selected += [name for name in names.values() if matches_target(name, target, regex)]
    return list(dict.fromkeys(selected))


def resolve_extra(
    model: nn.Module,
    extra: str | Sequence[str],
    layers_path: str,
    *,
    exclude=(),
    budget: int | None = None,
    allow_large: bool = False,
) -> list[str]:
    """Parameter names selected by `extra`, with PEFT's matching rule (see `freeze_except_ffn`).

    Every entry must match something. With `budget` (the elements of the chosen FFN tensors), names and regexes
    together may select at most that many elements (besides the tensors in `exclude`) unless `allow_large`; the
    aliases do not count. Training a tied output embedding is announced: it is the input embedding too.
    """
    params = dict(model.named_parameters())
    entries = [extra] if isinstance(extra, str) else list(extra)
    selected, by_pattern = [], {}
    for entry in entries:
        if entry in EXTRA_ALIASES:
            matched = _alias_names(model, entry, layers_path)
        else:
            matched = _names_matching(model, entry, regex=isinstance(extra, str))
        if not matched:
            form = "regex" if isinstance(extra, str) else "entry"
            raise ConfigError(
                f"`extra` {form} {entry!r} matches no module or parameter of {type(model).__name__}. A list entry "
                f"is an alias ({', '.join(EXTRA_ALIASES)}) or a module/parameter name matched exactly or as a dotted "
                "suffix (`layers.3.input_layernorm`); a string is a regex that must match a whole name, as PEFT's "
                "`target_modules`."
            )
        if entry not in EXTRA_ALIASES:
            by_pattern[entry] = [name for name in matched if name not in exclude]
        selected += [name for name in matched if name not in selected]
    if budget is not None and not allow_large:
        _check_extra_size(model, by_pattern, budget, params)
    _warn_tied_embeddings(model, selected)
    return selected


def _check_extra_size(model: nn.Module, by_pattern: dict[str, list[str]], budget: int, params) -> None:
    names = list(dict.fromkeys(name for matched in by_pattern.values() for name in matched))
    size = sum(numel(params[name]) for name in names)
    if size > budget:
        total = sum(numel(p) for p in params.values())
        counts = ", ".join(
            f"{entry!r}: {len(matched)} tensors, {sum(numel(params[n]) for n in matched):,} parameters"
            for entry, matched in by_pattern.items()
        )
        raise ConfigError(
            f"`extra` selects {size:,} parameters ({100 * size / total:.1f}% of {type(model).__name__}), more than "
            f"the chosen FFN tensors themselves ({budget:,}): {counts}; e.g. {', '.join(names[:4])}. A list entry "
            "matches every module or parameter whose name ends with it, in every layer. Name fewer tensors (e.g. "
            "`model.layers.3.input_layernorm`), or set `allow_large_extra=True` (`slam_allow_large_extra`) if this "
            "is meant."
        )


def _warn_tied_embeddings(model: nn.Module, selected: list[str]) -> None:
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    tied = getattr(outputs, "weight", None) is not None and outputs.weight is getattr(inputs, "weight", None)
    if not tied:
        return
    names = {id(param): name for name, param in model.named_parameters()}
    name = names.get(id(inputs.weight))
    if name in selected:
        logger.warning(
            "%s ties its output layer (lm_head) to its input embeddings: `%s` is one tensor, so training it trains "
            "both the input embeddings and the output projection.",
            type(model).__name__,
            name,
        )


def _layer_index(name: str, layer_of: dict[str, int]) -> int:
    """The decoder layer a dotted name lies in (its longest layer-prefix match)."""
    prefix = max((p for p in layer_of if name.startswith(p + ".")), key=len)
    return layer_of[prefix]
