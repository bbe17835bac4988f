import pytest
import torch


trl = pytest.importorskip("trl")

from slam_trainer.config import cpu_training_defaults  # noqa: E402
from slam_trainer.data.synthetic import synthetic_parallel_dataset  # noqa: E402
from slam_trainer.l2.collator import L2DataCollator, L2EpochCallback  # noqa: E402
from slam_trainer.l2.tags import add_language_tokens  # noqa: E402
from slam_trainer.tiny import build_tiny_model, build_tiny_tokenizer  # noqa: E402


@pytest.mark.parametrize("special_tags", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_plain_sft_trainer_trains_with_the_collator(tmp_path, special_tags):
    tokenizer, model = build_tiny_tokenizer(), build_tiny_model()
    languages = ["en", "zh", "ru"]
    if special_tags:
        tag_ids = add_language_tokens(tokenizer, model, languages)
        assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    collator = L2DataCollator(tokenizer, languages=languages, max_length=512)
    train_dataset = collator.prepare(synthetic_parallel_dataset(16, languages=languages, seed=0))
    args = trl.SFTConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        max_steps=2,
        num_train_epochs=2,
        learning_rate=1e-2,
        logging_steps=1,
        **cpu_training_defaults(),
        **L2DataCollator.SFT_CONFIG_SETTINGS,
    )
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = trl.SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[L2EpochCallback(collator)],
    )
    assert trainer.data_collator is collator
    result = trainer.train()
    assert result.global_step == 2 and torch.isfinite(torch.tensor(result.training_loss))
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert any("mlp" in n for n in changed)
    if special_tags:
        rows = model.get_input_embeddings().weight
        embedding_name = next(n for n, p in model.named_parameters() if p is rows)
        assert embedding_name in changed
        assert not torch.equal(before[embedding_name][list(tag_ids.values())], rows.detach()[list(tag_ids.values())])


def test_selective_trainer_sets_up_the_l2_collator_itself(cpu_args):
    """SelectiveFFNTrainer applies the collator's SFTConfig settings and adds the epoch callback on its own."""
    from slam_trainer.trainer import SelectiveFFNTrainer

    tokenizer, model = build_tiny_tokenizer(), build_tiny_model()
    languages = ["en", "zh", "ru"]
    add_language_tokens(tokenizer, model, languages)
    collator = L2DataCollator(tokenizer, languages=languages, max_length=512)
    train_dataset = collator.prepare(synthetic_parallel_dataset(8, languages=languages, seed=1))
    args = cpu_args(max_steps=2, slam_layers=[0], slam_extra_trainable=["embeddings", "lm_head"])
    assert args.remove_unused_columns and not args.dataset_kwargs  # nothing set by hand
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = SelectiveFFNTrainer(
        model=model, args=args, train_dataset=train_dataset, data_collator=collator, processing_class=tokenizer
    )
    assert any(isinstance(cb, L2EpochCallback) for cb in trainer.callback_handler.callbacks)
    trainer.train()
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert changed == set(trainer.slam_freeze_report.trainable_names)
    assert {"model.embed_tokens.weight", "lm_head.weight"} <= changed
