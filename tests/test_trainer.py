"""`SelectiveFFNTrainer` and `SelectiveFFNCallback` train exactly the chosen FFN tensors and nothing else."""

import json
import logging
from pathlib import Path

import pytest
import torch
from transformers import PreTrainedModel, Trainer, TrainerCallback, TrainingArguments

from slam_trainer.architectures import get_architecture_map
from slam_trainer.callback import SelectiveFFNCallback, optimizer_parameters
from slam_trainer.config import cpu_training_defaults
from slam_trainer.distributed import numel
from slam_trainer.tiny import TINY_ARCHITECTURES, UNPROBED_ARCHITECTURES, build_tiny_model
from slam_trainer.trainer import SelectiveFFNTrainer


def snapshot(model):
    return {name: param.detach().clone() for name, param in model.named_parameters()}


def assert_only_selected_changed(model, before, selected, masked_slices=None):
    masked_slices = masked_slices or {}
    for name, param in model.named_parameters():
        if name in selected:
            assert not torch.equal(param, before[name]), f"{name} was selected but did not change"
            for dim, start, stop, step in masked_slices.get(name, []):
                index = torch.arange(start, stop, step)
                frozen = param.index_select(dim, index)
                assert torch.equal(frozen, before[name].index_select(dim, index)), f"{name} frozen part moved"
        else:
            assert torch.equal(param, before[name]), f"{name} is frozen but changed"


def frozen_halves(model, layers, roles):
    """The `FusedSlice` of each fused tensor's part that the chosen roles leave frozen."""
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


@pytest.mark.parametrize("architecture", TINY_ARCHITECTURES + UNPROBED_ARCHITECTURES)
def test_trainer_trains_exactly_the_selected_tensors(architecture, tokenizer, arithmetic_dataset, cpu_args):
    model = build_tiny_model(architecture)
    before = snapshot(model)
    trainer = SelectiveFFNTrainer(
        model=model, args=cpu_args(slam_layers=[0, -1]), train_dataset=arithmetic_dataset, processing_class=tokenizer
    )
    trainer.train()
    report = trainer.slam_freeze_report
    assert report.layers == [0, model.config.num_hidden_layers - 1]
    assert_only_selected_changed(
        model, before, set(report.trainable_names), frozen_halves(model, [0, -1], ["up", "down"])
    )
    assert sum(numel(p) for p in optimizer_parameters(trainer.optimizer)) == report.optimizer_params
    if not report.masked_names:
        assert report.optimizer_params == report.trainable_params


@pytest.fixture
def tokenized_dataset(tokenizer, arithmetic_dataset):
    """The arithmetic rows as token ids with labels, for a plain `Trainer`."""
    tokenized = arithmetic_dataset.map(
        lambda row: {"input_ids": tokenizer(row["prompt"] + row["completion"])["input_ids"]},
        remove_columns=arithmetic_dataset.column_names,
    )
    return tokenized.map(lambda row: {"labels": row["input_ids"]})


def plain_args(output_dir, **overrides):
    """`TrainingArguments` of a plain `Trainer` on the CPU."""
    kwargs = dict(
        output_dir=str(output_dir),
        max_steps=3,
        per_device_train_batch_size=1,
        learning_rate=1e-2,
        **cpu_training_defaults(),
    )
    return TrainingArguments(**{**kwargs, **overrides})


def test_callback_in_a_plain_trainer_gives_the_same_result(
    tokenized_dataset, tokenizer, arithmetic_dataset, cpu_args, tmp_path
):
    model = build_tiny_model("llama")
    before = snapshot(model)
    callback = SelectiveFFNCallback(layers=[0, -1])
    trainer = Trainer(
        model=model, args=plain_args(tmp_path / "plain"), train_dataset=tokenized_dataset, callbacks=[callback]
    )
    trainer.train()

    reference = SelectiveFFNTrainer(
        model=build_tiny_model("llama"),
        args=cpu_args(slam_layers=[0, -1]),
        train_dataset=arithmetic_dataset,
        processing_class=tokenizer,
    )
    assert callback.slam_freeze_report.trainable_names == reference.slam_freeze_report.trainable_names
    assert callback.slam_freeze_report.trainable_params == reference.slam_freeze_report.trainable_params
    assert_only_selected_changed(model, before, set(callback.slam_freeze_report.trainable_names))
    assert {id(p) for p in optimizer_parameters(trainer.optimizer)} == {
        id(p) for p in model.parameters() if p.requires_grad
    }


