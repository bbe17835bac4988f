"""The stability measure: per-unit counts, resampling counts instead of re-running the model, the 80% bar."""

import warnings

import pytest
import torch

from slam_trainer.probe import identify_language_layers
from slam_trainer.probe.counting import ActivationCounts, count_activations
from slam_trainer.probe.identify import build_report
from slam_trainer.probe.stability import bootstrap_weights, describe_stability, resampled_probabilities
from slam_trainer.tiny import build_tiny_model
from tests.test_probe import DESIGNED_LAYERS, ground_truth_model, ground_truth_texts, probe_batches


TEXTS = {
    "en": ["one two three", "a much longer sentence than the first", "hi", "the cat sat on the mat", "ok then"],
    "ru": ["раз два три", "гораздо более длинное предложение", "привет", "кот сидел на коврике", "ладно"],
}


@pytest.fixture(scope="module")
def random_model():
    return build_tiny_model("llama")


@pytest.mark.parametrize("architecture", ["llama", "gpt2", "mixtral", "qwen2_moe"])
def test_units_split_the_counts_without_changing_them(tokenizer, architecture):
    """Counting per unit sums back to the single-unit counts, exactly (same batches, only the unit labels differ);
    a unit holding one item counts what that item alone counts (dense blocks, expert banks, shared experts)."""
    model = build_tiny_model(architecture)
    one = count_activations(model, *probe_batches(tokenizer, TEXTS, units=1))
    five = count_activations(model, *probe_batches(tokenizer, TEXTS, units=5))
    assert five.num_units == 5 and one.num_units == 1
    assert torch.equal(five.tokens, one.tokens)
    for a, b in zip(five.active, one.active):
        assert torch.equal(a, b)
    # Unit 1 holds item 1 alone: its token count is that item's, and its counts are those of item 1 run alone.
    assert five.unit_tokens[1].tolist() == [len(TEXTS["en"][1]), len(TEXTS["ru"][1].encode())]
    alone = count_activations(model, *probe_batches(tokenizer, {lang: [t[1]] for lang, t in TEXTS.items()}))
    for per_unit, single in zip(five.unit_active, alone.active):
        assert (per_unit[1].long() - single).abs().max() <= 1  # another batch: float noise at 0 only


def test_a_resample_counts_what_a_second_pass_over_the_resampled_items_counts(random_model, tokenizer):
    """The bootstrap's shortcut is exact: weights (2, 0, 1, 1, 1) give the probabilities of a forward pass over
    items 0, 0, 2, 3, 4 (batch size 1, so that every item is computed alone in both passes)."""
    counts = count_activations(random_model, *probe_batches(tokenizer, TEXTS, batch_size=1, units=5))
    weights = torch.tensor([[2.0, 0.0, 1.0, 1.0, 1.0]])
    (resampled,) = resampled_probabilities(counts, weights)
    items = [0, 0, 2, 3, 4]
    rerun_texts = {lang: [texts[i] for i in items] for lang, texts in TEXTS.items()}
    rerun = count_activations(random_model, *probe_batches(tokenizer, rerun_texts, batch_size=1))
    for mine, theirs in zip(resampled, rerun.probabilities()):
        assert torch.equal(mine, theirs)


def test_bootstrap_weights_draw_every_unit_count_once_per_row():
    weights = bootstrap_weights(7, 20, seed=3)
    assert weights.shape == (20, 7) and (weights.sum(1) == 7).all()
    assert torch.equal(weights, bootstrap_weights(7, 20, seed=3))
    assert not torch.equal(weights, bootstrap_weights(7, 20, seed=4))


def test_designed_layers_are_stable(tokenizer):
    model = ground_truth_model(tokenizer)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a stable choice warns about nothing
        report = identify_language_layers(
            model, tokenizer, ground_truth_texts(), num_layers=2, top_rate=0.05, region="all"
        )
    assert report.stable is True
    assert report.stability["units"] == 12 and report.stability["resamples"] == 100
    assert [report.stability["frequency"][layer] for layer in DESIGNED_LAYERS] == [1.0, 1.0]
    assert report.stability["mean_jaccard"] == 1.0
    assert "Stable: every chosen layer [1, 4]" in report.format_table()


def one_unit_decides() -> ActivationCounts:
    """Two layers of four neurons, two languages, ten units of ten tokens per language.

    Layer 1's neuron 0 fires on every English token of unit 0 and nowhere else (P_en = 10/100 = 0.1); every other
    neuron fires once per language in each of units 5-9 (P = 5/100 = 0.05). With the bar at the median (0.05) only
    layer 1's neuron 0 exceeds it, so layer 1 wins (one LAPE neuron, layer 0 none). A resample without unit 0 loses
    that neuron and the tie goes to layer 0: layer 1 is chosen in about 1 - 0.9**10 = 65% of resamples.
    """
    active = torch.zeros(2, 10, 4, 2, dtype=torch.int32)  # [layer, unit, neuron, language]
    active[:, 5:, :, :] = 1
    active[1, :, 0, :] = 0
    active[1, 0, 0, 0] = 10
    return ActivationCounts(["en", "zh"], list(active), torch.full((10, 2), 10))


def test_a_choice_that_hangs_on_one_item_is_reported_as_not_stable():
    options = {"num_layers": 1, "region": "all", "top_rate": 0.125, "activation_bar_ratio": 0.5}
    with pytest.warns(UserWarning, match=r"NOT STABLE: of the chosen layers \[1\], layer 1 in \d+%"):
        report = build_report(one_unit_decides(), "Designed", **options)
    assert report.chosen_layers == [1] and report.stable is False
    assert report.stability["unstable_layers"] == [1]
    # Exactly the resamples that draw unit 0 choose layer 1 (75 of the 100 seeded draws; 65% expected).
    draws_unit_0 = (bootstrap_weights(10, 100, seed=0)[:, 0] > 0).double().mean().item()
    assert report.stability["frequency"] == [pytest.approx(1 - draws_unit_0), pytest.approx(draws_unit_0)]
    assert 0.5 < draws_unit_0 < 0.8
    assert "NOT STABLE" in report.format_table()


def test_bootstrap_off_keeps_one_unit(tokenizer, random_model):
    report = identify_language_layers(random_model, tokenizer, TEXTS, num_layers=2, resamples=0)
    assert report.stability is None and report.stable is None
    assert "Stability not measured" in report.format_table()
    assert describe_stability(None, [0, 1]).startswith("Stability not measured")
