"""FFN deltas: base + delta == the trained model, tensor by tensor; a wrong base fails loudly; `slam merge` loads."""

import copy
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from slam_trainer.cli.main import main as slam
from slam_trainer.delta import DELTA_CONFIG_NAME, DELTA_DIR_NAME, base_fingerprint, load_ffn_delta, save_ffn_delta
from slam_trainer.errors import ModelError
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
    assert set(metadata.tensors) == set(trainer.slam_freeze_report.trainable_names)
    assert metadata.layers == [0, 3] and metadata.projections == ["up", "down"]
    assert metadata.base_model == str(root / "base")
    rebuilt = load_ffn_delta(AutoModelForCausalLM.from_pretrained(root / "base"), str(root / "delta"))
    assert_same_weights(rebuilt, trainer.model)
    # The trained tensors really moved, so the round trip is not base == base.
    base = AutoModelForCausalLM.from_pretrained(root / "base")
    assert not torch.equal(base.model.layers[0].mlp.up_proj.weight, rebuilt.model.layers[0].mlp.up_proj.weight)


def test_a_delta_of_a_model_loaded_by_short_name_records_the_short_name(tmp_path, monkeypatch):
    """The record travels: a model loaded from the offline cache is recorded by its short name (what `slam merge`
    and `resolve_model_path` take on any machine), not by this machine's cache folder; a folder or id as given."""
    from slam_trainer.offline_models import SOURCE_FILE

    monkeypatch.setenv("SLAM_TRAINER_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "cache" / "models" / "smollm2-135m-instruct-0123456789abcdef"
    build_tiny_model("llama").save_pretrained(folder)
    (folder / SOURCE_FILE).write_text(json.dumps({"name": "smollm2-135m-instruct"}))
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.config._name_or_path == str(folder)  # what transformers records: this machine's path
    freeze_except_ffn(model, layers=[0])
    assert save_ffn_delta(model, str(tmp_path / "d1")).base_model == "smollm2-135m-instruct"
    recorded = json.loads((tmp_path / "d1" / DELTA_CONFIG_NAME).read_text())["base_model"]
    assert recorded == "smollm2-135m-instruct"
    # a plain folder keeps its path; an explicit name wins
    plain = tmp_path / "plain"
    build_tiny_model("llama").save_pretrained(plain)
    other = AutoModelForCausalLM.from_pretrained(plain)
    freeze_except_ffn(other, layers=[0])
    assert save_ffn_delta(other, str(tmp_path / "d2")).base_model == str(plain)
    assert save_ffn_delta(other, str(tmp_path / "d3"), base_model="org/x").base_model == "org/x"


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
    assert metadata.checksums["model.layers.1.mlp.gate_up_proj.weight"].startswith("sha256:")
    assert_same_weights(load_ffn_delta(build_tiny_model("phi3"), str(tmp_path)), model)


def test_unfrozen_and_peft_models_are_refused_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match=r"only trainable parameters.*freeze_except_ffn"):
        save_ffn_delta(build_tiny_model("llama"), str(tmp_path))
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(build_tiny_model("llama"), LoraConfig(target_modules=["up_proj"]))
    with pytest.raises(ModelError, match=r"model.save_pretrained\(path\)"):
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
    assert values["base_fingerprint"].startswith("sha256-bf16:") and values["slam_trainer_version"]
    assert set(values["checksums"]) == set(values["tensors"]) and values["format_version"] == 2


# --------------------------------------------------------------------------- integrity: checked first, all or nothing


