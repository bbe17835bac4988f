"""Language tags on the real SmolLM2-135M-Instruct (tied): name initialisation, and steering tags it learnt."""

import pytest
import torch

from slam_trainer.l2.decoding import LanguageSwitchLogitsProcessor
from slam_trainer.l2.tags import add_language_tokens, language_tag
from slam_trainer.languages import get_language
from slam_trainer.loading import load_model_and_tokenizer


pytestmark = [pytest.mark.real_model, pytest.mark.slow]

LANGUAGES = ["es", "fr", "zh"]


def load_smollm2(smollm2_path):
    model, tokenizer = load_model_and_tokenizer(smollm2_path, {"dtype": torch.float32}, seed=0)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # SmolLM2 ties them
    return model, tokenizer


@pytest.mark.parametrize("init", ["name", "mean"])
def test_name_init_puts_each_tag_on_its_language_name_in_the_tied_matrix(init, smollm2_path):
    model, tokenizer = load_smollm2(smollm2_path)
    before = model.get_input_embeddings().weight.detach().clone()
    ids = add_language_tokens(tokenizer, model, LANGUAGES, init=init)

    weight = model.get_input_embeddings().weight
    assert model.get_output_embeddings().weight is weight  # still one tensor after the resize
    assert weight.shape[0] == len(tokenizer) == before.shape[0] + len(LANGUAGES)
    assert torch.equal(weight[: before.shape[0]], before)  # the old rows are bitwise unchanged
    for lang, index in ids.items():
        assert index >= before.shape[0]
        name_rows = before[tokenizer.encode(get_language(lang).name, add_special_tokens=False)]
        if init == "name":
            torch.testing.assert_close(weight[index], name_rows.mean(0), rtol=0, atol=0)
        else:  # mean resizing lands elsewhere: the test above would catch name init silently falling back to it
            assert not torch.allclose(weight[index], name_rows.mean(0), atol=1e-3)
    if init == "name":  # the tags start distinct (mean-resized ones all start near the mean row)
        rows = weight[list(ids.values())]
        assert not torch.allclose(rows[0], rows[1], atol=1e-3)


def train_to_write_the_tag(model, tokenizer, lang, steps=8):
    """Full fine-tuning, a few AdamW steps at lr 1e-3, on rows whose completion starts with `lang`'s tag."""
    tag = language_tag(lang)
    rows = [
        (f"Question: what is {a} plus {b}?\nAnswer:\n", f"{tag} {a + b}\n") for a, b in zip(range(1, 9), range(3, 11))
    ]
    prompts = [tokenizer.encode(prompt, add_special_tokens=False) for prompt, _ in rows]
    completions = [tokenizer.encode(completion, add_special_tokens=False) for _, completion in rows]
    length = max(len(p) + len(c) for p, c in zip(prompts, completions))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.full((len(rows), length), pad)
    labels = torch.full((len(rows), length), -100)
    attention = torch.zeros((len(rows), length), dtype=torch.long)
    for row, (prompt, completion) in enumerate(zip(prompts, completions)):
        ids = prompt + completion
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, len(prompt) : len(ids)] = torch.tensor(completion)
        attention[row, : len(ids)] = 1
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def generate(model, tokenizer, prompts, processor=None):
    tokenizer.padding_side = "left"
    inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    kwargs = {"logits_processor": [processor]} if processor is not None else {}
    with torch.no_grad():
        out = model.generate(
            **inputs, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.eos_token_id, **kwargs
        )
    return [tokenizer.decode(row[inputs["input_ids"].shape[1] :]) for row in out]


def test_steering_a_model_whose_tags_were_trained(smollm2_path):
    model, tokenizer = load_smollm2(smollm2_path)
    add_language_tokens(tokenizer, model, LANGUAGES)
    prompts = [f"Question: what is {a} plus {b}?\nAnswer:\n" for a, b in [(12, 30), (7, 21)]]
    es, fr = language_tag("es"), language_tag("fr")
    assert not any(text.startswith(es) for text in generate(model, tokenizer, prompts))  # untrained: no tag

    train_to_write_the_tag(model, tokenizer, "es")
    plain = generate(model, tokenizer, prompts)
    assert all(text.startswith(es) for text in plain), plain  # trained: the tag is written unsteered

    # `fixed` towards French, always boosting: the French tag replaces the Spanish one.
    boost = LanguageSwitchLogitsProcessor(tokenizer, LANGUAGES, alpha=1.0, beta=50.0, policy="fixed", target="fr")
    steered = generate(model, tokenizer, prompts, boost)
    assert boost.row_shifts is not None and bool((boost.row_shifts > 0).all()), boost.row_shifts
    assert all(text.startswith(fr) for text in steered), steered

    # Always suppressing Spanish: its tag no longer opens the answer.
    suppress = LanguageSwitchLogitsProcessor(tokenizer, LANGUAGES, alpha=0.0, beta=50.0, policy="fixed", target="es")
    suppressed = generate(model, tokenizer, prompts, suppress)
    assert bool((suppress.row_shifts > 0).all()), suppress.row_shifts
    assert all(not text.startswith(es) for text in suppressed), suppressed
