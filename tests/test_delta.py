"""FFN deltas: base + delta == the trained model, tensor by tensor; a wrong base fails loudly; `slam merge` loads."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from slam_trainer.cli.main import main as slam
from slam_trainer.delta import DELTA_CONFIG_NAME, DELTA_DIR_NAME, base_fingerprint, load_ffn_delta, save_ffn_delta
from slam_trainer.freezing import freeze_except_ffn
from slam_trainer.tiny import build_tiny_model
from slam_trainer.trainer import SelectiveFFNTrainer


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tokenizer, arithmetic_dataset, make_cpu_config):
    """A tiny Llama trained 3 steps on layers 0 and -1, its base saved, and a delta of every checkpoint."""
    root = tmp_path_factory.mktemp("trained")
    base = build_tiny_model("llama")
    base.save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    args = make_cpu_config(
        root / "out", save_strategy="steps", save_steps=3, save_only_model=True, slam_save_delta=True
    )
    model = AutoModelForCausalLM.from_pretrained(root / "base")
    trainer = SelectiveFFNTrainer(model, args=args, train_dataset=arithmetic_dataset, processing_class=tokenizer)
    trainer.train()
    return root, trainer


def test_delta_round_trips_exactly_and_holds_only_trained_tensors(trained):
    root, trainer = trained
    metadata = save_ffn_delta(trainer, str(root / "delta"))
    assert set(metadata.tensors) == set(trainer.slam_report.trainable_names)
    assert metadata.layers == [0, 3] and metadata.projections == ["up", "down"]
    assert metadata.base_model == str(root / "base")
    rebuilt = load_ffn_delta(AutoModelForCausalLM.from_pretrained(root / "base"), str(root / "delta"))
    assert_same_weights(rebuilt, trainer.model)
    # The trained tensors really moved, so the round trip is not base == base.
    base = AutoModelForCausalLM.from_pretrained(root / "base")
    assert not torch.equal(base.model.layers[0].mlp.up_proj.weight, rebuilt.model.layers[0].mlp.up_proj.weight)


def test_checkpoint_delta_rebuilds_the_checkpoint(trained):
    root, _ = trained
    checkpoint = root / "out" / "checkpoint-3"
    rebuilt = load_ffn_delta(AutoModelForCausalLM.from_pretrained(root / "base"), str(checkpoint / DELTA_DIR_NAME))
    assert_same_weights(rebuilt, AutoModelForCausalLM.from_pretrained(checkpoint))


def test_wrong_base_fails_loudly(trained, tmp_path):
    root, trainer = trained
    save_ffn_delta(trainer, str(tmp_path / "delta"))
    with pytest.raises(ValueError, match="other weights than the base .* was trained on"):
        load_ffn_delta(build_tiny_model("llama", seed=1), str(tmp_path / "delta"))
    with pytest.raises(ValueError, match="trained on a LlamaForCausalLM .* but `base_model` is a GPT2LMHeadModel"):
        load_ffn_delta(build_tiny_model("gpt2"), str(tmp_path / "delta"))
    with pytest.raises(ValueError, match=r"holds `model.layers.0.mlp.up_proj.weight` of shape \[128, 32\]"):
        load_ffn_delta(build_tiny_model("llama", hidden_size=16), str(tmp_path / "delta"))
    with pytest.raises(FileNotFoundError, match=f"has no {DELTA_CONFIG_NAME}"):
        load_ffn_delta(build_tiny_model("llama"), str(tmp_path))
    # The refused bases were left untouched: the check runs before any tensor is written.
    other = build_tiny_model("llama", seed=1)
    with pytest.raises(ValueError):
        load_ffn_delta(other, str(tmp_path / "delta"))
    assert_same_weights(other, build_tiny_model("llama", seed=1))


def test_fingerprint_ignores_storage_dtype_but_not_values():
    model = build_tiny_model("llama").to(torch.bfloat16)
    names = ["model.layers.0.mlp.up_proj.weight"]
    assert base_fingerprint(model, names) == base_fingerprint(model.to(torch.float32), names)
    with torch.no_grad():
        model.model.layers[-1].self_attn.q_proj.weight[0, 0] += 1
    assert base_fingerprint(model, names) != base_fingerprint(build_tiny_model("llama"), names)


def test_half_trained_fused_tensor_is_stored_whole(tmp_path):
    model = build_tiny_model("phi3")
    freeze_except_ffn(model, [1], ["up", "down"])
    with torch.no_grad():
        model.model.layers[1].mlp.gate_up_proj.weight[64:] += 1  # the up half, as training would move it
    metadata = save_ffn_delta(model, str(tmp_path))
    assert metadata.tensors["model.layers.1.mlp.gate_up_proj.weight"] == [256, 32]
    assert_same_weights(load_ffn_delta(build_tiny_model("phi3"), str(tmp_path)), model)


def test_unfrozen_and_peft_models_are_refused_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match=r"only trainable parameters.*freeze_except_ffn"):
        save_ffn_delta(build_tiny_model("llama"), str(tmp_path))
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(build_tiny_model("llama"), LoraConfig(target_modules=["up_proj"]))
    with pytest.raises(TypeError, match=r"model.save_pretrained\(path\)"):
        save_ffn_delta(peft_model, str(tmp_path))


def test_slam_merge_writes_a_loadable_model(trained, tmp_path, capsys):
    root, trainer = trained
    save_ffn_delta(trainer, str(tmp_path / "delta"))
    assert slam(["merge", str(root / "base"), str(tmp_path / "delta"), str(tmp_path / "merged")]) == 0
    assert_same_weights(AutoModelForCausalLM.from_pretrained(tmp_path / "merged"), trainer.model)
    assert (tmp_path / "merged" / "tokenizer.json").is_file()
    # A wrong base and a non-empty output directory fail with a one-line error (exit status 2).
    build_tiny_model("llama", seed=1).save_pretrained(tmp_path / "other")
    assert slam(["merge", str(tmp_path / "other"), str(tmp_path / "delta"), str(tmp_path / "merged2")]) == 2
    assert slam(["merge", str(root / "base"), str(tmp_path / "delta"), str(tmp_path / "merged")]) == 2
    err = capsys.readouterr().err
    assert "other weights than the base" in err and "is not empty" in err


def test_metadata_is_plain_json(trained, tmp_path):
    root, trainer = trained
    save_ffn_delta(trainer, str(tmp_path), base_model="org/tiny", base_revision="abc123")
    values = json.loads((tmp_path / DELTA_CONFIG_NAME).read_text())
    assert values["base_model"] == "org/tiny" and values["base_revision"] == "abc123"
    assert values["architecture"] == "LlamaForCausalLM" and values["dtype"] == "float32"
    assert values["base_fingerprint"].startswith("sha256:") and values["slam_trainer_version"]
