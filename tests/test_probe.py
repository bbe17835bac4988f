"""Language-layer identification: ground truth, padding, determinism, bad input, every architecture."""

import json
import warnings

import pytest
import torch

from slam_trainer.probe import LayerReport, identify_language_layers
from slam_trainer.probe.counting import count_activations
from slam_trainer.probe.parallel import load_parallel_texts
from slam_trainer.probe.settings import SCORES
from slam_trainer.tiny import TINY_ARCHITECTURES, build_tiny_model, build_tiny_tokenizer
from tests.ground_truth import (
    DESIGNED_LAYERS,
    LETTERS,
    SHARED,
    SPECIFIC,
    ground_truth_model,
    ground_truth_texts,
    probe_batches,
)


@pytest.fixture(scope="module")
def truth(tokenizer):
    return ground_truth_model(tokenizer), ground_truth_texts()


@pytest.mark.parametrize("score", SCORES)
def test_ground_truth_layers_rank_first(truth, tokenizer, score):
    model, texts = truth
    report = identify_language_layers(model, tokenizer, texts, num_layers=2, score=score, top_rate=0.05, region="all")
    assert report.chosen_layers == DESIGNED_LAYERS
    assert sorted(report.ranking[:2]) == DESIGNED_LAYERS
    others = [layer for layer in range(6) if layer not in DESIGNED_LAYERS]
    assert min(report.scores[score][layer] for layer in DESIGNED_LAYERS) > max(
        report.scores[score][layer] for layer in others
    )


def test_ground_truth_counts(truth, tokenizer):
    """Every designed neuron is assigned to its own language only; activated sets and overlaps are exact."""
    model, texts = truth
    report = identify_language_layers(model, tokenizer, texts, num_layers=2, top_rate=0.05, region="all")
    total = sum(SPECIFIC.values()) * len(DESIGNED_LAYERS)
    assert sum(report.scores["lape"]) == round(6 * 128 * 0.05) <= total  # only designed neurons are selected
    assert report.settings["activation_bar"] == 0.0
    expected_tokens = {lang: sum(len(t) for t in texts[lang]) for lang in LETTERS}
    assert report.tokens == expected_tokens
    for layer in DESIGNED_LAYERS:
        assert report.activated[layer] == [SHARED + SPECIFIC[lang] for lang in LETTERS]
        union = {lang: SHARED + SPECIFIC["en"] + SPECIFIC[lang] for lang in list(LETTERS)[1:]}
        assert report.overlap[layer] == [1.0] + [SHARED / union[lang] for lang in union]
    for layer in (0, 2, 3, 5):
        assert report.activated[layer] == [SHARED] * 4  # padding-only neurons never count
        assert report.overlap[layer] == [1.0] * 4


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_never_counts(truth, side):
    model, texts = truth[0], ground_truth_texts(items=4)
    tokenizer = build_tiny_tokenizer()
    tokenizer.padding_side = side
    one = count_activations(model, *probe_batches(tokenizer, texts, batch_size=1))
    eight = count_activations(model, *probe_batches(tokenizer, texts, batch_size=8))
    assert torch.equal(one.tokens, eight.tokens)
    for a, b in zip(one.active, eight.active):
        assert torch.equal(a, b)


def test_padding_side_on_a_random_model():
    """A real (random) model: the same counts up to float noise, whatever the batch size and padding side."""
    model = build_tiny_model("llama")
    texts = {"en": ["one two three", "a much longer sentence than the first", "hi"], "ru": ["раз два", "кот", "да"]}
    results = []
    for side, batch_size in [("right", 1), ("right", 3), ("left", 3)]:
        tokenizer = build_tiny_tokenizer()
        tokenizer.padding_side = side
        results.append(count_activations(model, *probe_batches(tokenizer, texts, batch_size=batch_size)))
    for other in results[1:]:
        assert torch.equal(other.tokens, results[0].tokens)
        for a, b in zip(other.active, results[0].active):
            assert (a - b).abs().max() <= 1  # a token's activation may sit at 0 within float noise


