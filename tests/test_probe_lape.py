"""LAPE on numbers computed by hand, step by step as the reference `identify.py` (RUCAIBox/Language-Specific-Neurons)
computes them: probabilities, normalisation over languages, entropy, the quantile filter, top-rate selection and the
assignment to languages.

The matrix: 2 layers x 3 neurons, languages en, zh, th with 10, 20 and 10 counted tokens.

    neuron  layer  active counts (en, zh, th)  P = counts / tokens   p = P / sum P        H = -sum p ln p
    n0      0      8, 0, 0                     0.8, 0,   0           1, 0, 0              0
    n1      0      5, 10, 5                    0.5, 0.5, 0.5         1/3, 1/3, 1/3        ln 3 = 1.099
    n2      0      1, 0, 0                     0.1, 0,   0           1, 0, 0              0
    n3      1      0, 12, 6                    0,   0.6, 0.6         0, 1/2, 1/2          ln 2 = 0.693
    n4      1      2, 4, 2                     0.2, 0.2, 0.2         1/3, 1/3, 1/3        ln 3
    n5      1      0, 0, 9                     0,   0,   0.9         0, 0, 1              0

The 18 values of P, sorted: seven 0, 0.1, three 0.2, three 0.5, two 0.6, 0.8, 0.9.
"""

import pytest
import torch

from slam_trainer.probe.counting import ActivationCounts
from slam_trainer.probe.identify import build_report
from slam_trainer.probe.scores import lape


COUNTS = [
    [[8, 0, 0], [5, 10, 5], [1, 0, 0]],  # layer 0: n0, n1, n2
    [[0, 12, 6], [2, 4, 2], [0, 0, 9]],  # layer 1: n3, n4, n5
]
TOKENS = [10, 20, 10]


def hand_counts() -> ActivationCounts:
    active = [torch.tensor([layer], dtype=torch.int32) for layer in COUNTS]  # one bootstrap unit
    return ActivationCounts(["en", "zh", "th"], active, torch.tensor([TOKENS]))


@pytest.mark.parametrize(
    "bar_ratio, top_rate, bar, lape_neurons, lape_per_layer",
    [
        # bar: the round(18 * 0.5) = 9th smallest P = 0.2. P > 0.2 somewhere: n0, n1, n3, n5; n2 (0.1) and n4 (0.2,
        # not above) are filtered out. k = round(6 * 0.5) = 3 lowest entropies: n0 (0), n5 (0), n3 (ln 2); n1 (ln 3)
        # is next. Assigned where P > 0.2: n0 -> en; n5 -> th; n3 -> zh and th.
        (0.5, 0.5, 0.2, [[1, 0, 0], [0, 1, 2]], [1, 2]),
        # k = round(6 / 3) = 2: n0 and n5 (both 0) before n3.
        (0.5, 1 / 3, 0.2, [[1, 0, 0], [0, 0, 1]], [1, 1]),
        # The LAPE code's 0.95: bar = the round(17.1) = 17th smallest P = 0.8; only n5 (0.9) exceeds it, so every
        # other neuron is filtered out (entropy set to +inf). k = 3: n5, then two filtered neurons, which are
        # selected but assigned to no language (0.8 is not above the bar), as in the reference.
        (0.95, 0.5, 0.8, [[0, 0, 0], [0, 0, 1]], [0, 1]),
        # Ties: k = round(6 / 6) = 1 of n0 and n5 (both entropy 0). The reference's `topk` leaves the order of ties
        # unspecified; ours takes the lower layer (then the lower neuron) first: n0.
        (0.5, 1 / 6, 0.2, [[1, 0, 0], [0, 0, 0]], [1, 0]),
    ],
)
def test_lape_on_hand_computed_numbers(bar_ratio, top_rate, bar, lape_neurons, lape_per_layer):
    stats = lape(hand_counts().probabilities(), top_rate=top_rate, activation_bar_ratio=bar_ratio)
    assert stats["bar"] == pytest.approx(bar)
    assert stats["lape_neurons"].tolist() == lape_neurons
    assert stats["lape"].tolist() == lape_per_layer


def test_report_chooses_by_the_hand_computed_layer_score():
    report = build_report(
        hand_counts(), "Hand", num_layers=1, region="all", top_rate=0.5, activation_bar_ratio=0.5, resamples=0
    )
    assert report.scores["lape"] == [1, 2]
    assert report.chosen_layers == [1] and report.ranking == [1, 0]
    assert report.lape_neurons == [[1, 0, 0], [0, 1, 2]]
    assert report.settings["activation_bar"] == pytest.approx(0.2)
    # Activated (P > bar 0.2) per language: layer 0 {n0, n1} for en, {n1} for zh and th; layer 1 {n3} for zh, {n3, n5}
    # for th, none for en. Jaccard with en: layer 0 zh, th 1/2; layer 1: both sets against an empty one, 0.
    assert report.activated == [[2, 1, 1], [0, 1, 2]]
    assert report.overlap == [[1.0, 0.5, 0.5], [1.0, 0.0, 0.0]]
    assert report.scores["overlap"] == [0.5, 1.0]


def test_top_rate_that_selects_nothing_is_refused():
    with pytest.raises(ValueError, match=r"`top_rate`=0.01 selects no neuron out of 6"):
        lape(hand_counts().probabilities(), top_rate=0.01)
