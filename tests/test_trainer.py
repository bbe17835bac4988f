"""`SelectiveFFNTrainer` and `SelectiveFFNCallback` train exactly the chosen FFN tensors and nothing else."""

import json
from pathlib import Path

import pytest
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from slam_trainer.architectures import get_architecture_map
from slam_trainer.callback import SelectiveFFNCallback, optimizer_parameters
from slam_trainer.freezing import numel
from slam_trainer.tiny import TINY_ARCHITECTURES, build_tiny_model
from slam_trainer.trainer import SelectiveFFNTrainer


def snapshot(model):
    return {name: param.detach().clone() for name, param in model.named_parameters()}


def assert_only_selected_changed(model, before, selected, masked_slices=None):
    masked_slices = masked_slices or {}
    for name, param in model.named_parameters():
        if name in selected:
            assert not torch.equal(param, before[name]), f"{name} was selected but did not change"
            for dim, start, stop in masked_slices.get(name, []):
                frozen = param.narrow(dim, start, stop - start)
                assert torch.equal(frozen, before[name].narrow(dim, start, stop - start)), f"{name} frozen half moved"
        else:
            assert torch.equal(param, before[name]), f"{name} is frozen but changed"


def frozen_halves(model, layers, roles):
    """(dim, start, stop) of each fused tensor's half that the chosen roles leave frozen."""
    chosen = get_architecture_map(model).tensors(layers, roles)
    all_roles = get_architecture_map(model).tensors(layers, "all")
    chosen_keys = {(t.name, t.fused_slice) for t in chosen}
    return {
        t.name: [t.fused_slice]
        for t in all_roles
        if t.fused_slice is not None
        and (t.name, t.fused_slice) not in chosen_keys
        and t.name in {c.name for c in chosen}
    }


@pytest.mark.parametrize("architecture", TINY_ARCHITECTURES)
def test_trainer_trains_exactly_the_selected_tensors(architecture, tokenizer, arithmetic_dataset, cpu_args):
    model = build_tiny_model(architecture)
    before = snapshot(model)
    trainer = SelectiveFFNTrainer(
        model=model, args=cpu_args(slam_layers=[0, -1]), train_dataset=arithmetic_dataset, processing_class=tokenizer
    )
    trainer.train()
    report = trainer.slam_report
    assert report.layers == [0, model.config.num_hidden_layers - 1]
    assert_only_selected_changed(
        model, before, set(report.trainable_names), frozen_halves(model, [0, -1], ["up", "down"])
    )
    assert sum(numel(p) for p in optimizer_parameters(trainer.optimizer)) == report.optimizer_params
    if not report.masked_names:
        assert report.optimizer_params == report.trainable_params


def test_callback_in_a_plain_trainer_gives_the_same_result(tokenizer, arithmetic_dataset, cpu_args, tmp_path):
    tokenized = arithmetic_dataset.map(
        lambda row: {"input_ids": tokenizer(row["prompt"] + row["completion"])["input_ids"]},
        remove_columns=arithmetic_dataset.column_names,
    )
    tokenized = tokenized.map(lambda row: {"labels": row["input_ids"]})
    model = build_tiny_model("llama")
    before = snapshot(model)
    callback = SelectiveFFNCallback(layers=[0, -1])
    args = TrainingArguments(
        output_dir=str(tmp_path / "plain"),
        max_steps=3,
        per_device_train_batch_size=1,
        learning_rate=1e-2,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=tokenized, callbacks=[callback])
    trainer.train()

    reference = SelectiveFFNTrainer(
        model=build_tiny_model("llama"),
        args=cpu_args(slam_layers=[0, -1]),
        train_dataset=arithmetic_dataset,
        processing_class=tokenizer,
    )
    assert callback.report.trainable_names == reference.slam_report.trainable_names
    assert callback.report.trainable_params == reference.slam_report.trainable_params
    assert_only_selected_changed(model, before, set(callback.report.trainable_names))
    assert {id(p) for p in optimizer_parameters(trainer.optimizer)} == {
        id(p) for p in model.parameters() if p.requires_grad
    }


def test_callback_refuses_an_optimizer_built_before_the_freezing(tokenizer, arithmetic_dataset, cpu_args):
    model = build_tiny_model("llama")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)  # built over every parameter
    trainer = SelectiveFFNTrainer(
        model=model,
        args=cpu_args(),
        train_dataset=arithmetic_dataset,
        processing_class=tokenizer,
        optimizers=(optimizer, None),
    )
    with pytest.raises(ValueError, match="optimizer does not hold exactly the SLAM-trainable parameters"):
        trainer.train()


def test_slam_with_lora_trains_only_adapters_on_the_chosen_projections(tokenizer, arithmetic_dataset, cpu_args):
    from peft import LoraConfig

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    trainer = SelectiveFFNTrainer(
        model=build_tiny_model("llama"),
        args=cpu_args(slam_layers=[1, 2], slam_projections=["up"]),
        train_dataset=arithmetic_dataset,
        processing_class=tokenizer,
        peft_config=lora,
    )
    model = trainer.model
    before = snapshot(model)
    trainer.train()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        f"base_model.model.model.layers.{i}.mlp.up_proj.lora_{ab}.default.weight" for i in (1, 2) for ab in "AB"
    }
    assert trainer.slam_report.peft
    assert_only_selected_changed(model, before, trainable)


