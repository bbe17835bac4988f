"""L² tags inside SLAM's budget: only the tag rows of the embedding and lm_head train, and the delta carries them."""

import json
import re
import shutil

import pytest
import torch

from slam_trainer.config import cpu_training_defaults
from slam_trainer.data.synthetic import synthetic_parallel_dataset
from slam_trainer.delta import DeltaMetadata, load_ffn_delta, save_ffn_delta
from slam_trainer.freezing import freeze_except_ffn
from slam_trainer.l2.collator import L2DataCollator
from slam_trainer.l2.tags import add_language_tokens
from slam_trainer.tiny import build_tiny_model, build_tiny_tokenizer


LANGS = ["en", "zh", "ru"]
TIES = [pytest.param(True, id="tied"), pytest.param(False, id="untied")]


def tagged(tied: bool, seed: int = 0):
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model("llama", tie_word_embeddings=tied, seed=seed)
    ids = add_language_tokens(tokenizer, model, LANGS)
    return tokenizer, model, sorted(ids.values())


def base(tied: bool, seed: int = 0, **overrides):
    """The untagged base a tagged model came from, and its tokenizer."""
    return build_tiny_tokenizer(), build_tiny_model("llama", tie_word_embeddings=tied, seed=seed, **overrides)


def vocabulary_names(model) -> list[str]:
    names = {id(p): n for n, p in model.named_parameters()}
    matrices = [model.get_input_embeddings().weight, model.get_output_embeddings().weight]
    return list(dict.fromkeys(names[id(m)] for m in matrices))


def l2_trainer(model, tokenizer, args):
    from slam_trainer.trainer import SelectiveFFNTrainer

    collator = L2DataCollator(tokenizer, languages=LANGS, max_length=512)
    dataset = collator.prepare(synthetic_parallel_dataset(8, languages=LANGS, seed=0))
    return SelectiveFFNTrainer(
        model=model, args=args, train_dataset=dataset, data_collator=collator, processing_class=tokenizer
    )


