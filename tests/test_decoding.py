"""LanguageSwitchLogitsProcessor: hand-set logits, then `generate` with a tiny model in every decoding mode."""

import pytest
import torch
from transformers import LogitsProcessorList

from slam_trainer.l2.decoding import LanguageSwitchLogitsProcessor
from slam_trainer.l2.tags import add_language_tokens, language_tag
from slam_trainer.tiny import build_tiny_model, build_tiny_tokenizer


LANGS = ["en", "zh", "de"]


def add_language_tags(tokenizer, model=None, languages=LANGS):
    """Make each language tag one token (and give the model embeddings for them), as users do."""
    add_language_tokens(tokenizer, model, languages)
    return tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return add_language_tags(build_tiny_tokenizer())


def tag_id(tokenizer, lang):
    return tokenizer.convert_tokens_to_ids(language_tag(lang))


def ids_ending_with(tokenizer, text):
    return torch.tensor([tokenizer.encode(text, add_special_tokens=False)])


def logits_with_tag_ranked(tokenizer, rank: int, lang="zh"):
    """Logits where `lang`'s tag is the `rank`-th most likely token (0 = top)."""
    scores = -torch.arange(len(tokenizer), dtype=torch.float) / 10  # token i has rank i
    scores = scores[torch.randperm(len(tokenizer), generator=torch.Generator().manual_seed(0))]
    order = scores.argsort(descending=True)
    tag = tag_id(tokenizer, lang)
    swap = torch.tensor([tag, order[rank].item()])
    scores[swap] = scores[swap.flip(0)]
    return scores[None]


def probability(scores, token):
    return scores.softmax(-1)[0, token].item()


def test_boost_raises_and_suppress_lowers_the_target_tag_with_beta(tokenizer):
    ids = ids_ending_with(tokenizer, "step one\n")
    scores = logits_with_tag_ranked(tokenizer, rank=2)
    target = tag_id(tokenizer, "zh")
    base = probability(scores, target)
    boosted, suppressed = [], []
    for beta in (0.5, 1.0, 2.0, 4.0):
        for alpha, out in ((1.0, boosted), (0.0, suppressed)):
            processor = LanguageSwitchLogitsProcessor(
                tokenizer, LANGS, alpha=alpha, beta=beta, top_k=5, policy="fixed", target="zh"
            )
            new = processor(ids, scores)
            assert new is not scores and torch.equal(scores, logits_with_tag_ranked(tokenizer, rank=2))
            out.append(probability(new, target))
    assert base < boosted[0] < boosted[1] < boosted[2] < boosted[3]
    assert base > suppressed[0] > suppressed[1] > suppressed[2] > suppressed[3]


@pytest.mark.parametrize(
    ("text", "rank", "boundary"),
    [
        ("step one\n", 7, "newline"),  # tag outside the top 5
        ("step one", 1, "newline"),  # in the top 5, but not at a step boundary
    ],
)
def test_nothing_happens_without_a_tag_in_the_top_k_at_a_boundary(tokenizer, text, rank, boundary):
    scores = logits_with_tag_ranked(tokenizer, rank=rank)
    processor = LanguageSwitchLogitsProcessor(
        tokenizer, LANGS, alpha=1.0, beta=5.0, top_k=5, policy="fixed", target="zh", boundary=boundary
    )
    assert torch.equal(processor(ids_ending_with(tokenizer, text), scores), scores)


def test_boundary_any_acts_mid_line(tokenizer):
    processor = LanguageSwitchLogitsProcessor(
        tokenizer, LANGS, alpha=1.0, beta=5.0, top_k=5, policy="fixed", target="zh", boundary="any"
    )
    scores = logits_with_tag_ranked(tokenizer, rank=1)
    assert not torch.equal(processor(ids_ending_with(tokenizer, "step one"), scores), scores)


