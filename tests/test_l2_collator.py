import warnings
from collections import Counter

import pytest
import torch

from slam_trainer.data.synthetic import synthetic_parallel_dataset
from slam_trainer.l2.collator import L2DataCollator, L2EpochCallback
from slam_trainer.l2.tags import add_language_tokens, language_tag
from slam_trainer.languages import get_language
from slam_trainer.tiny import build_tiny_model, build_tiny_tokenizer


NO_LIMIT = 100_000  # collated outside a trainer: an explicit max_length (the collator refuses to guess one)
LANGS = ["en", "zh", "ja", "th"]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def dataset():
    return synthetic_parallel_dataset(24, languages=LANGS, seed=3)


def _expected_completion(example, draw, separator="\n"):
    """The completion text of the collator's draw, written out independently from the raw example (no EOS)."""
    parts, previous = [], None
    for index, lang in enumerate(draw.step_languages):
        if index:
            parts.append(separator)
        if lang != previous:
            parts.append(language_tag(lang))
        parts.append(example["steps"][lang][index])
        previous = lang
    return "".join(parts)


def _expected_sequence(tokenizer, example, draw):
    """The prompt and completion text of the collator's draw (chat-template prompt, completion with EOS)."""
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": example["question"][draw.question_language]}],
        tokenize=False,
        add_generation_prompt=True,
    )
    return prompt, _expected_completion(example, draw) + tokenizer.eos_token


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_labels_mask_exactly_prompt_and_padding_and_every_step_appears_once(tokenizer, dataset, padding_side):
    collator = L2DataCollator(
        tokenizer, languages=LANGS, padding_side=padding_side, pad_to_multiple_of=16, max_length=NO_LIMIT
    )
    prepared = collator.prepare(dataset)
    features = [prepared[i] for i in range(8)]
    batch = collator(features)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].shape[1] % 16 == 0
    for row, (raw, feature) in enumerate(zip(dataset.select(range(8)), features)):
        draw = collator.draw_languages(feature, len(raw["steps"]["en"]))
        prompt, completion = _expected_sequence(tokenizer, raw, draw)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
        ids, mask, labels = (batch[k][row].tolist() for k in ("input_ids", "attention_mask", "labels"))
        real = [i for i, m in enumerate(mask) if m]
        assert real == list(range(real[0], real[0] + len(real)))  # one contiguous block
        assert (real[0] == 0) == (padding_side == "right") or len(real) == len(ids)
        assert [ids[i] for i in real] == prompt_ids + completion_ids
        assert [labels[i] for i in real] == [-100] * len(prompt_ids) + completion_ids
        assert all(labels[i] == -100 and ids[i] == tokenizer.pad_token_id for i in range(len(ids)) if not mask[i])
        text = tokenizer.decode(completion_ids)
        for index, lang in enumerate(draw.step_languages):
            assert text.count(raw["steps"][lang][index]) == 1
        assert text.count("<|") == 1 + sum(a != b for a, b in zip(draw.step_languages, draw.step_languages[1:]))


def test_mixed_mode_matches_switch_rate_and_language_weights(tokenizer):
    weights = {"en": 0.4, "zh": 0.3, "ja": 0.2, "th": 0.1}
    collator = L2DataCollator(
        tokenizer, languages=LANGS, mode="mixed", switch_probability=0.25, language_weights=weights
    )
    steps = Counter()
    switches = boundaries = 0
    for example_id in range(6000):
        languages = collator.draw_languages({"id": example_id}, 6).step_languages
        steps.update(languages)
        switches += sum(a != b for a, b in zip(languages, languages[1:]))
        boundaries += len(languages) - 1
    assert switches / boundaries == pytest.approx(0.25, abs=0.01)
    total = sum(steps.values())
    for lang, weight in weights.items():
        assert steps[lang] / total == pytest.approx(weight, abs=0.01), lang