def train_steps(model, ids, steps=3):
    """A few AdamW steps (with weight decay) on sequences that read and write the tags."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    batch = torch.tensor([[5, ids[0], 40, 41, ids[1], 42, ids[2], 43]])
    for _ in range(steps):
        model(input_ids=batch, labels=batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()


@pytest.mark.parametrize("tied", TIES)
def test_slam_trains_only_the_tag_rows_and_counts_them(tied, cpu_args, capsys):
    tokenizer, model, ids = tagged(tied)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    trainer = l2_trainer(model, tokenizer, cpu_args(slam_layers=[0], weight_decay=0.1, max_steps=3))
    report = trainer.slam_freeze_report
    matrices = vocabulary_names(model)
    assert len(matrices) == (1 if tied else 2)
    assert report.tag_rows == {name: ids for name in matrices}
    ffn = sum(before[f"model.layers.0.mlp.{p}_proj.weight"].numel() for p in ("up", "down"))
    hidden = model.config.hidden_size
    assert report.trainable_params == ffn + len(ids) * hidden * len(matrices)
    assert report.total_params == sum(t.numel() for n, t in before.items() if n != "lm_head.weight" or not tied)
    print(report)
    assert f"{len(ids)} rows ({ids[0]}..{ids[-1]}) of {matrices[0]}" in capsys.readouterr().out
    trainer.train()
    optimizer_elements = sum(p.numel() for group in trainer.optimizer.param_groups for p in group["params"])
    assert optimizer_elements == report.trainable_params  # the optimizer never held a whole matrix

    after = model.state_dict()
    assert after.keys() == before.keys()  # the small tag-row parameters are not part of the model's weights
    old = [row for row in range(len(tokenizer)) if row not in ids]
    trained = {f"model.layers.0.mlp.{p}_proj.weight" for p in ("up", "down")}
    for name, tensor in after.items():
        if name in matrices or (tied and name == "lm_head.weight"):
            assert torch.equal(tensor[old], before[name][old]), f"{name}: an old row moved"
            assert not torch.equal(tensor[ids], before[name][ids]), f"{name}: the tag rows did not train"
        elif name in trained:
            assert not torch.equal(tensor, before[name]), name
        else:
            assert torch.equal(tensor, before[name]), name


@pytest.mark.parametrize("tied", TIES)
@pytest.mark.parametrize("whole", [False, True], ids=["tag-rows", "whole-embedding"])
def test_the_delta_rebuilds_the_trained_model_and_its_tokenizer(tied, whole, tmp_path):
    tokenizer, model, ids = tagged(tied)
    freeze_except_ffn(model, [1], extra=["embeddings"] if whole else ())
    train_steps(model, ids)
    metadata = save_ffn_delta(model, tmp_path / "delta")
    assert metadata.added_tokens == {tokenizer.convert_ids_to_tokens(i): i for i in ids}
    assert metadata.vocab_size == len(tokenizer) and metadata.format_version == 3
    assert DeltaMetadata.read(str(tmp_path / "delta")).added_tokens == metadata.added_tokens

    base_tokenizer, merged = base(tied)
    load_ffn_delta(merged, tmp_path / "delta", tokenizer=base_tokenizer)
    trained = model.state_dict()
    assert merged.state_dict().keys() == trained.keys()
    for name, tensor in merged.state_dict().items():
        assert torch.equal(tensor, trained[name]), name
    assert base_tokenizer.get_vocab() == tokenizer.get_vocab()
    assert base_tokenizer("<|zh|>", add_special_tokens=False)["input_ids"] == [ids[1]]
    model.eval(), merged.eval()
    with torch.no_grad():
        batch = torch.tensor([[5, ids[0], 40, ids[2]]])
        torch.testing.assert_close(merged(input_ids=batch).logits, model(input_ids=batch).logits)


def test_a_delta_without_tags_stays_format_2(tmp_path):
    model = build_tiny_model()
    freeze_except_ffn(model, [0])
    assert save_ffn_delta(model, tmp_path).format_version == 2
    assert '"added_tokens"' not in (tmp_path / "slam_delta.json").read_text()
    assert DeltaMetadata.read(str(tmp_path)).added_tokens is None


@pytest.fixture(scope="module")
def tag_delta(tmp_path_factory):
    tokenizer, model, ids = tagged(tied=False)
    freeze_except_ffn(model, [1])
    train_steps(model, ids, steps=1)
    path = tmp_path_factory.mktemp("tag-delta")
    save_ffn_delta(model, path)
    return path


def shifted_tokenizer():
    tokenizer = build_tiny_tokenizer()
    tokenizer.add_tokens(["<|other|>"], special_tokens=True)
    return tokenizer


REFUSALS = [
    ("no-tokenizer", lambda: (None, base(False)[1]), "pass the base's tokenizer (`tokenizer=`)"),
    ("tokenizer-with-other-tokens", lambda: (shifted_tokenizer(), base(False)[1]), "would give it 261"),
    ("base-with-more-rows", lambda: base(False, vocab_size=300), "trained with a vocabulary of 263 rows"),
    ("other-weights", lambda: base(False, seed=1), "has other weights than the base"),
]


@pytest.mark.parametrize("make, expected", [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_a_tag_delta_refuses_what_does_not_fit_before_touching_the_base(tag_delta, make, expected):
    tokenizer, model = make()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    vocabulary = dict(tokenizer.get_vocab()) if tokenizer is not None else None
    with pytest.raises(ValueError, match=re.escape(expected)):
        load_ffn_delta(model, tag_delta, tokenizer=tokenizer)
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    assert tokenizer is None or tokenizer.get_vocab() == vocabulary


def test_resuming_continues_from_the_saved_tag_rows(cpu_args, tmp_path):
    tokenizer, model, _ = tagged(tied=True)
    straight = l2_trainer(model, tokenizer, cpu_args(slam_layers=[0], max_steps=4, output_dir=tmp_path / "a"))
    straight.train()

    settings = dict(slam_layers=[0], max_steps=4, save_strategy="steps", save_steps=2, output_dir=tmp_path / "b")
    tokenizer, model, _ = tagged(tied=True)
    l2_trainer(model, tokenizer, cpu_args(**settings)).train()
    tokenizer, resumed, _ = tagged(tied=True)
    l2_trainer(resumed, tokenizer, cpu_args(**settings)).train(resume_from_checkpoint=str(tmp_path / "b/checkpoint-2"))
    for name, tensor in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], tensor, msg=name)


def test_the_callback_stops_a_trainer_whose_loss_skips_the_output_tag_rows(tmp_path):
    """TRL's SFTTrainer fuses the LM head (it reads `lm_head.weight` directly): the output tag rows would not learn."""
    import trl

    from slam_trainer.callback import SelectiveFFNCallback

    tokenizer, model, _ = tagged(tied=False)
    collator = L2DataCollator(tokenizer, languages=LANGS, max_length=512)
    args = trl.SFTConfig(str(tmp_path), max_steps=1, **cpu_training_defaults(), **collator.SFT_CONFIG_SETTINGS)
    trainer = trl.SFTTrainer(
        model=model,
        args=args,
        train_dataset=collator.prepare(synthetic_parallel_dataset(4, languages=LANGS, seed=0)),
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[SelectiveFFNCallback(layers=[0])],
    )
    with pytest.raises(ValueError, match="took no part in this training step"):
        trainer.train()


def set_field(**values):
    def damage(path):
        metadata = json.loads((path / "slam_delta.json").read_text())
        (path / "slam_delta.json").write_text(json.dumps({**metadata, **values}))

    return damage