def test_rows_of_a_batch_are_independent(tokenizer):
    # Row states: current language en / zh / none, at a boundary or not, tag in the top-k or not.
    texts = ["<|en|>one\n", "<|zh|>two\n", "three\n", "<|en|>four"]
    encoded = [tokenizer.encode(text, add_special_tokens=False) for text in texts]
    width = max(map(len, encoded))
    ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(row)) + row for row in encoded])
    scores = torch.cat([logits_with_tag_ranked(tokenizer, rank) for rank in (0, 3, 9, 0)])

    def processor():
        return LanguageSwitchLogitsProcessor(tokenizer, ["en", "zh"], alpha=1.0, beta=3.0, top_k=5, policy="switch")

    steering = processor()
    batched = steering(ids, scores)
    steering(ids, scores)
    assert steering.row_shifts.tolist() == [2, 2, 0, 0]  # per row, the calls that shifted a tag
    for row in range(len(texts)):
        alone = processor()(ids[row : row + 1, -len(encoded[row]) :], scores[row : row + 1])
        assert torch.equal(batched[row], alone[0])
    changed = (batched - scores).nonzero().tolist()
    # Row 0 writes English: switch boosts zh; row 1 writes Chinese: boosts en; rows 2 and 3 are left alone.
    assert changed == [[0, tag_id(tokenizer, "zh")], [1, tag_id(tokenizer, "en")]]


def test_seeded_draws_repeat_and_weighted_policy_follows_weights(tokenizer):
    ids = ids_ending_with(tokenizer, "x\n").expand(4000, -1)
    scores = logits_with_tag_ranked(tokenizer, rank=0).expand(4000, -1)

    def run(seed):
        processor = LanguageSwitchLogitsProcessor(
            tokenizer, LANGS, alpha=0.25, beta=1.0, top_k=3, policy="weighted", weights=[3.0, 1.0, 0.0], seed=seed
        )
        return processor(ids, scores) - scores

    delta = run(seed=1)
    assert torch.equal(delta, run(seed=1)) and not torch.equal(delta, run(seed=2))
    shifted = delta.sum(-1)
    assert (shifted > 0).float().mean() == pytest.approx(0.25, abs=0.03)  # boosted with probability alpha
    en, zh, de = (delta[:, tag_id(tokenizer, lang)].ne(0).float().mean() for lang in LANGS)
    assert en == pytest.approx(0.75, abs=0.03) and zh == pytest.approx(0.25, abs=0.03) and de == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 1.5}, "`alpha`"),
        ({"beta": -1.0}, "`beta`"),
        ({"top_k": 0}, "`top_k`"),
        ({"policy": "random"}, "`policy`"),
        ({"policy": "fixed"}, "`target`"),
        ({"policy": "fixed", "target": "fr"}, "`target`"),
        ({"policy": "weighted", "weights": [1.0]}, "`weights`"),
        ({"boundary": "sentence"}, "`boundary`"),
    ],
)
def test_bad_arguments_are_clear_errors(tokenizer, kwargs, message):
    with pytest.raises(ValueError, match=message):
        LanguageSwitchLogitsProcessor(tokenizer, LANGS, **kwargs)


def test_multi_token_tag_is_an_error_that_says_how_to_fix_it():
    with pytest.raises(ValueError, match="add_language_tokens"):
        LanguageSwitchLogitsProcessor(build_tiny_tokenizer(), LANGS)


@pytest.mark.parametrize(
    "mode",
    [
        {"do_sample": False},
        {"do_sample": True, "top_k": 0, "temperature": 1.0},
        {"do_sample": False, "num_beams": 3},
    ],
)
def test_generate_with_a_tiny_model_in_every_decoding_mode(mode):
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model()
    add_language_tags(tokenizer, model)
    tokenizer.padding_side = "left"
    inputs = tokenizer(["Question: 2+2?\n", "<|zh|>问题\n"], return_tensors="pt", padding=True)
    prompt_length = inputs["input_ids"].shape[1]
    processor = LanguageSwitchLogitsProcessor(
        tokenizer, LANGS, alpha=1.0, beta=1e4, top_k=len(tokenizer), policy="fixed", target="de", boundary="any"
    )
    output = model.generate(
        **inputs,
        max_new_tokens=4,
        logits_processor=LogitsProcessorList([processor]),
        pad_token_id=tokenizer.pad_token_id,
        **mode,
    )
    # An overwhelming boost at every position makes every generated token the target tag, in every mode.
    assert output.shape == (2, prompt_length + 4)
    assert (output[:, prompt_length:] == tag_id(tokenizer, "de")).all()
    plain = model.generate(**inputs, max_new_tokens=4, pad_token_id=tokenizer.pad_token_id, **mode)
    assert not (plain[:, prompt_length:] == tag_id(tokenizer, "de")).all()