def _damage_cases():
    """(id, how to damage a saved delta directory, the message fragment): each must leave the base untouched."""
    from safetensors.torch import load_file, save_file

    from slam_trainer.delta import DELTA_WEIGHTS_NAME

    def rewrite(directory, change, *, fix_checksums=False):
        tensors = load_file(directory / DELTA_WEIGHTS_NAME)
        change(tensors)
        save_file(tensors, directory / DELTA_WEIGHTS_NAME)
        if fix_checksums:  # a crafted file: checksums made to match, so that the later checks must catch it
            from slam_trainer.delta import tensor_checksum

            values = json.loads((directory / DELTA_CONFIG_NAME).read_text())
            values["checksums"] = {name: tensor_checksum(tensor) for name, tensor in tensors.items()}
            (directory / DELTA_CONFIG_NAME).write_text(json.dumps(values))

    first = "model.layers.0.mlp.up_proj.weight"

    def broadcastable(tensors):
        tensors[first] = tensors[first][:1].clone()  # [1, 32] would broadcast over [128, 32] in `copy_`

    def poisoned(tensors):
        tensors[first][0, 0] = float("nan")

    def flipped(directory):
        data = bytearray((directory / DELTA_WEIGHTS_NAME).read_bytes())
        data[-5] ^= 0xFF
        (directory / DELTA_WEIGHTS_NAME).write_bytes(bytes(data))

    def torn(directory):
        data = (directory / DELTA_WEIGHTS_NAME).read_bytes()
        (directory / DELTA_WEIGHTS_NAME).write_bytes(data[: len(data) // 2])

    def edit_metadata(directory, **changes):
        values = json.loads((directory / DELTA_CONFIG_NAME).read_text())
        (directory / DELTA_CONFIG_NAME).write_text(json.dumps({**values, **changes}))

    return [
        (
            "edited-layers",
            lambda d: edit_metadata(d, layers=[5]),
            "lists layers [5] but its tensors are in layers",
        ),
        ("edited-layers-text", lambda d: edit_metadata(d, layers="0"), "`layers` must be a list of layer indices"),
        (
            "edited-projections",
            lambda d: edit_metadata(d, projections=["router"]),
            "and projections ['router'], but its tensors are layers",
        ),
        ("unknown-projection", lambda d: edit_metadata(d, projections=["mlp"]), "`projections` must list roles"),
        ("broadcastable-shape", lambda d: rewrite(d, broadcastable), "has shape [1, 32]"),
        ("nan", lambda d: rewrite(d, poisoned, fix_checksums=True), "NaN or infinite"),
        ("flipped-byte", flipped, "does not match the checksum"),
        ("listed-but-absent", lambda d: rewrite(d, lambda t: t.pop(first)), "missing: ['model.layers.0.mlp.up_proj"),
        ("integer-dtype", lambda d: rewrite(d, lambda t: t.update({first: t[first].long()})), "is int64"),
        ("torn-weights", torn, "cannot be read"),
    ]


DAMAGES = _damage_cases()  # also rows of the `slam merge` table in tests/test_bad_inputs.py


@pytest.mark.parametrize("name, damage, expected", DAMAGES, ids=[case[0] for case in DAMAGES])
def test_a_damaged_delta_is_refused_before_the_base_is_touched(name, damage, expected, trained, tmp_path):
    root, trainer = trained
    save_ffn_delta(trainer, str(tmp_path / "delta"))
    damage(tmp_path / "delta")
    base = AutoModelForCausalLM.from_pretrained(root / "base")
    with pytest.raises(ValueError, match=re.escape(expected)):
        load_ffn_delta(base, str(tmp_path / "delta"))
    assert_same_weights(base, AutoModelForCausalLM.from_pretrained(root / "base"))


def test_merge_to_bfloat16_from_a_float32_base_matches_the_cast_trained_model(trained, tmp_path):
    root, trainer = trained
    save_ffn_delta(trainer, str(tmp_path / "delta"))
    assert (
        slam(["merge", str(root / "base"), str(tmp_path / "delta"), str(tmp_path / "bf16"), "--dtype", "bfloat16"])
        == 0
    )
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "bf16", dtype="auto")
    assert merged.dtype == torch.bfloat16
    assert_same_weights(merged, copy.deepcopy(trainer.model).to(torch.bfloat16))


def test_a_base_loaded_in_bfloat16_takes_a_delta_trained_in_float32(trained, tmp_path):
    root, trainer = trained
    save_ffn_delta(trainer, str(tmp_path / "delta"))
    base = AutoModelForCausalLM.from_pretrained(root / "base", dtype=torch.bfloat16)
    assert_same_weights(load_ffn_delta(base, str(tmp_path / "delta")), copy.deepcopy(trainer.model).to(torch.bfloat16))


def test_a_file_of_a_delta_stands_for_its_directory(trained, tmp_path):
    root, trainer = trained
    save_ffn_delta(trainer, str(tmp_path / "delta"))
    weights = str(
        tmp_path / "delta" / "ffn_delta.safetensors"
    )  # as in docs/evaluation.md: `--delta delta.safetensors`
    assert_same_weights(load_ffn_delta(AutoModelForCausalLM.from_pretrained(root / "base"), weights), trainer.model)


def test_save_strategy_no_still_writes_the_final_delta(tmp_path, tokenizer, arithmetic_dataset, make_cpu_config):
    args = make_cpu_config(tmp_path / "out", slam_save_delta=True)  # save_strategy="no", as recipes/slam_tiny_cpu.yaml
    model = build_tiny_model("llama")
    trainer = SelectiveFFNTrainer(model, args=args, train_dataset=arithmetic_dataset, processing_class=tokenizer)
    trainer.train()
    assert not list((tmp_path / "out").glob("checkpoint-*"))
    rebuilt = load_ffn_delta(build_tiny_model("llama"), str(tmp_path / "out" / DELTA_DIR_NAME))
    assert_same_weights(rebuilt, trainer.model)


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["during_weights", "between_files"])
def test_a_save_killed_midway_never_leaves_a_delta_that_looks_complete(moment, tmp_path):
    """A real process saving over an older delta is killed (SIGKILL) mid-save: what is left is either the older delta,
    whole, or refused with a clear message, never a half-written delta that loads."""
    from tests.scripts.save_delta_killed import trained_tiny_llama

    older = trained_tiny_llama(1.0)
    save_ffn_delta(older, str(tmp_path / "delta"))
    script = Path(__file__).parent / "scripts" / "save_delta_killed.py"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "delta"), moment], env=env, timeout=300)
    assert result.returncode == -signal.SIGKILL
    base = build_tiny_model("llama")
    if moment == "during_weights":
        assert_same_weights(load_ffn_delta(base, str(tmp_path / "delta")), older)  # the older delta, intact
    else:
        with pytest.raises(ValueError, match="different saves"):
            load_ffn_delta(base, str(tmp_path / "delta"))
        assert_same_weights(base, build_tiny_model("llama"))
    save_ffn_delta(older, str(tmp_path / "delta"))  # the next save repairs it and clears the temporary file left
    assert sorted(path.name for path in (tmp_path / "delta").iterdir()) == ["ffn_delta.safetensors", DELTA_CONFIG_NAME]
    assert_same_weights(load_ffn_delta(build_tiny_model("llama"), str(tmp_path / "delta")), older)


@pytest.mark.real_model
@pytest.mark.slow
def test_smollm2_delta_with_tied_embeddings_merges_and_reloads_to_the_same_tensors(smollm2_path, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(smollm2_path)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied, as the checkpoint says
    freeze_except_ffn(model, [0, -1], ["up", "down"], extra=["embeddings"])
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:  # as training would move them
                param.add_(torch.randn(param.shape, generator=generator) * 1e-2)
    save_ffn_delta(model, str(tmp_path / "delta"))
    for dtype, expected in (("auto", model), ("bfloat16", copy.deepcopy(model).to(torch.bfloat16))):
        out = tmp_path / f"merged-{dtype}"
        assert slam(["merge", smollm2_path, str(tmp_path / "delta"), str(out), "--dtype", dtype]) == 0
        merged = AutoModelForCausalLM.from_pretrained(out, dtype="auto")
        assert merged.lm_head.weight is merged.model.embed_tokens.weight
        assert_same_weights(merged, expected)
