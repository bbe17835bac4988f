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
    ("num_echo", "echo", 1),
    ("ended_share", "ended%", 100),
)
# Average rows: the scores key and the row label ("{n}" is the number of languages averaged).
_AVERAGES = (("average", "avg ({n})"), ("average_without_te", "avg ({n}, no te)"))


def _languages(results: list[dict]) -> list[str]:
    present = {lang for result in results for lang in result["scores"]["languages"]}
    return [code for code in LANGUAGES if code in present]


def _reference_rules(result: dict) -> list[str]:
    return sorted(result["scores"]["average"].get("reference_accuracy", {}))


def format_table(results: list[dict]) -> str:
    """Rows per language and the averages (all languages; without Telugu when it is there, as SLAM and MathOctopus
    report MGSM), a column group per run: accuracy, accuracy by the reference rule(s), mean tokens, tokens per correct
    answer, language share, correct answers copied from the question, share of outputs that ended before the limit."""

    def cell(value, scale: float) -> str:
        if value is None:
            return "-"
        return str(value) if isinstance(value, int) and scale == 1 else f"{value * scale:.1f}"

    header = ["lang"]
    for result in results:
        header += [f"{result['run']}:{label}" for _, label, _ in _COLUMNS[:1]]
        header += [f"{result['run']}:{rule}%" for rule in _reference_rules(result)]
        header += [f"{result['run']}:{label}" for _, label, _ in _COLUMNS[1:]]
    rows = [(lang, lambda scores, lang=lang: scores["languages"].get(lang)) for lang in _languages(results)]
    for key, label in _AVERAGES:
        sizes = {len(result["scores"][key]["languages"]) for result in results if key in result["scores"]}
        if sizes:
            rows.append((label.format(n="/".join(map(str, sorted(sizes)))), lambda scores, key=key: scores.get(key)))
    lines = [header]
    for label, entry_of in rows:
        line = [label]
        for result in results:
            entry = entry_of(result["scores"]) or {}
            line.append(cell(entry.get("accuracy"), 100))
            line += [cell(entry.get("reference_accuracy", {}).get(rule), 100) for rule in _reference_rules(result)]
            line += [cell(entry.get(key), scale) for key, _, scale in _COLUMNS[1:]]
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
        # From 0 (matplotlib centres an all-zero axis on 0, showing negative accuracies); accuracy up to 100%.
        axis.set_ylim(0, 100 if key == "accuracy" else max(axis.get_ylim()[1], 1))
    axes[0].legend()
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
