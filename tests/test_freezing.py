"""`freeze_except_ffn`: exactly the chosen tensors train; bad choices fail with a message that says what to do."""

import pytest
import torch

from slam_trainer.freezing import freeze_except_ffn, numel
from slam_trainer.tiny import build_tiny_model


def trainable_names(model):
    return {name for name, param in model.named_parameters() if param.requires_grad}


def test_only_chosen_projections_of_chosen_layers_train():
    model = build_tiny_model("llama", num_layers=6)
    report = freeze_except_ffn(model, [0, 2, -1])
    expected = {f"model.layers.{i}.mlp.{p}_proj.weight" for i in (0, 2, 5) for p in ("up", "down")}
    assert trainable_names(model) == expected == set(report.trainable_names)
    assert report.layers == [0, 2, 5]
    assert (
        report.trainable_params
        == report.optimizer_params
        == sum(numel(p) for p in model.parameters() if p.requires_grad)
    )
    assert report.total_params == sum(p.numel() for p in model.parameters())


def test_freezing_overrides_earlier_requires_grad_and_can_be_redone():
    model = build_tiny_model("llama")
    freeze_except_ffn(model, [0], "all")
    freeze_except_ffn(model, [1])
    assert trainable_names(model) == {"model.layers.1.mlp.up_proj.weight", "model.layers.1.mlp.down_proj.weight"}


@pytest.mark.parametrize(
    "layers, message",
    [
        ([4], r"index 4 but LlamaForCausalLM has 4 decoder layers \(valid: -4\.\.3\)"),
        ([-5], r"valid: -4\.\.3"),
        ([], "`layers` is empty"),
        ([0, -4], r"more than once"),
    ],
)
def test_bad_layer_choices_raise_with_the_valid_range(layers, message):
    with pytest.raises(ValueError, match=message):
        freeze_except_ffn(build_tiny_model("llama"), layers)


def test_unknown_and_absent_roles_raise():
    with pytest.raises(ValueError, match="unknown role 'ffn'"):
        freeze_except_ffn(build_tiny_model("llama"), [0], ["ffn"])
    with pytest.raises(
        ValueError, match="GPT2LMHeadModel has no `gate` projection in its FFN; its roles are up, down"
    ):
        freeze_except_ffn(build_tiny_model("gpt2"), [0], ["gate", "up"])


def test_all_means_every_role_the_architecture_has():
    assert freeze_except_ffn(build_tiny_model("gpt2"), [0], "all").projections == ["up", "down"]
    assert freeze_except_ffn(build_tiny_model("llama"), [0], "all").projections == ["gate", "up", "down"]


def test_router_stays_frozen_unless_asked():
    model = build_tiny_model("qwen2_moe")
    freeze_except_ffn(model, [0])
    assert not any("mlp.gate." in n or "shared_expert_gate" in n for n in trainable_names(model))
    freeze_except_ffn(model, [0], ["up", "down", "router"])
    assert {"model.layers.0.mlp.gate.weight", "model.layers.0.mlp.shared_expert_gate.weight"} <= trainable_names(model)


def test_half_of_a_fused_tensor_counts_half_and_is_masked():
    model = build_tiny_model("phi3")
    report = freeze_except_ffn(model, [0], ["up", "down"])
    fused = model.model.layers[0].mlp.gate_up_proj.weight
    down = model.model.layers[0].mlp.down_proj.weight
    assert report.trainable_params == fused.numel() // 2 + down.numel()
    assert report.optimizer_params == fused.numel() + down.numel()
    assert report.masked_names == ["model.layers.0.mlp.gate_up_proj.weight"]
    model(input_ids=torch.tensor([[1, 2, 3]]), labels=torch.tensor([[1, 2, 3]])).loss.backward()
    half = fused.shape[0] // 2
    assert torch.count_nonzero(fused.grad[:half]) == 0  # gate half: no gradient
    assert torch.count_nonzero(fused.grad[half:]) > 0  # up half: trained
    # Both halves chosen: no mask.
    assert freeze_except_ffn(model, [0], "all").masked_names == []


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["embeddings"], {"model.embed_tokens.weight"}),
        (["lm_head"], {"lm_head.weight"}),
        (["final_norm"], {"model.norm.weight"}),
        (["layers.3.input_layernorm"], {"model.layers.3.input_layernorm.weight"}),
        (
            r"model\.layers\.[12]\.post_attention_layernorm\.weight",
            {f"model.layers.{i}.post_attention_layernorm.weight" for i in (1, 2)},
        ),
    ],
)
def test_extra_tensors_by_alias_suffix_or_regex(extra, expected):
    model = build_tiny_model("llama")
    report = freeze_except_ffn(model, [0], extra=extra)
    assert set(report.extra_names) == expected
    assert trainable_names(model) == expected | {
        "model.layers.0.mlp.up_proj.weight",
        "model.layers.0.mlp.down_proj.weight",
    }


def test_extra_that_matches_nothing_raises():
    with pytest.raises(ValueError, match="`extra` entry 'wte' matches no parameter"):
        freeze_except_ffn(build_tiny_model("llama"), [0], extra=["wte"])


def test_final_norm_alias_on_other_layouts():
    assert freeze_except_ffn(build_tiny_model("gpt2"), [0], extra=["final_norm"]).extra_names == [
        "transformer.ln_f.weight",
        "transformer.ln_f.bias",
    ]
    assert freeze_except_ffn(build_tiny_model("opt"), [0], extra=["final_norm"]).extra_names == [
        "model.decoder.final_layer_norm.weight",
        "model.decoder.final_layer_norm.bias",
    ]


def test_report_prints_a_short_table():
    text = str(freeze_except_ffn(build_tiny_model("llama"), [0, 1]))
    assert "layers [0, 1] of LlamaForCausalLM" in text
    assert "layer   1  mlp.down_proj.weight, mlp.up_proj.weight" in text
    assert "trainable" in text and "%" in text


def test_peft_model_loaded_for_inference_is_refused(tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    get_peft_model(build_tiny_model("llama"), LoraConfig(r=2, target_modules=["up_proj"])).save_pretrained(tmp_path)
    frozen = PeftModel.from_pretrained(build_tiny_model("llama"), tmp_path)  # every parameter frozen
    assert not any(p.requires_grad for p in frozen.parameters())
    with pytest.raises(ValueError, match="loaded for inference.*is_trainable=True"):
        freeze_except_ffn(frozen, [0], ["up"])


def test_peft_model_without_adapters_on_the_chosen_projection_is_refused():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(build_tiny_model("llama"), LoraConfig(r=2, target_modules=["q_proj"]))
    with pytest.raises(ValueError, match=r"mlp\.up_proj` carries no adapter"):
        freeze_except_ffn(model, [0], ["up"])


def test_zero3_partitioned_parameters_are_counted_by_ds_numel():
    # ZeRO-3 leaves each rank an empty local tensor and records the full size in `ds_numel`/`ds_shape`.
    model = build_tiny_model("llama")
    full = {name: (p.numel(), tuple(p.shape)) for name, p in model.named_parameters()}
    expected_trainable = freeze_except_ffn(model, [0, 1]).trainable_params
    for name, param in model.named_parameters():
        param.data = torch.empty(0)
        param.ds_numel, param.ds_shape = full[name]
    report = freeze_except_ffn(model, [0, 1])
    assert report.trainable_params == expected_trainable
    assert report.total_params == sum(n for n, _ in full.values())
