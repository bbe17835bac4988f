"""`freeze_except_ffn`: exactly the chosen tensors train; bad choices fail with a message that says what to do."""

import logging

import pytest
import torch
from transformers import AutoModelForCausalLM

from slam_trainer.distributed import numel
from slam_trainer.freezing import freeze_except_ffn
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
    with pytest.raises(ValueError, match=r"unknown role\(s\) \['ffn'\]"):
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


def gate_entries_by_perturbation(model, tensor: torch.Tensor, dim: int) -> set[int]:
    """Indices along `dim` of the entries of a fused gate/up tensor of layer 0 that feed the FFN's non-linearity.

    Found from the model's own forward pass, not from any layout: the FFN output is linear in an `up` entry and not
    in a `gate` entry, so a second difference of the output in the entry's direction tells them apart.
    """
    mlp = model.model.layers[0].mlp
    captured = {}
    handle = mlp.register_forward_hook(lambda module, args, output: captured.setdefault("hidden", args[0]))
    model(input_ids=INPUT_IDS)
    handle.remove()

    def output():
        out = mlp(captured["hidden"])
        return (out[0] if isinstance(out, tuple) else out).detach()

    base, step, gate = output(), 0.1, set()
    with torch.no_grad():
        for index in range(tensor.shape[dim]):
            entries = tensor.select(dim, index)
            original = entries.clone()
            entries.add_(step)
            once = output()
            entries.add_(step)
            twice = output()
            entries.copy_(original)
            first, second = (once - base).abs().max(), (twice - 2 * once + base).abs().max()
            assert first > 0, f"entry {index} does not reach the output"
            if second > 1e-3 * first:  # float32: a linear entry's second difference is rounding noise (~1e-6)
                gate.add(index)
    return gate


INPUT_IDS = torch.arange(1, 33).view(2, 16)