def test_full_and_both_modes_and_question_language(tokenizer):
    full = L2DataCollator(tokenizer, languages=LANGS, mode="full", question_language="random", seed=1)
    draws = [full.draw_languages({"id": i}, 5) for i in range(4000)]
    assert all(len(set(d.step_languages)) == 1 for d in draws)
    assert Counter(d.step_languages[0] for d in draws)["th"] / 4000 == pytest.approx(0.25, abs=0.03)
    assert sum(d.question_language != d.step_languages[0] for d in draws) / 4000 == pytest.approx(0.75, abs=0.03)
    both = L2DataCollator(
        tokenizer,
        languages=LANGS,
        mode="both",
        mixed_ratio=0.2,
        question_language="pivot",
        pivot_language="en",
        switch_probability=0.5,
    )
    draws = [both.draw_languages({"id": i}, 5) for i in range(4000)]
    assert sum(d.kind == "mixed" for d in draws) / 4000 == pytest.approx(0.2, abs=0.03)
    assert all(d.question_language == "en" for d in draws)
    assert any(len(set(d.step_languages)) > 1 for d in draws if d.kind == "mixed")
    assert all(len(set(d.step_languages)) == 1 for d in draws if d.kind == "full")


def test_same_seed_and_epoch_reproduce_the_batch_and_epochs_differ(tokenizer, dataset):
    def make(seed):
        return L2DataCollator(tokenizer, languages=LANGS, seed=seed, switch_probability=0.5, max_length=NO_LIMIT)

    prepared = make(0).prepare(dataset)
    features = [prepared[i] for i in range(12)]
    first, again, other_seed = make(0), make(0), make(1)
    assert torch.equal(first(features)["input_ids"], again(features)["input_ids"])
    assert not torch.equal(first(features)["input_ids"], other_seed(features)["input_ids"])
    epoch0 = first(features)["input_ids"]
    L2EpochCallback(first).on_epoch_begin(None, type("State", (), {"epoch": 1.0})(), None)
    assert first.epoch == 1
    epoch1 = first(features)["input_ids"]
    assert epoch0.shape != epoch1.shape or not torch.equal(epoch0, epoch1)
    again.set_epoch(1)
    assert torch.equal(again(features)["input_ids"], epoch1)
    # Order within the batch does not change an example's draw (what DataLoader workers rely on).
    reversed_batch = first(features[::-1])
    assert torch.equal(
        reversed_batch["labels"][0][reversed_batch["attention_mask"][0] == 1], first(features[-1:])["labels"][0]
    )


def test_prepare_in_several_processes_matches_raw_collation(tokenizer, dataset):
    collator = L2DataCollator(tokenizer, languages=LANGS, use_chat_template=False, max_length=NO_LIMIT)
    prepared = collator.prepare(dataset, num_proc=2)
    assert set(prepared.column_names) == {"id", "answer", "steps", "prompt_ids", "step_lengths"}
    raw = [dataset[i] for i in range(6)]
    batch_raw, batch_prepared = collator(raw), collator([prepared[i] for i in range(6)])
    assert torch.equal(batch_raw["input_ids"], batch_prepared["input_ids"])
    assert tokenizer.decode(batch_raw["input_ids"][0]).startswith("Human: ")  # SLAM's plain prompt


