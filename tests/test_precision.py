"""The precision policy: a bf16-loaded model trains its chosen FFN tensors in float32 (values, gradients, AdamW
state, delta) under the Trainer's bf16 autocast, while every frozen tensor stays bfloat16 and bitwise unchanged."""

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

from slam_trainer.callback import SelectiveFFNCallback, optimizer_parameters
from slam_trainer.delta import DeltaMetadata, load_ffn_delta, save_ffn_delta
from slam_trainer.freezing import freeze_except_ffn
from slam_trainer.precision import apply_precision_policy
from slam_trainer.tiny import build_tiny_model
from slam_trainer.trainer import SelectiveFFNTrainer


def snapshot(model):
    return {name: param.detach().clone() for name, param in model.named_parameters()}


def assert_policy_held(model, before, trained_dtype=torch.float32):
    """Trained tensors are `trained_dtype` and moved; frozen ones are bf16 and bitwise what was loaded."""
    trained = [name for name, param in model.named_parameters() if param.requires_grad]
    assert trained
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.dtype == trained_dtype, name
            assert not torch.equal(param.to(torch.bfloat16), before[name]), f"{name} did not train"
        else:
            assert param.dtype == torch.bfloat16, name
            assert torch.equal(param, before[name]), f"frozen {name} changed"


def adam_state_dtypes(optimizer) -> set:
    inner = getattr(optimizer, "optimizer", optimizer)
    return {state[key].dtype for state in inner.state.values() for key in ("exp_avg", "exp_avg_sq")}


def test_bf16_model_trains_float32_ffn_tensors_and_keeps_frozen_ones_bitwise(
    tokenizer, arithmetic_dataset, cpu_args, tmp_path
):
    model = build_tiny_model("llama").to(torch.bfloat16)
    before = snapshot(model)
    args = cpu_args(bf16=True, slam_extra_trainable=["final_norm"])  # extra tensors follow the policy too
    trainer = SelectiveFFNTrainer(model, args=args, train_dataset=arithmetic_dataset, processing_class=tokenizer)
    trainer.train()
    assert "model.norm.weight" in trainer.slam_freeze_report.extra_names
    assert_policy_held(model, before)
    assert all(p.dtype == torch.float32 for p in optimizer_parameters(trainer.optimizer))
    assert adam_state_dtypes(trainer.optimizer) == {torch.float32}

    # The delta stores the trained dtype and rebuilds the trained model on the bf16 base loaded as float32.
    save_ffn_delta(trainer, tmp_path / "delta")
    assert DeltaMetadata.read(tmp_path / "delta").dtype == "float32"
    stored = load_file(tmp_path / "delta" / "ffn_delta.safetensors")
    trained = dict(model.named_parameters())
    assert all(torch.equal(stored[name], trained[name]) for name in stored)
    base = build_tiny_model("llama").to(torch.bfloat16)
    base.load_state_dict(before)
    rebuilt = load_ffn_delta(base.float(), tmp_path / "delta").state_dict()
    assert all(torch.equal(rebuilt[name], param.float()) for name, param in model.named_parameters())


def test_model_dtype_trains_in_the_loaded_dtype(tokenizer, arithmetic_dataset, cpu_args):
    model = build_tiny_model("llama").to(torch.bfloat16)
    before = snapshot(model)
    args = cpu_args(bf16=False, slam_trainable_dtype="model")
    trainer = SelectiveFFNTrainer(model, args=args, train_dataset=arithmetic_dataset, processing_class=tokenizer)
    trainer.train()
    assert_policy_held(model, before, trained_dtype=torch.bfloat16)
    assert adam_state_dtypes(trainer.optimizer) == {torch.bfloat16}


