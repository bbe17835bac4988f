"""Where each model keeps its decoder layers and, in each layer, its FFN projections by role.

Found structurally, from the modules the model really has: the decoder layers are the `nn.ModuleList` whose
length is the config's layer count; a layer's FFN is its `mlp`/`feed_forward`/`block_sparse_moe` child (or the
layer itself, as in OPT); projections are told apart by their attribute names. This covers Llama, Mistral,
Qwen2/3, Gemma 1/2/3, Phi-3, GPT-2 (`Conv1D`), GPT-NeoX, OPT and the MoE families (Mixtral, Qwen2-MoE,
Qwen3-MoE), on plain, PEFT-wrapped, `meta`-device and DeepSpeed-partitioned models alike.

Roles:
    - `gate`: the gating projection of a gated FFN (`act(gate(x)) * up(x)`); absent in GPT-2/NeoX/OPT.
    - `up`: the projection into the intermediate size.
    - `down`: the projection back to the hidden size.
    - `router`: the expert router of an MoE layer (and Qwen2-MoE's shared-expert gate); frozen unless asked for.

Fused tensors: Phi-3's `gate_up_proj` and the MoE experts' `gate_up_proj` hold `gate` and `up` in one tensor, in the
layout the model declares: an expert bank's `is_concatenated` / `is_transposed` flags (transformers'
`use_experts_implementation`) say whether the two are the halves of the output dimension or interleaved along it
(gpt-oss: `gate = gate_up[..., ::2]`, `up = gate_up[..., 1::2]`), and which dimension that is; a dense `Linear`
holds the halves on its output rows. A tensor is trainable or not as a whole, so choosing one role trains the tensor
with a gradient mask that zeroes the other role's entries (`FFNTensor.fused_slice`); those then stay bitwise
unchanged under optimizers without weight decay. With weight decay they would decay, so freezing refuses that.

PEFT-wrapped projections and expert banks (LoRA `Linear`, `ParamWrapper` for `target_parameters`, nested wrappers)
are read through PEFT's `get_base_layer()`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from torch import nn

from slam_trainer.distributed import full_shape
from slam_trainer.errors import ConfigError, ModelError


ROLES = ("gate", "up", "down", "router")
FFN_ROLES = ("gate", "up", "down")

# Attribute names of a layer's FFN container, tried in order; OPT keeps fc1/fc2 on the layer itself.
FFN_CONTAINER_NAMES = ("mlp", "feed_forward", "block_sparse_moe", "ffn", "moe")
# Attribute names of single-role projections.
ROLE_NAMES = {
    "gate": ("gate_proj", "w1"),
    "up": ("up_proj", "w3", "c_fc", "dense_h_to_4h", "fc1", "fc_in"),
    "down": ("down_proj", "w2", "c_proj", "dense_4h_to_h", "fc2", "fc_out"),
}
# Fused projections: (first half role, second half role) along the output dimension.
FUSED_NAMES = {"gate_up_proj": ("gate", "up")}
EXPERT_CONTAINER_NAMES = ("experts",)
SHARED_EXPERT_NAMES = ("shared_expert", "shared_experts")
ROUTER_NAMES = ("gate", "router", "shared_expert_gate")
ACTIVATION_NAMES = ("act_fn", "act", "activation_fn")


class UnsupportedArchitectureError(ModelError):
    """Raised when the decoder layers or the FFN projections of a model cannot be found."""


class FusedSlice(NamedTuple):
    """The entries of a fused tensor that carry one role: `range(start, stop, step)` along dimension `dim`."""

    dim: int
    start: int
    stop: int
    step: int = 1

    @property
    def size(self) -> int:
        return len(range(self.start, self.stop, self.step))


def validate_layers(layers, argument: str = "layers") -> list[int]:
    """The model-free check of a layer choice: a non-empty list of integers (ranges are checked against a model by
    `ArchitectureMap.resolve_layers`)."""
    layers = [layers] if isinstance(layers, int) and not isinstance(layers, bool) else layers
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Iterable):
        raise ConfigError(f"`{argument}` must be a list of layer indices such as [0, 1, 2], got {layers!r}.")
    layers = list(layers)
    if not layers:
        raise ConfigError(f"`{argument}` is empty: name at least one decoder layer to train, e.g. [0, 1].")
    for index in layers:
        if isinstance(index, bool) or not isinstance(index, int):
            raise ConfigError(f"`{argument}` must hold integers, got {index!r} ({type(index).__name__}).")
    return layers


def validate_projections(projections, argument: str = "projections") -> str | list[str]:
    """The model-free check of a role choice: `"all"`, or a non-empty list of `ROLES` (one string is one role)."""
    projections = [projections] if isinstance(projections, str) else list(projections)
    if projections == ["all"]:
        return "all"
    if not projections:
        raise ConfigError(f"`{argument}` is empty: choose among {', '.join(ROLES)} (or 'all').")
    unknown = [role for role in projections if role not in ROLES]
    if unknown:
        raise ConfigError(f"`{argument}` has unknown role(s) {unknown}; valid: {', '.join(ROLES)}, or 'all'.")
    return list(dict.fromkeys(projections))


@dataclass(frozen=True)
class FFNTensor:
    """One parameter that carries (part of) an FFN role.

    Parameters:
        name (`str`): full dotted parameter name, as `model.named_parameters()` gives it.
        role (`str`): one of `ROLES`.
        module (`str`): dotted name of the module that owns the parameter (a LoRA target).
        is_module_weight (`bool`): the owner is a `Linear`/`Conv1D` layer (LoRA `target_modules`); otherwise the
            parameter is a raw tensor such as a fused expert bank (LoRA `target_parameters`).
        fused_slice (`FusedSlice` or `None`): the entries that carry the role when the tensor is fused; the other
            entries belong to another role.
    """

    name: str
    role: str
    module: str
    is_module_weight: bool
    fused_slice: FusedSlice | None = None


@dataclass
class LayerFFN:
    """The FFN of one decoder layer: where it sits, how it is built, and its tensors by role."""

    index: int
    prefix: str
    container: str
    kind: str  # "gated", "plain" or "moe"
    tensors: list[FFNTensor] = field(default_factory=list)
    activation: str | None = None  # module applying the FFN non-linearity, for the layer-identification probe

    def roles(self) -> set[str]:
        return {tensor.role for tensor in self.tensors}


@dataclass
class ArchitectureMap:
    """The decoder layers of a model and their FFNs, as found in the model's modules."""

    model_class: str
    layers_path: str
    layers: list[LayerFFN]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def roles(self) -> set[str]:
        """The roles present in every layer (e.g. no `gate` in GPT-2)."""
        return set.intersection(*(layer.roles() for layer in self.layers))

    def resolve_layers(self, layers) -> list[int]:
        """Normalise layer indices: negatives count from the top; out-of-range, repeated and empty choices raise."""
        n = self.num_layers
        resolved = []
        for index in validate_layers(layers):
            if not -n <= index < n:
                raise ConfigError(
                    f"`layers` has index {index} but {self.model_class} has {n} decoder layers (valid: {-n}..{n - 1})."
                )
            resolved.append(index % n)
        duplicates = sorted({i for i in resolved if resolved.count(i) > 1})
        if duplicates:
            raise ConfigError(f"`layers` names layer(s) {duplicates} more than once (after resolving negatives).")
        return sorted(resolved)

    def resolve_roles(self, projections) -> list[str]:
        """Normalise roles: `"all"` means every FFN role the architecture has; unknown or absent roles raise."""
        projections = validate_projections(projections)
        if projections == "all":
            return [role for role in FFN_ROLES if role in self.roles()]
        available = self.roles()
        for role in projections:
            if role not in available:
                raise ModelError(
                    f"{self.model_class} has no `{role}` projection in its FFN; its roles are "
                    f"{', '.join(r for r in ROLES if r in available)}."
                )
        return projections

    def tensors(self, layers, projections) -> list[FFNTensor]:
        """The tensors of the chosen layers and roles."""
        chosen_layers = set(self.resolve_layers(layers))
        roles = set(self.resolve_roles(projections))
        return [t for layer in self.layers if layer.index in chosen_layers for t in layer.tensors if t.role in roles]