@pytest.mark.parametrize("architecture", ["phi3", "mixtral", "qwen3_moe", "gpt_oss"])
def test_the_gate_entries_of_a_fused_tensor_are_exactly_the_frozen_ones(architecture):
    # gpt-oss interleaves gate and up (`gate_up[..., ::2]`, `[..., 1::2]`) along the last dimension of an
    # `(experts, hidden, 2 * intermediate)` bank; Phi-3 and the other banks hold them as halves of the output rows.
    model = build_tiny_model(architecture)
    hidden = model.config.hidden_size
    fused = {
        name: param
        for name, param in model.named_parameters()
        if name.startswith("model.layers.0.") and "gate_up_proj" in name
    }
    dims = {name: 0 if param.dim() < 3 and "bias" not in name else param.dim() - 1 for name, param in fused.items()}
    for name, param in fused.items():
        if param.dim() == 3:  # a bank: the output dimension is the one that is not the hidden size
            dims[name] = 2 if param.shape[1] == hidden else 1
    gates = {name: gate_entries_by_perturbation(model, param, dims[name]) for name, param in fused.items()}
    assert all(len(gate) == param.shape[dims[name]] // 2 for (name, gate), param in zip(gates.items(), fused.values()))

    report = freeze_except_ffn(model, [0], ["up", "down"])
    assert sorted(report.masked_names) == sorted(fused)
    before = {name: param.detach().clone() for name, param in fused.items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    for _ in range(2):
        model(input_ids=INPUT_IDS, labels=INPUT_IDS).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    for name, param in fused.items():
        dim, size = dims[name], param.shape[dims[name]]
        moved = {i for i in range(size) if not torch.equal(param.select(dim, i), before[name].select(dim, i))}
        assert moved == set(range(size)) - gates[name], name  # up entries train, gate entries stay bitwise
    # Both roles chosen: no mask.
    assert freeze_except_ffn(model, [0], "all").masked_names == []


def test_half_of_a_fused_tensor_counts_half():
    model = build_tiny_model("phi3")
    report = freeze_except_ffn(model, [0], ["up", "down"])
    fused = model.model.layers[0].mlp.gate_up_proj.weight
    down = model.model.layers[0].mlp.down_proj.weight
    assert report.trainable_params == fused.numel() // 2 + down.numel()
    assert report.optimizer_params == fused.numel() + down.numel()
    assert report.masked_names == ["model.layers.0.mlp.gate_up_proj.weight"]


LAYER_0_FFN = {"model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight"}


@pytest.mark.parametrize(
    "extra, expected",
    [
        # Aliases, resolved structurally (exempt from the size check: they name exactly what they train).
        (["embeddings"], {"model.embed_tokens.weight"}),
        (["lm_head"], {"lm_head.weight"}),
        (["final_norm"], {"model.norm.weight"}),
        # PEFT's rule for a list: a module or parameter name, matched exactly or as a dotted suffix.
        (["layers.3.input_layernorm"], {"model.layers.3.input_layernorm.weight"}),
        (["model.layers.3.input_layernorm.weight"], {"model.layers.3.input_layernorm.weight"}),
        (["layers.2.self_attn.q_proj"], {"model.layers.2.self_attn.q_proj.weight"}),
        (["self_attn.q_proj"], {f"model.layers.{i}.self_attn.q_proj.weight" for i in range(4)}),  # every layer
        # PEFT's rule for a string: a regex that matches a whole module or parameter name.
        (
            r"model\.layers\.[12]\.post_attention_layernorm",
            {f"model.layers.{i}.post_attention_layernorm.weight" for i in (1, 2)},
        ),
        (
            r"model\.layers\.[12]\.post_attention_layernorm\.weight",
            {f"model.layers.{i}.post_attention_layernorm.weight" for i in (1, 2)},
        ),
        # Bad or loose patterns.
        ("weight", "`extra` regex 'weight' matches no module or parameter"),
        ("layers.3.input_layernorm", "regex 'layers.3.input_layernorm' matches no module"),
        (["wte"], "`extra` entry 'wte' matches no module or parameter"),
        (["weight"], r"`extra` selects 74,272 parameters \(90\.1% of LlamaForCausalLM\), more than the chosen FFN"),
        (["mlp"], r"'mlp': 10 tensors, 40,960 parameters"),
        (["embed_tokens"], r"more than the chosen FFN tensors themselves \(8,192\)"),
    ],
)
def test_extra_follows_peft_matching_and_refuses_loose_patterns(extra, expected):
    model = build_tiny_model("llama")
    if isinstance(expected, str):
        before = {name for name, param in model.named_parameters() if param.requires_grad}
        with pytest.raises(ValueError, match=expected):
            freeze_except_ffn(model, [0], extra=extra)
        assert {name for name, param in model.named_parameters() if param.requires_grad} == before  # untouched
        return
    report = freeze_except_ffn(model, [0], extra=extra)
    assert set(report.extra_names) == expected
    assert trainable_names(model) == expected | LAYER_0_FFN


def test_a_large_extra_trains_when_told():
    model = build_tiny_model("llama")
    report = freeze_except_ffn(model, [0], extra=["mlp"], allow_large_extra=True)
    assert trainable_names(model) == {n for n, _ in model.named_parameters() if ".mlp." in n}
    assert report.trainable_params == sum(p.numel() for n, p in model.named_parameters() if ".mlp." in n)


@pytest.mark.parametrize("extra", [["lm_head"], ["embeddings"], r"model\.embed_tokens"])
def test_training_a_tied_lm_head_is_announced(extra, caplog):
    model = build_tiny_model("llama", tie_word_embeddings=True)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    with caplog.at_level(logging.WARNING):
        report = freeze_except_ffn(model, [0], extra=extra, allow_large_extra=True)
    assert report.extra_names == ["model.embed_tokens.weight"]
    assert "ties its output layer (lm_head) to its input embeddings" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        freeze_except_ffn(build_tiny_model("llama"), [0], extra=["lm_head"])  # untied: nothing to announce
    assert "ties" not in caplog.text


@pytest.mark.slow
@pytest.mark.real_model
@pytest.mark.parametrize("fixture", ["smollm2_path", "gemma3_path"])
def test_real_tied_models_train_both_ends_through_lm_head(fixture, request, caplog):
    model = AutoModelForCausalLM.from_pretrained(request.getfixturevalue(fixture))
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    with caplog.at_level(logging.WARNING):
        report = freeze_except_ffn(model, [0], extra=["lm_head"])
    assert report.extra_names == ["model.embed_tokens.weight"]
    assert model.get_output_embeddings().weight.requires_grad
    assert f"{type(model).__name__} ties its output layer (lm_head)" in caplog.text


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
    with pytest.raises(ValueError, match=r"layers\.0\.mlp\.up_proj\.weight` carries no adapter"):
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


@pytest.mark.parametrize(
    "projections, trained_roles, adapted",
    [
        (["up", "down"], ["gate", "up", "down"], {"experts.base_layer", "experts"}),  # the LoRA covers gate too
        (["down"], ["down"], {"experts"}),  # the outer wrapper adapts `down_proj`
    ],
)
def test_slam_on_a_lora_wrapped_moe_bank(projections, trained_roles, adapted, caplog):
    from peft import LoraConfig, get_peft_model

    targets = ["model.layers.0.mlp.experts.gate_up_proj", "model.layers.0.mlp.experts.down_proj"]
    model = get_peft_model(build_tiny_model("mixtral"), LoraConfig(r=2, target_modules=[], target_parameters=targets))
    with caplog.at_level(logging.WARNING):
        report = freeze_except_ffn(model, [0], projections)
    assert report.peft and report.projections == trained_roles
    assert ("also trains gate" in caplog.text) == ("gate" in trained_roles)
    prefix = "base_model.model.model.layers.0.mlp."
    assert trainable_names(model) == {
        f"{prefix}{wrapper}.lora_{ab}.default.weight" for wrapper in adapted for ab in "AB"
    }
    assert report.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad)