def test_callback_applies_the_policy_in_a_plain_trainer(tokenizer, tmp_path):
    model = build_tiny_model("llama").to(torch.bfloat16)
    before = snapshot(model)
    ids = tokenizer(["1+2= 3", "3+4= 7", "2+2= 4", "4+1= 5"])["input_ids"]
    dataset = Dataset.from_dict({"input_ids": ids, "labels": ids})
    args = TrainingArguments(
        str(tmp_path), max_steps=2, per_device_train_batch_size=1, learning_rate=1e-2, use_cpu=True, bf16=True,
        report_to="none", save_strategy="no",
    )  # fmt: skip
    callback = SelectiveFFNCallback(layers=[1])
    trainer = Trainer(model=model, args=args, train_dataset=dataset, callbacks=[callback])
    trainer.train()
    assert_policy_held(model, before)
    assert callback.state()["args"]["trainable_dtype"] == "float32"


def test_gradients_match_a_float32_reference_within_bf16_tolerance():
    """Same weights (bf16 values): the float32 model's gradients of the trained tensors, and those of the bf16 model
    under the policy (float32 trained tensors, bf16 autocast)."""
    torch.manual_seed(0)
    mixed = build_tiny_model("llama").to(torch.bfloat16)
    reference = build_tiny_model("llama")
    reference.load_state_dict({name: tensor.float() for name, tensor in mixed.state_dict().items()})
    layers = [0, 2]
    plan_names = set(freeze_except_ffn(reference, layers).trainable_names)
    freeze_except_ffn(mixed, layers)
    trained = {name: p for name, p in mixed.named_parameters() if p.requires_grad}
    args = TrainingArguments("unused", bf16=True, use_cpu=True, report_to="none")
    assert apply_precision_policy(mixed, trained, "float32", args) == len(trained) == len(plan_names)

    batch = torch.randint(0, reference.config.vocab_size, (4, 24), generator=torch.Generator().manual_seed(1))
    reference(input_ids=batch, labels=batch).loss.backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = mixed(input_ids=batch, labels=batch).loss
    loss.backward()
    expected = dict(reference.named_parameters())
    for name, param in mixed.named_parameters():
        if name in plan_names:
            assert param.grad.dtype == torch.float32
            error = (param.grad - expected[name].grad).norm() / expected[name].grad.norm()
            assert error < 2**-5, f"{name}: relative gradient error {error:.4f}"  # a few bf16 roundings (2^-8 each)
        else:
            assert param.grad is None and param.dtype == torch.bfloat16, name


@pytest.mark.slow
@pytest.mark.real_model
def test_smollm2_loaded_in_bf16_trains_with_the_policy(smollm2_path, arithmetic_dataset, cpu_args):
    model = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.bfloat16)
    before = snapshot(model)
    args = cpu_args(bf16=True, slam_layers=[0, 3], max_steps=2, per_device_train_batch_size=2, learning_rate=1e-3)
    trainer = SelectiveFFNTrainer(
        model,
        args=args,
        train_dataset=arithmetic_dataset,
        processing_class=AutoTokenizer.from_pretrained(smollm2_path),
    )
    trainer.train()
    assert_policy_held(model, before)
    assert adam_state_dtypes(trainer.optimizer) == {torch.float32}


def test_slam_lora_on_a_bf16_base_trains_float32_adapters_without_autocast(tokenizer, arithmetic_dataset, cpu_args):
    """PEFT's adapter layers cast their inputs to the adapter's dtype, so no autocast is needed and none is asked."""
    from peft import LoraConfig

    model = build_tiny_model("llama").to(torch.bfloat16)
    before = snapshot(model)
    trainer = SelectiveFFNTrainer(
        model, args=cpu_args(bf16=False), train_dataset=arithmetic_dataset, processing_class=tokenizer,
        peft_config=LoraConfig(r=4, lora_alpha=8, init_lora_weights=False),
    )  # fmt: skip
    trainer.train()
    adapters = {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert adapters and all(p.dtype == torch.float32 for p in adapters.values())
    base = {
        n.replace("base_model.model.", "").replace(".base_layer", ""): p for n, p in trainer.model.named_parameters()
    }
    assert all(
        torch.equal(base[name], tensor) and base[name].dtype == torch.bfloat16 for name, tensor in before.items()
    )