def test_max_length_drops_in_prepare_and_warns_at_collation(tokenizer, dataset):
    longest = [
        L2DataCollator(tokenizer, languages=LANGS).longest_length(ex)
        for ex in L2DataCollator(tokenizer, languages=LANGS).prepare(dataset)
    ]
    limit = sorted(longest)[len(longest) // 2]
    collator = L2DataCollator(tokenizer, languages=LANGS, max_length=limit)
    prepared = collator.prepare(dataset)
    assert len(prepared) == sum(n <= limit for n in longest) and 0 < len(prepared) < len(dataset)
    assert collator(list(prepared))["input_ids"].shape[1] <= limit
    short = L2DataCollator(tokenizer, languages=LANGS, max_length=min(longest) // 2 + 60)
    with pytest.warns(UserWarning, match="truncated the completion"):
        batch = short([dataset[i] for i in range(4)])
    assert batch["input_ids"].shape[1] == short.max_length
    with pytest.raises(ValueError, match="prompt alone"):
        L2DataCollator(tokenizer, languages=LANGS, max_length=20)([dataset[0]])


def test_special_token_tags_are_single_ids(dataset):
    tokenizer = build_tiny_tokenizer()
    ids = add_language_tokens(tokenizer, None, LANGS)
    collator = L2DataCollator(tokenizer, languages=LANGS, switch_probability=0.6, max_length=NO_LIMIT)
    batch = collator([dataset[i] for i in range(4)])
    labels = batch["labels"][batch["labels"] != -100].tolist()
    assert set(ids.values()) & set(labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        draw = collator.draw_languages(dataset[0], len(dataset[0]["steps"]["en"]))
    row = batch["labels"][0].tolist()
    assert sum(row.count(ids[lang]) for lang in LANGS) == 1 + sum(
        a != b for a, b in zip(draw.step_languages, draw.step_languages[1:])
    )


def test_bad_arguments_and_examples_fail_clearly(tokenizer, dataset):
    with pytest.raises(ValueError, match="`mode`"):
        L2DataCollator(tokenizer, languages=LANGS, mode="half")
    with pytest.raises(ValueError, match="`language_weights` names sw"):
        L2DataCollator(tokenizer, languages=LANGS, language_weights={"sw": 1.0})
    with pytest.raises(ValueError, match="`switch_probability`"):
        L2DataCollator(
            tokenizer, languages=["en", "zh"], language_weights={"en": 0.9, "zh": 0.1}, switch_probability=0.5
        )
    with pytest.raises(ValueError, match="shipped languages"):
        L2DataCollator(tokenizer, languages=["en", "xx"])
    with pytest.raises(ValueError, match="no steps in language 'sw'"):
        L2DataCollator(tokenizer, languages=["en", "sw"])([dataset[0]])
    with pytest.raises(ValueError, match="parallel schema"):
        L2DataCollator(tokenizer, languages=LANGS)([{"input_ids": [1, 2]}])


@pytest.mark.real_model
@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["smollm2_path", "gemma3_path"])  # byte-level BPE; SentencePiece-style
def test_the_completion_is_the_tokenization_of_the_joined_text(fixture, request, dataset):
    # Tokenized piece by piece, `'.' + ' ' + 'Then'` gives `'.', '▁', 'Then'` where the joined text gives
    # `'.', '▁Then'` (both tokenizers; `'\n\n'` splits differently in SmolLM2): the model would train on sequences
    # the tokenizer never produces. Checked with the tags as plain text, then as added special tokens.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(request.getfixturevalue(fixture))  # loaded once: Gemma's takes ~10 s
    raw = [dataset[i] for i in range(12)]
    tag_ids = {}
    for special_tags in (False, True):
        if special_tags:
            tag_ids = add_language_tokens(tokenizer, None, LANGS)
        for separator in (" ", "\n", "\n\n"):
            collator = L2DataCollator(
                tokenizer,
                languages=LANGS,
                step_separator=separator,
                switch_probability=0.6,
                use_chat_template=False,
                max_length=NO_LIMIT,
            )
            batch = collator(raw)
            for row, example in enumerate(raw):
                draw = collator.draw_languages(example, len(example["steps"]["en"]))
                completion = _expected_completion(example, draw, separator)
                joint = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
                prompt = tokenizer(
                    collator.prompt_template.format(question=example["question"][draw.question_language])
                )
                mask = batch["attention_mask"][row] == 1
                ids, labels = batch["input_ids"][row][mask].tolist(), batch["labels"][row][mask].tolist()
                assert ids == prompt["input_ids"] + joint, (
                    separator,
                    special_tags,
                )  # the prompt alone, then the joint text
                assert labels == [-100] * len(prompt["input_ids"]) + joint
                if special_tags:  # one tag id where each run of one language starts, and nowhere else
                    starts = [
                        i == 0 or draw.step_languages[i - 1] != lang for i, lang in enumerate(draw.step_languages)
                    ]
                    expected_tags = [tag_ids[lang] for lang, start in zip(draw.step_languages, starts) if start]
                    assert [i for i in labels if i in tag_ids.values()] == expected_tags


def test_the_trainer_s_max_length_bounds_the_collator(tokenizer, dataset, cpu_args):
    # TRL truncates only what it prepares; the collator's sequences must respect the trainer's `max_length` too.
    from slam_trainer.tiny import build_tiny_model
    from slam_trainer.trainer import SelectiveFFNTrainer

    def trainer(collator, max_length):
        return SelectiveFFNTrainer(
            build_tiny_model("llama"),
            args=cpu_args(max_length=max_length, per_device_train_batch_size=8),
            train_dataset=collator.prepare(dataset),
            data_collator=collator,
            processing_class=tokenizer,
        )

    wide = L2DataCollator(tokenizer, languages=LANGS, max_length=NO_LIMIT)
    assert wide(list(wide.prepare(dataset)))["input_ids"].shape[1] > 520
    unbounded = L2DataCollator(tokenizer, languages=LANGS)
    with pytest.raises(ValueError, match="no `max_length`: call `collator.configure_sft_args"):
        unbounded(list(unbounded.prepare(dataset)))  # the drop-in form, unconfigured: refused, not 777 wide
    adopted = trainer(unbounded, max_length=520)
    assert unbounded.max_length == 520
    widths = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the truncation warning: the dataset was prepared without a limit
        widths = {batch["input_ids"].shape[1] for batch in adopted.get_train_dataloader()}
    assert max(widths) == 520
    with pytest.raises(ValueError, match=r"L2DataCollator has `max_length`=700 but the trainer's `max_length`=520"):
        trainer(L2DataCollator(tokenizer, languages=LANGS, max_length=700), max_length=520)
    shorter = L2DataCollator(tokenizer, languages=LANGS, max_length=500)
    trainer(shorter, max_length=520)
    assert shorter.max_length == 500  # a stricter collator limit stays


def test_new_tag_rows_start_at_their_language_name_and_only_new_rows_are_set():
    tokenizer, model = build_tiny_tokenizer(), build_tiny_model()
    ids = add_language_tokens(tokenizer, model, LANGS)
    inputs, outputs = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    for lang, index in ids.items():
        name = tokenizer.encode(get_language(lang).name, add_special_tokens=False)
        assert torch.equal(inputs[index], inputs[name].mean(0))
        assert torch.equal(outputs[index], outputs[name].mean(0))
    # Adding the same tags again leaves their (by now trained) rows alone.
    with torch.no_grad():
        inputs[ids[LANGS[0]]] += 1.0
    before = inputs.detach().clone()
    assert add_language_tokens(tokenizer, model, LANGS) == ids
    assert torch.equal(model.get_input_embeddings().weight, before)


def test_mean_init_keeps_transformers_resizing_and_a_bad_init_is_refused():
    tokenizer, model = build_tiny_tokenizer(), build_tiny_model()
    ids = add_language_tokens(tokenizer, model, LANGS, init="mean")
    inputs = model.get_input_embeddings().weight
    name = tokenizer.encode(get_language(LANGS[0]).name, add_special_tokens=False)
    assert not torch.equal(inputs[ids[LANGS[0]]], inputs[name].mean(0))
    with pytest.raises(ValueError, match="`init` must be one of name, mean"):
        add_language_tokens(build_tiny_tokenizer(), None, LANGS, init="zeros")