def _base_layer(prefix: str, module: nn.Module) -> tuple[str, nn.Module]:
    """The layer a PEFT wrapper wraps (PEFT's `get_base_layer()`, through nested wrappers) and its dotted name;
    the module itself when it is not wrapped."""
    if not hasattr(module, "get_base_layer"):
        return prefix, module
    base = module.get_base_layer()
    name = next(name for name, sub in module.named_modules() if sub is base)
    return (f"{prefix}.{name}" if name else prefix), base


def _is_projection(module: nn.Module) -> bool:
    """A layer holding a weight matrix: `nn.Linear`, GPT-2's `Conv1D`, or a PEFT wrapper around either."""
    base = _base_layer("", module)[1]
    weight = getattr(base, "weight", None)
    return isinstance(weight, nn.Parameter) and len(full_shape(weight)) == 2 and not isinstance(base, nn.Embedding)


def _roles_for(
    attr: str, param: nn.Parameter, dim: int, interleaved: bool = False
) -> list[tuple[str, FusedSlice | None]]:
    """(role, fused_slice) pairs carried by parameter `param` of a projection called `attr`, whose output features
    run along `dim`; a fused `gate_up_proj` holds gate and up as halves of that dimension or, `interleaved`, as its
    even and odd entries."""
    if attr in FUSED_NAMES:
        size = full_shape(param)[dim]
        first, second = FUSED_NAMES[attr]
        if interleaved:
            return [(first, FusedSlice(dim, 0, size, 2)), (second, FusedSlice(dim, 1, size, 2))]
        return [(first, FusedSlice(dim, 0, size // 2)), (second, FusedSlice(dim, size // 2, size))]
    for role, names in ROLE_NAMES.items():
        if attr in names:
            return [(role, None)]
    return []


def _module_tensors(prefix: str, module: nn.Module, roles_of) -> list[FFNTensor]:
    """The tensors of a projection module (of its base layer when PEFT wraps it): weight and bias.

    `roles_of(param, dim)` gives the roles a parameter carries; `dim` is the weight's output dimension: 0 for
    `nn.Linear`, 1 for GPT-2's `Conv1D` (a bias has one dimension).
    """
    base_prefix, base = _base_layer(prefix, module)
    output_dim = 1 if type(base).__name__ == "Conv1D" else 0
    tensors = []
    for param_name, param in base.named_parameters(recurse=False):
        dim = output_dim if len(full_shape(param)) == 2 else 0
        for role, fused_slice in roles_of(param, dim):
            tensors.append(FFNTensor(f"{base_prefix}.{param_name}", role, prefix, True, fused_slice))
    return tensors


def _mlp_tensors(prefix: str, mlp: nn.Module) -> list[FFNTensor]:
    """Tensors of a dense FFN (also one expert, or a shared expert), by the names of its projection children."""
    tensors = []
    for attr, child in mlp.named_children():
        if _is_projection(child):
            tensors += _module_tensors(f"{prefix}.{attr}", child, lambda p, d, a=attr: _roles_for(a, p, d))
    return tensors


def _expert_bank_tensors(prefix: str, experts: nn.Module) -> list[FFNTensor]:
    """Tensors of an MoE expert container: a bank of 3-D parameters (transformers 5) or a list of expert MLPs.

    A bank is `(experts, out, in)`, or `(experts, in, out)` when it declares `is_transposed`; its bias is
    `(experts, out)`. A fused `gate_up_proj` is interleaved when the bank declares `is_concatenated=False`.
    """
    if isinstance(experts, nn.ModuleList):
        return [t for i, expert in enumerate(experts) for t in _mlp_tensors(f"{prefix}.{i}", expert)]
    module_prefix = prefix
    prefix, experts = _base_layer(prefix, experts)
    interleaved = not getattr(experts, "is_concatenated", True)
    weight_dim = 2 if getattr(experts, "is_transposed", False) else 1
    tensors = []
    for param_name, param in experts.named_parameters(recurse=False):
        attr = param_name.removesuffix("_bias")
        dim = weight_dim if len(full_shape(param)) == 3 else 1
        for role, fused_slice in _roles_for(attr, param, dim, interleaved):
            tensors.append(FFNTensor(f"{prefix}.{param_name}", role, module_prefix, False, fused_slice))
    return tensors


def _router_tensors(prefix: str, block: nn.Module) -> list[FFNTensor]:
    tensors = []
    for attr in ROUTER_NAMES:
        router = getattr(block, attr, None)
        if isinstance(router, nn.Module):
            base_prefix, base = _base_layer(f"{prefix}.{attr}", router)
            for param_name, _ in base.named_parameters():
                tensors.append(FFNTensor(f"{base_prefix}.{param_name}", "router", f"{prefix}.{attr}", True))
    return tensors


def _activation(prefix: str, container: nn.Module) -> str | None:
    for attr in ACTIVATION_NAMES:
        if isinstance(getattr(container, attr, None), nn.Module):
            return f"{prefix}.{attr}"
    return None


def _map_layer(index: int, prefix: str, layer: nn.Module) -> LayerFFN | None:
    container_attr = next((a for a in FFN_CONTAINER_NAMES if isinstance(getattr(layer, a, None), nn.Module)), None)
    container = getattr(layer, container_attr) if container_attr else layer
    container_prefix = f"{prefix}.{container_attr}" if container_attr else prefix
    experts_attr = next(
        (a for a in EXPERT_CONTAINER_NAMES if isinstance(getattr(container, a, None), nn.Module)), None
    )
    if experts_attr:
        experts = getattr(container, experts_attr)
        tensors = _expert_bank_tensors(f"{container_prefix}.{experts_attr}", experts)
        for attr in SHARED_EXPERT_NAMES:
            if isinstance(getattr(container, attr, None), nn.Module):
                tensors += _mlp_tensors(f"{container_prefix}.{attr}", getattr(container, attr))
        tensors += _router_tensors(container_prefix, container)
        activation = _activation(*_base_layer(f"{container_prefix}.{experts_attr}", experts))
        kind = "moe"
    else:
        tensors = _mlp_tensors(container_prefix, container)
        activation = _activation(container_prefix, container)
        kind = "gated" if any(t.role == "gate" for t in tensors) else "plain"
    roles = {t.role for t in tensors}
    if not {"up", "down"} <= roles:
        return None
    return LayerFFN(index, prefix, container_prefix, kind, tensors, activation)


def _num_hidden_layers(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    if config is None:
        return None
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return getattr(text_config, "num_hidden_layers", None)


def get_architecture_map(model: nn.Module, modules: dict[str, str] | None = None) -> ArchitectureMap:
    """Find the decoder layers of `model` and the FFN projections of each.

    Parameters:
        model (`torch.nn.Module`):
            A causal LM, plain or wrapped by PEFT; its weights may live on the `meta` device or be partitioned by
            DeepSpeed ZeRO-3. Names in the map are those of `model.named_parameters()`.
        modules (`dict[str, str]`, *optional*):
            Explicit projection names for an architecture the structural search does not know, relative to a
            decoder layer, e.g. `{"up": "mlp.fc_in", "down": "mlp.fc_out"}` (add `"gate"` for gated FFNs).

    Raises:
        `UnsupportedArchitectureError`: no decoder layers or no FFN projections were found; the message names the
        model class and how to pass `modules`.
    """
    model_class = type(model).__name__
    expected = _num_hidden_layers(model)
    candidates = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and len(module) > 0 and (expected is None or len(module) == expected)
    ]
    hint = (
        "Pass the projection names relative to a decoder layer, e.g. "
        '`modules={"up": "mlp.fc_in", "down": "mlp.fc_out"}` (freeze_except_ffn / SelectiveFFNCallback), '
        "or `slam_ffn_modules` in SelectiveFFNConfig."
    )
    if not candidates:
        raise UnsupportedArchitectureError(
            f"Cannot find the decoder layers of {model_class}: no nn.ModuleList of {expected} layers. {hint}"
        )
    layers_path, layer_list = candidates[0]
    if modules:
        layers = [_explicit_layer(i, f"{layers_path}.{i}", layer, modules) for i, layer in enumerate(layer_list)]
    else:
        layers = [_map_layer(i, f"{layers_path}.{i}", layer) for i, layer in enumerate(layer_list)]
    if any(layer is None for layer in layers):
        raise UnsupportedArchitectureError(
            f"Cannot find the FFN projections (up and down) of {model_class} in `{layers_path}`: its layers are "
            f"{type(layer_list[0]).__name__} with children {', '.join(n for n, _ in layer_list[0].named_children())}. "
            f"{hint}"
        )
    return ArchitectureMap(model_class, layers_path, layers)


def _explicit_layer(index: int, prefix: str, layer: nn.Module, modules: dict[str, str]) -> LayerFFN:
    tensors = []
    for role, relative_name in modules.items():
        if role not in ROLES:
            raise ConfigError(f"`modules` has unknown role {role!r}; valid roles: {', '.join(ROLES)}.")
        try:
            module = layer.get_submodule(relative_name)
        except AttributeError:
            raise UnsupportedArchitectureError(
                f"`modules` names {relative_name!r} for role {role!r}, but layer {index} ({prefix}) has no such "
                "module."
            ) from None
        tensors += _module_tensors(f"{prefix}.{relative_name}", module, lambda p, d, r=role: [(r, None)])
    if not tensors:
        raise UnsupportedArchitectureError(f"`modules` {modules} hold no parameters in layer {index} ({prefix}).")
    kind = "gated" if "gate" in modules else "plain"
    return LayerFFN(index, prefix, prefix, kind, tensors, None)
