"""The report's figure and table on a 30-layer model: the score that chose is drawn, chosen layers are marked."""

import matplotlib.pyplot as plt
import pytest
import torch

from slam_trainer.probe.counting import ActivationCounts
from slam_trainer.probe.identify import build_report
from slam_trainer.probe.report import LayerReport


@pytest.fixture(scope="module")
def report() -> LayerReport:
    generator = torch.Generator().manual_seed(0)
    active = list(torch.randint(0, 11, (30, 10, 64, 4), generator=generator, dtype=torch.int32))
    counts = ActivationCounts(["en", "zh", "th", "sw"], active, torch.full((10, 4), 10))
    with pytest.warns(UserWarning, match="NOT STABLE"):  # random counts: no layer is reliably chosen
        return build_report(counts, "Random30", num_layers=6, top_rate=0.05)


def bar_widths(axes) -> list[float]:
    return [patch.get_width() for patch in axes.patches if hasattr(patch, "get_width") and patch.get_height() == 0.8]


def test_figure_shows_the_score_that_chose_and_the_bootstrap(report):
    figure = report.figure()
    try:
        heat, score, picks = figure.axes[:3]
        assert bar_widths(score) == pytest.approx(report.scores["lape"])  # the choosing score, not a per-language sum
        assert bar_widths(picks) == pytest.approx(report.stability["frequency"])
        labels = {int(label.get_text().split()[0]): label for label in heat.get_yticklabels()}
        assert sorted(labels) == list(range(30))  # every layer labelled
        for layer, label in labels.items():
            assert label.get_text().endswith("*") == (layer in report.chosen_layers)
            assert (label.get_color() == "tab:red") == (layer in report.chosen_layers)
        assert "NOT STABLE" in figure._suptitle.get_text()
        assert report.chosen_layers == sorted(report.ranking[:6]) and max(report.chosen_layers) < 15
    finally:
        plt.close(figure)


def test_table_has_the_bootstrap_column_and_verdict(report, tmp_path):
    table = report.format_table()
    assert "| layer | lape | overlap | activated_msd | overlap_msd | picked | chosen |" in table
    assert "Chosen by `lape` among the lower half:" in table and "NOT STABLE" in table
    assert str(report) == table  # what the model card prints (`hub.py` writes `str(report)`)
    json_path, png_path = report.save(tmp_path)
    assert LayerReport.from_json(json_path) == report
    assert open(png_path, "rb").read(4) == b"\x89PNG"