def test_the_callback_prints_what_trains_unless_told_not_to(tokenized_dataset, tmp_path, capsys):
    """A script shows no INFO logs: the freeze table is printed on the main process when the trainer is built."""
    callback = SelectiveFFNCallback(layers=[0, -1])
    Trainer(
        model=build_tiny_model("llama"),
        args=plain_args(tmp_path / "a"),
        train_dataset=tokenized_dataset,
        callbacks=[callback],
    )
    shown = capsys.readouterr().out
    assert str(callback.slam_freeze_report) in shown and "SLAM: training up+down of layers [0, 3]" in shown
    assert "trainable" in shown
    quiet = SelectiveFFNCallback(layers=[0], print_report=False)
    Trainer(
        model=build_tiny_model("llama"),
        args=plain_args(tmp_path / "b"),
        train_dataset=tokenized_dataset,
        callbacks=[quiet],
    )
    assert "SLAM: training" not in capsys.readouterr().out and quiet.slam_freeze_report.layers == [0]


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


def test_callback_added_after_the_trainer_was_built_refuses_to_train(tokenized_dataset, tmp_path):
    # `on_init_end` has passed, so the callback never froze anything: training would silently update every tensor.
    model = build_tiny_model("llama")
    before = snapshot(model)
    trainer = Trainer(model=model, args=plain_args(tmp_path), train_dataset=tokenized_dataset)
    trainer.add_callback(SelectiveFFNCallback(layers=[0]))
    with pytest.raises(ValueError, match=r"did not freeze this model: it joined the trainer after `Trainer.__init__`"):
        trainer.train()
    assert_only_selected_changed(model, before, selected=set())


def test_weight_decay_of_a_custom_optimizer_on_a_half_trained_tensor_is_refused(
    tokenizer, arithmetic_dataset, cpu_args
):
    # The optimizer holds exactly the trainable tensors and `args.weight_decay` is 0, but its own weight decay would
    # shrink the frozen gate half of Phi-3's fused `gate_up_proj`.
    from slam_trainer.freezing import freeze_except_ffn

    model = build_tiny_model("phi3")
    freeze_except_ffn(model, [0, -1])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    before = snapshot(model)
    trainer = SelectiveFFNTrainer(
        model=model,
        args=cpu_args(weight_decay=0.0),
        train_dataset=arithmetic_dataset,
        processing_class=tokenizer,
        optimizers=(optimizer, None),
    )
    with pytest.raises(
        ValueError,
        match=r"`weight_decay=0\.1` \(a param group of the optimizer\) would move the frozen part .*gate_up_proj",
    ):
        trainer.train()
    assert_only_selected_changed(model, before, selected=set())


