"""The architecture map finds every decoder layer's FFN projections, by role, on each supported family."""

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM, LlamaConfig, PretrainedConfig, PreTrainedModel

from slam_trainer.architectures import (
    UnsupportedArchitectureError,
    get_architecture_map,
    validate_layers,
    validate_projections,
)
from slam_trainer.errors import ConfigError
from slam_trainer.freezing import freeze_except_ffn
from slam_trainer.tiny import TINY_ARCHITECTURES, UNPROBED_ARCHITECTURES, build_tiny_model


GATED = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3"}
MOE = {"mixtral", "qwen2_moe", "qwen3_moe", "gpt_oss"}


@pytest.mark.parametrize("architecture", TINY_ARCHITECTURES + UNPROBED_ARCHITECTURES)
def test_every_layer_is_mapped_with_its_roles(architecture):
    model = build_tiny_model(architecture)
    arch_map = get_architecture_map(model)
    params = dict(model.named_parameters())
    assert arch_map.num_layers == model.config.num_hidden_layers
    expected_roles = {"up", "down"} | ({"gate"} if architecture in GATED | MOE else set())
    expected_roles |= {"router"} if architecture in MOE else set()
    assert arch_map.roles() == expected_roles
    for layer in arch_map.layers:
        assert layer.kind == ("moe" if architecture in MOE else "gated" if architecture in GATED else "plain")
        for tensor in layer.tensors:
            assert tensor.name in params, tensor.name
            assert f".{layer.index}." in tensor.name
        assert (layer.activation is None) == (architecture in UNPROBED_ARCHITECTURES)


@pytest.mark.parametrize(
    "layers, error, message",
    [
        ([0, -1], None, None),
        (3, None, None),
        ([], ValueError, "`layers` is empty"),
        ("0,1", ConfigError, "must be a list of layer indices"),
        ([0, 1.0], ConfigError, r"must hold integers, got 1\.0 \(float\)"),
        ([True], ConfigError, "must hold integers, got True"),
    ],
)
def test_layer_choices_are_checked_in_one_place(layers, error, message):
    if error is None:
        assert validate_layers(layers) == ([layers] if isinstance(layers, int) else layers)
    else:
        with pytest.raises(error, match=message):
            validate_layers(layers)


@pytest.mark.parametrize(
    "projections, expected",
    [
        ("all", "all"),
        (["all"], "all"),
        ("up", ["up"]),
        (["down", "up", "down"], ["down", "up"]),
        (["up", "router"], ["up", "router"]),
        ([], "`projections` is empty"),
        (["up", "ffn"], r"unknown role\(s\) \['ffn'\]"),
    ],
)
def test_role_choices_are_checked_in_one_place(projections, expected):
    if isinstance(expected, str) and expected != "all":
        with pytest.raises(ValueError, match=expected):
            validate_projections(projections)
    else:
        assert validate_projections(projections) == expected


def test_expert_indices_are_not_mistaken_for_layer_indices():
    # Mixtral with as many experts as layers: a substring match on ".1." would also hit expert 1 of every layer.
    model = build_tiny_model("mixtral", num_local_experts=4, num_layers=4)
    tensors = get_architecture_map(model).tensors([1], ["up", "down"])
    assert {t.name.split(".")[2] for t in tensors} == {"1"}


def test_peft_wrapped_model_maps_to_the_base_layers():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(build_tiny_model("llama"), LoraConfig(r=2, target_modules=["up_proj", "down_proj"]))
    architecture = get_architecture_map(model)
    names = {t.name for t in architecture.tensors([0], ["up"])}
    assert names == {"base_model.model.model.layers.0.mlp.up_proj.base_layer.weight"}


@pytest.mark.parametrize("architecture", ["mixtral", "gpt_oss"])
def test_peft_wrapped_expert_banks_map_to_the_base_bank(architecture):
    # PEFT's `target_parameters` wraps the experts module in nested `ParamWrapper`s, one per targeted parameter.
    from peft import LoraConfig, get_peft_model

    targets = ["model.layers.0.mlp.experts.gate_up_proj", "model.layers.0.mlp.experts.down_proj"]
    model = get_peft_model(
        build_tiny_model(architecture), LoraConfig(r=2, target_modules=[], target_parameters=targets)
    )
    plain = get_architecture_map(build_tiny_model(architecture)).layers[0]
    layer = get_architecture_map(model).layers[0]
    bank = "base_model.model.model.layers.0.mlp.experts.base_layer.base_layer"
    params = dict(model.named_parameters())
    assert [(t.role, t.fused_slice) for t in layer.tensors] == [(t.role, t.fused_slice) for t in plain.tensors]
    for tensor in layer.tensors:
        if tensor.role != "router":
            assert tensor.name.startswith(bank + ".") and tensor.name in params
            assert tensor.module == "base_model.model.model.layers.0.mlp.experts"


@pytest.mark.parametrize(
    "hidden, intermediate, layers, projections, expected_percent",
    [
        (4096, 11008, 32, ("up", "down"), 8.03),  # LLaMA-2-7B, as the SLAM paper reports
        (5120, 13824, 40, ("up", "down"), 6.53),  # LLaMA-2-13B
        (4096, 11008, 32, "all", 12.04),  # adding gate_proj
        (5120, 13824, 40, "all", 9.79),
    ],
)
def test_published_trainable_shares_on_meta_device(hidden, intermediate, layers, projections, expected_percent):
    config = LlamaConfig(
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        vocab_size=32000,
        num_attention_heads=32,
    )
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    report = freeze_except_ffn(model, range(6), projections)
    assert round(100 * report.share, 2) == expected_percent
    assert report.trainable_params == 6 * len(report.projections) * hidden * intermediate


class _OddConfig(PretrainedConfig):
    model_type = "odd"

    def __init__(self, num_hidden_layers=2, **kwargs):
        self.num_hidden_layers = num_hidden_layers
        super().__init__(**kwargs)


class _OddBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.Linear(8, 8)
        self.widen = nn.Linear(8, 16)
        self.narrow = nn.Linear(16, 8)


class _OddModel(PreTrainedModel):
    config_class = _OddConfig

    def __init__(self, config):
        super().__init__(config)
        self.blocks = nn.ModuleList(_OddBlock() for _ in range(config.num_hidden_layers))


def test_unmappable_architecture_names_the_class_and_the_way_out():
    model = _OddModel(_OddConfig())
    with pytest.raises(UnsupportedArchitectureError, match=r"_OddModel.*modules=") as error:
        get_architecture_map(model)
    assert "widen" in str(error.value)  # the message lists what the layer does have
    architecture = get_architecture_map(model, modules={"up": "widen", "down": "narrow"})
    assert [t.name for t in architecture.tensors([1], ["up"])] == ["blocks.1.widen.weight", "blocks.1.widen.bias"]


def test_explicit_module_that_does_not_exist_is_named():
    with pytest.raises(UnsupportedArchitectureError, match="'mlp.fc_in'"):
        get_architecture_map(_OddModel(_OddConfig()), modules={"up": "mlp.fc_in", "down": "narrow"})