TAG_DAMAGES = [
    ("tag-id-beyond-vocabulary", set_field(vocab_size=261), "do not describe a vocabulary"),
    ("tags-without-ids", set_field(added_tokens={}), "do not describe a vocabulary"),
    ("tags-in-a-v2-delta", set_field(format_version=2), "unexpected or missing field(s) added_tokens, vocab_size"),
]


@pytest.mark.parametrize("damage, expected", [d[1:] for d in TAG_DAMAGES], ids=[d[0] for d in TAG_DAMAGES])
def test_damaged_tag_metadata_is_refused(tag_delta, damage, expected, tmp_path):
    shutil.copytree(tag_delta, tmp_path / "delta")
    damage(tmp_path / "delta")
    with pytest.raises(ValueError, match=re.escape(expected)):
        DeltaMetadata.read(str(tmp_path / "delta"))


def test_a_delta_with_a_grown_vocabulary_but_no_tags_says_so(tmp_path):
    """A delta that trained a resized embedding whole without recording the tokens (as before tags were recorded)
    is refused with what happened, not with "not the base"."""
    model = build_tiny_model()
    model.resize_token_embeddings(263)
    freeze_except_ffn(model, [0], extra=["embeddings"])
    save_ffn_delta(model, tmp_path)
    with pytest.raises(ValueError, match="trained with tokens added to the vocabulary, which it does not record"):
        load_ffn_delta(build_tiny_model(), tmp_path)


def test_slam_merge_and_the_eval_loader_rebuild_a_tag_delta(tmp_path):
    """`slam merge` and `slam eval --delta`'s loader put the tags into the base's tokenizer and the rows into the
    resized base: both give the trained model, tensor for tensor."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from slam_trainer.cli.main import main
    from slam_trainer.evaluation.loading import load_model, load_tokenizer, read_model_config

    base_tokenizer, base_model = base(tied=False)
    base_model.save_pretrained(tmp_path / "base")
    base_tokenizer.save_pretrained(tmp_path / "base")
    tokenizer, model, ids = tagged(tied=False)
    freeze_except_ffn(model, [1])
    train_steps(model, ids)
    save_ffn_delta(model, tmp_path / "delta")
    trained = model.state_dict()

    assert main(["merge", str(tmp_path / "base"), str(tmp_path / "delta"), str(tmp_path / "merged")]) == 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").state_dict()
    assert merged.keys() == trained.keys() and all(torch.equal(merged[n], trained[n]) for n in trained)
    assert AutoTokenizer.from_pretrained(tmp_path / "merged").get_vocab() == tokenizer.get_vocab()

    eval_tokenizer = load_tokenizer(str(tmp_path / "base"), delta=str(tmp_path / "delta"))
    assert eval_tokenizer.convert_tokens_to_ids(["<|en|>", "<|zh|>", "<|ru|>"]) == ids
    assert read_model_config(str(tmp_path / "base"), delta=str(tmp_path / "delta")).vocab_size == len(tokenizer)
    loaded = load_model(str(tmp_path / "base"), delta=str(tmp_path / "delta"), tokenizer=eval_tokenizer, device="cpu")
    assert all(torch.equal(tensor, trained[name]) for name, tensor in loaded.state_dict().items())


def test_merging_a_tag_delta_onto_a_base_without_a_tokenizer_is_refused(tag_delta, tmp_path, capsys):
    from slam_trainer.cli.main import main

    base(tied=False)[1].save_pretrained(tmp_path / "base")
    assert main(["merge", str(tmp_path / "base"), str(tag_delta), str(tmp_path / "merged")]) == 2
    assert "has no tokenizer to add them to" in capsys.readouterr().err


def test_the_precision_policy_trains_the_tag_rows_in_float32(cpu_args):
    """A bf16-loaded model under `bf16=True`: the tag rows train in float32 as the FFN tensors do, the matrix stays
    bf16 and its old rows bitwise."""
    tokenizer, model = build_tiny_tokenizer(), build_tiny_model("llama", tie_word_embeddings=True).to(torch.bfloat16)
    ids = sorted(add_language_tokens(tokenizer, model, LANGS).values())
    before = model.get_input_embeddings().weight.detach().clone()
    trainer = l2_trainer(model, tokenizer, cpu_args(slam_layers=[0], bf16=True, max_steps=2))
    embedding = model.get_input_embeddings()
    assert embedding.slam_tag_rows.dtype == torch.float32 and embedding.weight.dtype == torch.bfloat16
    trainer.train()
    after = model.get_input_embeddings().weight
    old = [row for row in range(len(tokenizer)) if row not in ids]
    assert after.dtype == torch.bfloat16 and torch.equal(after[old], before[old])
    assert not torch.equal(after[ids], before[ids])