def test_slam_with_lora_on_an_moe_model_trains_the_bank_adapters(tokenizer, arithmetic_dataset, cpu_args, caplog):
    from peft import LoraConfig

    with caplog.at_level(logging.WARNING):
        trainer = SelectiveFFNTrainer(
            model=build_tiny_model("mixtral"),
            args=cpu_args(slam_layers=[1]),
            train_dataset=arithmetic_dataset,
            processing_class=tokenizer,
            peft_config=LoraConfig(r=2, lora_alpha=4, init_lora_weights=False),
        )
    model = trainer.model
    before = snapshot(model)
    trainer.train()
    bank = "base_model.model.model.layers.1.mlp.experts"
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{bank}{inner}.lora_{ab}.default.weight" for inner in ("", ".base_layer") for ab in "AB"}
    assert trainer.slam_freeze_report.projections == ["gate", "up", "down"]  # the LoRA on `gate_up_proj` adapts both
    assert "also trains gate" in caplog.text
    assert_only_selected_changed(model, before, trainable)


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
    assert trainer.slam_freeze_report.peft
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
    assert "model.embed_tokens.weight" in trainer.slam_freeze_report.extra_names
    assert model.model.embed_tokens.weight.shape[0] == len(tokenizer)
    assert_only_selected_changed(model, before, set(trainer.slam_freeze_report.trainable_names))


class _FirstGradients(TrainerCallback):
    """Copies the gradients of the trainable tensors just before the first optimizer step."""

    def __init__(self):
        self.gradients = {}

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if not self.gradients:
            self.gradients = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("use_reentrant", [True, False])