def test_deterministic_report(truth, tokenizer, tmp_path):
    model = build_tiny_model("qwen2")
    texts = ground_truth_texts(items=6, seed=1)
    first = identify_language_layers(model, tokenizer, texts, num_layers=2)
    second = identify_language_layers(model, tokenizer, texts, num_layers=2)
    assert first.stability is not None  # the bootstrap is seeded: the same frequencies twice
    assert first.to_dict() == second.to_dict()
    json_path, png_path = first.save(tmp_path)
    assert LayerReport.from_json(json_path) == first
    with open(png_path, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    assert json.loads(open(json_path).read())["chosen_layers"] == first.chosen_layers


def test_lower_half_restricts_the_choice(truth, tokenizer):
    model, texts = truth
    report = identify_language_layers(model, tokenizer, texts, num_layers=2, top_rate=0.05, region="lower_half")
    assert report.ranking == [1, 0, 2]  # layer 4 is out of reach; ties go to the lower layer
    assert report.chosen_layers == [0, 1]
    assert len(report.scores["lape"]) == 6  # still reported for every layer


@pytest.mark.parametrize("architecture", TINY_ARCHITECTURES)
def test_every_architecture(architecture, tokenizer):
    model = build_tiny_model(architecture)
    model.train()
    report = identify_language_layers(
        model, tokenizer, {"en": ["the cat sat"], "zh": ["猫坐着"]}, num_layers=2, region="all"
    )
    assert model.training  # mode restored
    assert len(report.neurons) == 4 and len(report.chosen_layers) == 2
    assert report.tokens == {"en": len("the cat sat"), "zh": len("猫坐着".encode())}
    for layer in range(4):
        assert all(0 <= count <= report.neurons[layer] for count in report.activated[layer])


def test_moe_counts_only_routed_tokens(tokenizer):
    """Every token routed to every expert: each expert's counts are its own gate's; top-2 routing counts less."""
    texts = {"en": ["routing test sentence"], "sw": ["sentensi ya majaribio"]}
    batches, languages = probe_batches(tokenizer, texts)
    dense = build_tiny_model("mixtral", num_experts_per_tok=4)
    counts = count_activations(dense, batches, languages)
    routed = build_tiny_model("mixtral")  # same weights (same seed), top-2 routing
    top2 = count_activations(routed, batches, languages)
    inputs = {}
    experts = dense.model.layers[0].mlp.experts
    experts.register_forward_pre_hook(lambda module, args: inputs.update(h=args[0]))
    dense(input_ids=batches[0].input_ids)
    width = experts.gate_up_proj.shape[1] // 2
    for expert in range(4):
        expected = (experts.act_fn(inputs["h"] @ experts.gate_up_proj[expert, :width].T) > 0).sum(0)
        assert torch.equal(counts.active[0][expert * width : (expert + 1) * width, 0], expected)
    assert (top2.active[0] <= counts.active[0]).all() and top2.active[0].sum() < counts.active[0].sum()


def test_bad_input(truth, tokenizer):
    model, texts = truth
    with pytest.raises(ValueError, match="at least two languages"):
        identify_language_layers(model, tokenizer, {"en": texts["en"]}, num_layers=2)
    with pytest.raises(ValueError, match=r"`num_layers`=7 is more than the model's 6 decoder layers"):
        identify_language_layers(model, tokenizer, texts, num_layers=7, region="all")
    with pytest.raises(ValueError, match="lower half"):
        identify_language_layers(model, tokenizer, texts, num_layers=4)
    with pytest.raises(ValueError, match="`score`"):
        identify_language_layers(model, tokenizer, texts, num_layers=2, score="entropy")
    with pytest.raises(ValueError, match="different lengths"):
        identify_language_layers(model, tokenizer, {"en": ["a", "b"], "zh": ["g"]}, num_layers=2)
    with pytest.raises(ValueError, match="'zh' is empty"):
        identify_language_layers(model, tokenizer, {"en": ["abc"], "zh": [" "]}, num_layers=2)
    with pytest.raises(ValueError, match="`pivot`"):
        identify_language_layers(model, tokenizer, texts, num_layers=2, pivot="fr")
    with pytest.raises(ValueError, match="'zh' has no token to count"):
        identify_language_layers(model, SpecialOnlyFor("zh", tokenizer), texts, num_layers=2)


class SpecialOnlyFor:
    """A tokenizer that marks every token of one language's texts as special (e.g. one that only adds BOS)."""

    def __init__(self, lang, tokenizer):
        self.lang_texts, self.tokenizer = ground_truth_texts()[lang], tokenizer

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)

    def __call__(self, texts, **kwargs):
        encoded = self.tokenizer(texts, **kwargs)
        if texts == self.lang_texts:
            encoded["special_tokens_mask"] = [[1] * len(row) for row in encoded["input_ids"]]
        return encoded


def test_non_parallel_ids_are_dropped_with_a_warning():
    rows = [{"id": i, "lang": lang, "question": f"{lang} {i}"} for i in range(4) for lang in ("en", "zh")]
    rows.append({"id": 9, "lang": "en", "question": "only in English"})
    with pytest.warns(UserWarning, match="not fully parallel"):
        parallel = load_parallel_texts(rows)
    assert parallel.ids == [0, 1, 2, 3] and parallel.texts["zh"][2] == "zh 2"
    with warnings.catch_warnings(), pytest.raises(ValueError, match="no item present in every language"):
        warnings.simplefilter("ignore")
        load_parallel_texts([{"id": 1, "lang": "en", "text": "a"}, {"id": 2, "lang": "zh", "text": "b"}])
    with pytest.raises(ValueError, match="need `id`, `lang`"):
        load_parallel_texts([{"lang": "en", "text": "a"}])


def test_bfloat16_gives_the_fp32_counts(truth, tokenizer):
    """The ground-truth activations sit far from 0, so a bf16 copy must count exactly as the fp32 model."""
    model, texts = truth
    fp32 = identify_language_layers(model, tokenizer, texts, num_layers=2, top_rate=0.05, region="all")
    bf16 = identify_language_layers(
        ground_truth_model(tokenizer).to(torch.bfloat16), tokenizer, texts, num_layers=2, top_rate=0.05, region="all"
    )
    assert bf16.to_dict() == fp32.to_dict()


def test_over_long_items_are_dropped_from_every_language(truth, tokenizer):
    """An item too long in one language leaves every language (never cut: a cut text is no longer parallel)."""
    model = truth[0]
    texts = {"en": ["abc", "abcdef", "fed"], "zh": ["ghi", "ghijklghijklghijkl", "lkj"]}
    with pytest.warns(UserWarning, match=r"1 of 3 probe items are longer than `max_length`=8 .*: zh 1\)"):
        report = identify_language_layers(model, tokenizer, texts, num_layers=2, max_length=8, resamples=0)
    assert report.tokens == {"en": 6, "zh": 6}  # item 1 gone from English too
    assert report.settings["items"] == 2 and report.settings["items_over_max_length"] == {"zh": 1}
    with pytest.raises(ValueError, match=r"Every probe item is longer than `max_length`=2 .*raise `max_length`"):
        identify_language_layers(model, tokenizer, texts, num_layers=2, max_length=2)
