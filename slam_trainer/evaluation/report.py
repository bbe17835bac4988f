"""Showing results: a terminal table and a PNG, with several runs side by side.

Each result is the dict written to a run's `results.json` (`{"run": name, "settings": ..., "scores": ...}`).
"""

from __future__ import annotations

from pathlib import Path

from slam_trainer.languages import LANGUAGES


_COLUMNS = (
    ("accuracy", "acc%", 100),
    ("mean_tokens", "tokens", 1),
    ("tokens_per_correct", "tok/ok", 1),
    ("language_consistency", "lang%", 100),
)


def _languages(results: list[dict]) -> list[str]:
    present = {lang for result in results for lang in result["scores"]["languages"]}
    return [code for code in LANGUAGES if code in present]


def format_table(results: list[dict]) -> str:
    """Rows per language, a column group per run: accuracy, mean tokens, tokens per correct answer, language share."""

    def cell(entry: dict | None, key: str, scale: float) -> str:
        value = None if entry is None else entry.get(key)
        return "-" if value is None else f"{value * scale:.1f}"

    header = ["lang"] + [f"{result['run']}:{label}" for result in results for _, label, _ in _COLUMNS]
    lines = [header]
    for lang in [*_languages(results), "average"]:
        line = [lang]
        for result in results:
            scores = result["scores"]
            entry = scores["average"] if lang == "average" else scores["languages"].get(lang)
            line += [cell(entry, key, scale) for key, _, scale in _COLUMNS]
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(text.rjust(width) for text, width in zip(line, widths)) for line in lines)


def plot_results(results: list[dict], path: str | Path) -> Path:
    """A PNG with accuracy (left) and mean generated tokens (right) per language, one bar per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    languages = _languages(results)
    width = 0.8 / len(results)
    figure, axes = plt.subplots(1, 2, figsize=(max(8, 1.2 * len(languages) * 2), 4))
    for (key, title, scale), axis in zip((("accuracy", "accuracy (%)", 100), ("mean_tokens", "mean tokens", 1)), axes):
        for offset, result in enumerate(results):
            values = [(result["scores"]["languages"].get(lang, {}).get(key) or 0) * scale for lang in languages]
            axis.bar([i + offset * width for i in range(len(languages))], values, width, label=result["run"])
        axis.set_xticks([i + 0.4 - width / 2 for i in range(len(languages))], languages)
        axis.set_title(title)
    axes[0].legend()
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