def test_gradient_checkpointing_gives_the_gradients_of_training_without_it(
    use_reentrant, monkeypatch, tokenizer, arithmetic_dataset, cpu_args
):
    # Frozen embeddings and a trainable lm_head: with reentrant checkpointing, no input of a checkpointed layer
    # requires grad, so the trained layers below would get no gradient while the loss still has a graph (no error).
    # transformers 5.23 happens to hook the embeddings itself; the trainer must not depend on that call.
    monkeypatch.setattr(PreTrainedModel, "enable_input_require_grads", lambda self: None)

    def first_gradients(checkpointing: bool) -> dict:
        capture = _FirstGradients()
        args = cpu_args(
            slam_layers=[0, 1],
            slam_extra_trainable=["lm_head"],
            max_steps=1,
            max_grad_norm=0.0,
            activation_checkpointing=checkpointing,
            activation_checkpointing_kwargs={"use_reentrant": use_reentrant},
        )
        SelectiveFFNTrainer(
            model=build_tiny_model("llama"),
            args=args,
            train_dataset=arithmetic_dataset,
            processing_class=tokenizer,
            callbacks=[capture],
        ).train()
        return capture.gradients

    plain, checkpointed = first_gradients(False), first_gradients(True)
    assert plain.keys() == checkpointed.keys() and "model.layers.0.mlp.up_proj.weight" in plain
    for name, gradient in plain.items():
        assert torch.count_nonzero(gradient) > 0, name
        torch.testing.assert_close(checkpointed[name], gradient, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.real_model
@pytest.mark.slow
def test_gradient_checkpointing_on_a_real_model_gives_the_same_gradients(
    monkeypatch, arithmetic_dataset, cpu_args, smollm2_path
):
    # SmolLM2 ties lm_head to the embeddings, so `extra=["lm_head"]` would make the embeddings train (and the inputs
    # require grad anyway); the final norm above the layers is what trains while the embeddings stay frozen.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setattr(PreTrainedModel, "enable_input_require_grads", lambda self: None)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)

    def first_gradients(checkpointing: bool) -> dict:
        capture = _FirstGradients()
        args = cpu_args(
            slam_layers=[0, 1],
            slam_extra_trainable=["final_norm"],
            max_steps=1,
            max_grad_norm=0.0,
            activation_checkpointing=checkpointing,
            activation_checkpointing_kwargs={"use_reentrant": True},
        )
        model = AutoModelForCausalLM.from_pretrained(smollm2_path)
        SelectiveFFNTrainer(
            model, args=args, train_dataset=arithmetic_dataset, processing_class=tokenizer, callbacks=[capture]
        ).train()
        assert not model.get_input_embeddings().weight.requires_grad
        return capture.gradients

    plain, checkpointed = first_gradients(False), first_gradients(True)
    assert (
        plain.keys()
        == checkpointed.keys()
        == {
            "model.norm.weight",
            *(f"model.layers.{i}.mlp.{p}_proj.weight" for i in (0, 1) for p in ("up", "down")),
        }
    )
    for name, gradient in plain.items():
        assert torch.count_nonzero(gradient) > 0, name
        torch.testing.assert_close(checkpointed[name], gradient, rtol=1e-4, atol=1e-6, msg=name)


class _StopAt(TrainerCallback):
    """Stops training after `step` optimizer steps, as a killed job would (the checkpoint is already written)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        control.should_training_stop = state.global_step >= self.step


def test_resume_restores_freezing_and_optimizer_state(tokenizer, arithmetic_dataset, cpu_args, tmp_path):
    def run(output_dir, resume=None, layers=(0, -1), stop_at=None, restore=False):
        model = build_tiny_model("llama")
        args = cpu_args(
            output_dir=str(output_dir),
            max_steps=4,
            save_strategy="steps",
            save_steps=2,
            slam_layers=list(layers),
            restore_callback_states_from_checkpoint=restore,
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
    for restore in (False, True):  # True: transformers rebuilds the callback from the checkpoint's stored state
        resumed = run(tmp_path / "interrupted", resume=str(checkpoint), restore=restore)
        for (name, a), (_, b) in zip(straight.named_parameters(), resumed.named_parameters()):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    for layers in [(1, 2), (1,), (0, 1, 3)]:  # the same count, and counts whose optimizer state cannot even load
        with pytest.raises(ValueError, match=rf"trained layers \[0, 3\], but this run trains \{list(layers)}"):
            run(tmp_path / "interrupted", resume=str(checkpoint), layers=layers)


def test_a_plain_trainer_resuming_with_a_rebuilt_callback_checks_the_model_it_adopts(tokenized_dataset, tmp_path):
    # With `restore_callback_states_from_checkpoint=True` transformers replaces the callback by one built from the
    # checkpoint's stored arguments; it never saw `on_init_end`, so it adopts the freezing only if it is its own.
    def run(layers, resume=None):
        model = build_tiny_model("llama")
        args = plain_args(
            tmp_path, max_steps=2, save_strategy="steps", save_steps=1, restore_callback_states_from_checkpoint=True
        )
        trainer = Trainer(model, args=args, train_dataset=tokenized_dataset, callbacks=[SelectiveFFNCallback(layers)])
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    run([0, 3])
    resumed = run([0, 3], resume=str(tmp_path / "checkpoint-1"))
    rebuilt = next(c for c in resumed.callback_handler.callbacks if isinstance(c, SelectiveFFNCallback))
    assert rebuilt.slam_freeze_report.layers == [0, 3]
    with pytest.raises(ValueError, match=r"SelectiveFFNCallback\(layers=\[0, 3\]\) did not freeze this model"):
        run([1, 2], resume=str(tmp_path / "checkpoint-1"))


def test_model_card_and_logs_record_what_slam_trained(tokenizer, arithmetic_dataset, cpu_args):
    trainer = SelectiveFFNTrainer(
        model=build_tiny_model("llama"), args=cpu_args(), train_dataset=arithmetic_dataset, processing_class=tokenizer
    )
    trainer.train()
    assert trainer.state.log_history[0]["slam/trainable_params"] == trainer.slam_freeze_report.trainable_params
    trainer.create_model_card()
    card = (Path(trainer.args.output_dir) / "README.md").read_text()
    assert "- slam" in card and "- trl" in card and "- sft" in card
    assert "Trained layers (given): [0, 3]" in card
    assert f"({100 * trainer.slam_freeze_report.share:.2f}%)" in card


def test_bad_layer_index_fails_before_training(tokenizer, arithmetic_dataset, cpu_args):
    with pytest.raises(ValueError, match=r"valid: -4\.\.3"):
        SelectiveFFNTrainer(
            model=build_tiny_model("llama"),
            args=cpu_args(slam_layers=[7]),
            train_dataset=arithmetic_dataset,
            processing_class=tokenizer,
        )


def test_weight_decay_with_a_half_trained_fused_tensor_is_refused(tokenizer, arithmetic_dataset, cpu_args):
    with pytest.raises(
        ValueError,
        match=r"`weight_decay=0\.1` would move the frozen part of the fused tensor\(s\) model\.layers\.0\.mlp",
    ):
        SelectiveFFNTrainer(
            model=build_tiny_model("phi3"),
            args=cpu_args(weight_decay=0.1),
            train_dataset=arithmetic_dataset,
            processing_class=tokenizer,
        )


def test_model_init_kwargs_of_a_model_loaded_by_name_are_used_and_not_called_ignored(
    tmp_path, tokenizer, arithmetic_dataset, cpu_args, caplog
):
    path = tmp_path / "base"
    build_tiny_model("llama").save_pretrained(path)
    tokenizer.save_pretrained(path)
    init_kwargs = {"dtype": "bfloat16", "attn_implementation": "eager"}
    with caplog.at_level(logging.WARNING):
        trainer = SelectiveFFNTrainer(
            str(path), args=cpu_args(model_init_kwargs=init_kwargs, bf16=True), train_dataset=arithmetic_dataset
        )
    assert trainer.model.dtype == torch.bfloat16 and trainer.model.config._attn_implementation == "eager"
    assert trainer.processing_class.chat_template == tokenizer.chat_template  # loaded from the same folder
    assert "will be ignored" not in caplog.text
    assert trainer.args.model_init_kwargs == init_kwargs  # as given: saved with the run's arguments
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # a model object: the kwargs really are ignored, and TRL says so
        SelectiveFFNTrainer(
            build_tiny_model("llama"),
            args=cpu_args(model_init_kwargs=init_kwargs),
            train_dataset=arithmetic_dataset,
            processing_class=tokenizer,
        )
    assert "The `model_init_kwargs` will be ignored" in caplog.text


def test_a_model_loaded_by_name_draws_missing_weights_from_the_seed(tmp_path, tokenizer, arithmetic_dataset, cpu_args):
    # As SFTTrainer does, the seed is set before loading: weights the checkpoint lacks are then reproducible.
    from safetensors.torch import load_file, save_file

    path = tmp_path / "base"
    build_tiny_model("llama").save_pretrained(path)
    tokenizer.save_pretrained(path)
    weights = load_file(path / "model.safetensors")
    save_file(
        {k: v for k, v in weights.items() if k != "lm_head.weight"}, path / "model.safetensors", {"format": "pt"}
    )

    def lm_head(seed, state):
        torch.manual_seed(state)  # whatever random state the caller left behind must not matter
        args = cpu_args(seed=seed, output_dir=str(tmp_path / f"out{seed}"))
        return SelectiveFFNTrainer(str(path), args=args, train_dataset=arithmetic_dataset).model.lm_head.weight

    assert torch.equal(lm_head(0, state=1), lm_head(0, state=2))
    assert not torch.equal(lm_head(0, state=3), lm_head(1, state=3))


@pytest.mark.slow
@pytest.mark.real_model
def test_a_real_model_loads_by_offline_short_name_with_its_init_kwargs(arithmetic_dataset, cpu_args, smollm2_path):
    args = cpu_args(
        slam_layers=[0], bf16=True, model_init_kwargs={"dtype": "bfloat16", "attn_implementation": "eager"}
    )
    trainer = SelectiveFFNTrainer("smollm2-135m-instruct", args=args, train_dataset=arithmetic_dataset)
    assert trainer.model.config._name_or_path == smollm2_path
    assert trainer.model.dtype == torch.bfloat16 and trainer.model.config._attn_implementation == "eager"
    assert trainer.processing_class.chat_template  # SmolLM2's tokenizer, from AutoProcessor
    assert trainer.slam_freeze_report.trainable_names == [
        "model.layers.0.mlp.up_proj.weight",
        "model.layers.0.mlp.down_proj.weight",
    ]