def test_resized_embeddings_before_the_trainer_can_be_trained(tokenizer, arithmetic_dataset, cpu_args):
    tokenizer = tokenizer.__class__.from_pretrained(tokenizer.name_or_path) if tokenizer.name_or_path else tokenizer
    model = build_tiny_model("llama")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|zh|>", "<|en|>"]})
    model.resize_token_embeddings(len(tokenizer))
    before = snapshot(model)
    trainer = SelectiveFFNTrainer(
        model=model,
        args=cpu_args(slam_extra_trainable=["embeddings"]),
        train_dataset=arithmetic_dataset,
        processing_class=tokenizer,
    )
    trainer.train()
    assert "model.embed_tokens.weight" in trainer.slam_report.extra_names
    assert model.model.embed_tokens.weight.shape[0] == len(tokenizer)
    assert_only_selected_changed(model, before, set(trainer.slam_report.trainable_names))


@pytest.mark.parametrize("use_reentrant", [True, False])
def test_gradient_checkpointing_with_frozen_embeddings(use_reentrant, tokenizer, arithmetic_dataset, cpu_args):
    # With reentrant checkpointing and frozen embeddings, no input of a checkpointed layer requires grad, so
    # nothing below the top would get a gradient unless the inputs are made to require it.
    model = build_tiny_model("llama")
    before = snapshot(model)
    args = cpu_args(
        slam_layers=[0, 1], gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": use_reentrant}
    )
    trainer = SelectiveFFNTrainer(model=model, args=args, train_dataset=arithmetic_dataset, processing_class=tokenizer)
    trainer.train()
    assert_only_selected_changed(model, before, set(trainer.slam_report.trainable_names))


class _StopAt(TrainerCallback):
    """Stops training after `step` optimizer steps, as a killed job would (the checkpoint is already written)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        control.should_training_stop = state.global_step >= self.step


def test_resume_restores_freezing_and_optimizer_state(tokenizer, arithmetic_dataset, cpu_args, tmp_path):
    def run(output_dir, resume=None, layers=(0, -1), stop_at=None):
        model = build_tiny_model("llama")
        args = cpu_args(
            output_dir=str(output_dir), max_steps=4, save_strategy="steps", save_steps=2, slam_layers=list(layers)
        )
        trainer = SelectiveFFNTrainer(
            model=model,
            args=args,
            train_dataset=arithmetic_dataset,
            processing_class=tokenizer,
            callbacks=[_StopAt(stop_at)] if stop_at else None,
        )
        trainer.train(resume_from_checkpoint=resume)
        return model

    straight = run(tmp_path / "straight")
    run(tmp_path / "interrupted", stop_at=2)
    checkpoint = tmp_path / "interrupted" / "checkpoint-2"
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["stateful_callbacks"]["SelectiveFFNCallback"]["attributes"]["trained_layers"] == [0, 3]
    resumed = run(tmp_path / "interrupted", resume=str(checkpoint))
    for (name, a), (_, b) in zip(straight.named_parameters(), resumed.named_parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    with pytest.raises(ValueError, match=r"trained layers \[0, 3\], but this run trains \[1, 2\]"):
        run(tmp_path / "interrupted", resume=str(checkpoint), layers=(1, 2))


def test_model_card_and_logs_record_what_slam_trained(tokenizer, arithmetic_dataset, cpu_args):
    trainer = SelectiveFFNTrainer(
        model=build_tiny_model("llama"), args=cpu_args(), train_dataset=arithmetic_dataset, processing_class=tokenizer
    )
    trainer.train()
    assert trainer.state.log_history[0]["slam/trainable_params"] == trainer.slam_report.trainable_params
    trainer.create_model_card()
    card = (Path(trainer.args.output_dir) / "README.md").read_text()
    assert "- slam" in card and "- trl" in card and "- sft" in card
    assert "Trained layers (given): [0, 3]" in card
    assert f"({100 * trainer.slam_report.share:.2f}%)" in card


def test_bad_layer_index_fails_before_training(tokenizer, arithmetic_dataset, cpu_args):
    with pytest.raises(ValueError, match=r"valid: -4\.\.3"):
        SelectiveFFNTrainer(
            model=build_tiny_model("llama"),
            args=cpu_args(slam_layers=[7]),
            train_dataset=arithmetic_dataset,
            processing_class=tokenizer,
        )


def test_weight_decay_with_a_half_trained_fused_tensor_is_refused(tokenizer, arithmetic_dataset, cpu_args):
    with pytest.raises(ValueError, match="weight_decay=0.1` would move the frozen half"):
        SelectiveFFNTrainer(
            model=build_tiny_model("phi3"),
            args=cpu_args(weight_decay=0.1),
            train_dataset=arithmetic_dataset,
            processing_class=tokenizer,
        )
