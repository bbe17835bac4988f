"""The result of the language-layer identification: per-layer scores, per-language counts, the chosen layers and
how stable the choice is.

It saves as JSON (reloadable with `LayerReport.from_json`), prints as a Markdown table (for the terminal and the
model card) and draws a figure with one row per layer: the per-language table of the choosing score, the score
itself (the number the layers were ranked by), and how often each layer was chosen under bootstrap resampling.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

from slam_trainer.probe.settings import region_layers
from slam_trainer.probe.stability import describe_stability


JSON_NAME = "language_layers.json"
PNG_NAME = "language_layers.png"

SCORE_LABELS = {
    "lape": "LAPE language-specific neurons",
    "overlap": "1 - mean overlap with the pivot",
    "activated_msd": "MSD of the activated share",
    "overlap_msd": "MSD of the overlap",
}


@dataclass
class LayerReport:
    """Language statistics of each decoder layer's FFN neurons (formulas in `slam_trainer.probe.scores`).

    Parameters:
        model_class (`str`): class name of the probed model.
        languages (`list[str]`): language codes, the column order of every per-language table.
        pivot (`str`): the language overlaps are measured against.
        score (`str`): the score the layers were chosen by.
        region (`str`): where they could be chosen (`"lower_half"` or `"all"`).
        chosen_layers (`list[int]`): the `num_layers` best layers of the region under `score`, ascending.
        ranking (`list[int]`): the region's layers from most to least language-specific under `score`.
        scores (`dict[str, list[float]]`): every score, one value per layer.
        lape_neurons (`list[list[int]]`): `[layer][language]` LAPE language-specific neurons.
        activated (`list[list[int]]`): `[layer][language]` activated neurons.
        overlap (`list[list[float]]`): `[layer][language]` Jaccard overlap of activated sets with the pivot's.
        neurons (`list[int]`): FFN neurons per layer (MoE: all experts' plus the shared expert's).
        tokens (`dict[str, int]`): counted tokens per language.
        stability (`dict`, *optional*): the bootstrap result (`slam_trainer.probe.stability`): per-layer
            `frequency`, `mean_jaccard`, `unstable_layers`, `stable`; `None` when not measured.
        settings (`dict`): the parameters of the run (`top_rate`, `activation_bar_ratio`, the bar, items, ...).
    """

    model_class: str
    languages: list[str]
    pivot: str
    score: str
    region: str
    chosen_layers: list[int]
    ranking: list[int]
    scores: dict[str, list[float]]
    lape_neurons: list[list[int]]
    activated: list[list[int]]
    overlap: list[list[float]]
    neurons: list[int]
    tokens: dict[str, int]
    stability: dict | None = None
    settings: dict = field(default_factory=dict)

    @property
    def num_layers(self) -> int:
        """Decoder layers of the probed model."""
        return len(self.neurons)

    @property
    def stable(self) -> bool | None:
        """Whether every chosen layer was picked in >= 80% of the bootstrap resamples (`None`: not measured)."""
        return None if self.stability is None else self.stability["stable"]

    def __str__(self) -> str:
        """The Markdown table (what the model card and the terminal show), not the dataclass fields."""
        return self.format_table()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LayerReport:
        return cls(**data)

    def save_json(self, path: str) -> str:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.to_dict(), handle, indent=2, ensure_ascii=False)
        return path

    @classmethod
    def from_json(cls, path: str) -> LayerReport:
        with open(path, encoding="utf-8") as handle:
            return cls.from_dict(json.load(handle))

    def heatmap(self) -> tuple[str, list[list[float]]]:
        """The layers × languages table that belongs to `score`: its title and values."""
        if self.score == "lape":
            return "LAPE neurons assigned to each language", self.lape_neurons
        if self.score == "activated_msd":
            values = [[count / n for count in row] for row, n in zip(self.activated, self.neurons)]
            return "share of activated neurons", values
        return f"overlap of activated neurons with {self.pivot!r}", self.overlap

    def describe_choice(self) -> str:
        """The choice and its stability in two sentences."""
        region = "the lower half" if self.region == "lower_half" else "all layers"
        return (
            f"Chosen by `{self.score}` among {region}: {self.chosen_layers}. "
            f"{describe_stability(self.stability, self.chosen_layers)}"
        )

    def format_table(self) -> str:
        """Markdown table: one row per layer, every score, the bootstrap frequency, the chosen layers starred."""
        picked = self.stability["frequency"] if self.stability else None
        header = "| layer | " + " | ".join(self.scores) + (" | picked" if picked else "") + " | chosen |"
        lines = [header, "|" + " --- |" * (len(self.scores) + 2 + bool(picked))]
        for layer in range(self.num_layers):
            values = " | ".join(f"{self.scores[name][layer]:.4g}" for name in self.scores)
            frequency = f" | {picked[layer]:.0%}" if picked else ""
            lines.append(f"| {layer} | {values}{frequency} | {'*' if layer in self.chosen_layers else ''} |")
        tokens = ", ".join(f"{lang} {count}" for lang, count in self.tokens.items())
        lines.append(f"\n{self.describe_choice()}")
        lines.append(f"Items: {self.settings.get('items', '?')}. Tokens counted: {tokens}.")
        return "\n".join(lines)

    def figure(self):
        """The matplotlib figure: per-language table, choosing score, bootstrap frequency; one row per layer, layer 0
        at the bottom, the chosen layers starred, red and boxed. Close it with `matplotlib.pyplot.close`."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle

        title, values = self.heatmap()
        layers = range(self.num_layers)
        chosen = set(self.chosen_layers)
        candidates = set(region_layers(self.num_layers, self.region))
        colors = ["tab:red" if i in chosen else "tab:blue" if i in candidates else "0.75" for i in layers]
        figure = plt.figure(
            figsize=(3.5 + 0.45 * len(self.languages) + 5.0, 2.2 + 0.27 * self.num_layers), layout="constrained"
        )
        # A second, thin row holds the colour bar, so that the three panels keep the same height and their rows align.
        grid = figure.add_gridspec(
            2, 3, width_ratios=[max(2.0, 0.45 * len(self.languages)), 2.6, 1.8], height_ratios=[1, 0.012]
        )
        heat = figure.add_subplot(grid[0, 0])
        bars = figure.add_subplot(grid[0, 1], sharey=heat)
        picks = figure.add_subplot(grid[0, 2], sharey=heat)
        bars.tick_params(labelleft=False)
        picks.tick_params(labelleft=False)
        image = heat.imshow(values, origin="lower", aspect="auto", cmap="viridis")
        heat.set_xticks(range(len(self.languages)), self.languages)
        heat.set_yticks(list(layers), [f"{i} *" if i in chosen else str(i) for i in layers], fontsize=8)
        for label, layer in zip(heat.get_yticklabels(), layers):
            if layer in chosen:
                label.set_color("tab:red")
                label.set_fontweight("bold")
        for layer in chosen:
            heat.add_patch(Rectangle((-0.5, layer - 0.5), len(self.languages), 1, fill=False, edgecolor="red", lw=1.5))
        heat.set_ylim(-0.5, self.num_layers - 0.5)
        heat.set_xlabel("language")
        heat.set_ylabel("decoder layer (* chosen)")
        heat.set_title(title, fontsize=9)
        colorbar = figure.colorbar(image, cax=figure.add_subplot(grid[1, 0]), orientation="horizontal", label=title)
        colorbar.ax.tick_params(labelsize=7)

        score = self.scores[self.score]
        bars.barh(list(layers), score, color=colors, height=0.8)
        # Scaled to the eligible layers, so that the ranking that chose stays readable when layers outside the
        # region score far higher (LAPE's top layers); those bars run off the edge with their value written.
        limit = max(max(score[i] for i in candidates), 1e-12) * 1.3
        for layer in layers:
            value = score[layer]
            inside = value > 0.8 * limit  # written inside the bar's end, so that it stays within the panel
            label = f"{value:.3g} >" if value > limit else f"{value:.3g} " if inside else f" {value:.3g}"
            bars.text(min(value, limit), layer, label, va="center", ha="right" if inside else "left", fontsize=6.5)
        bars.set_xlim(0, limit)
        bars.set_title(f"choosing score: {SCORE_LABELS[self.score]}", fontsize=9)
        bars.set_xlabel("red: chosen, blue: eligible, grey: outside region (> : off scale)", fontsize=7)
        bars.tick_params(labelsize=7)

        if self.stability is not None:
            frequency = self.stability["frequency"]
            picks.barh(list(layers), frequency, color=colors, height=0.8)
            picks.axvline(self.stability["threshold"], color="black", linestyle="--", lw=1)
            picks.set_xlim(0, 1)
            picks.set_title(f"picked in {self.stability['resamples']} resamples", fontsize=9)
            picks.set_xlabel(f"share (dashed: {self.stability['threshold']:.0%} bar)", fontsize=7)
        else:
            picks.text(0.5, self.num_layers / 2, "stability\nnot measured", ha="center", va="center", fontsize=8)
            picks.set_xlim(0, 1)
            picks.set_title("bootstrap", fontsize=9)
        picks.tick_params(labelsize=7)

        verdict = {None: "stability not measured", True: "stable", False: "NOT STABLE"}[self.stable]
        region = "lower half" if self.region == "lower_half" else "all layers"
        figure.suptitle(
            f"{self.model_class}: layers {self.chosen_layers} chosen by {self.score} among {region} ({verdict})",
            fontsize=10,
        )
        return figure

    def plot(self, path: str) -> str:
        """Draw `figure()` to a PNG file."""
        import matplotlib.pyplot as plt

        figure = self.figure()
        figure.savefig(path, dpi=110)
        plt.close(figure)
        return path

    def save(self, output_dir: str) -> tuple[str, str]:
        """Write `language_layers.json` and `language_layers.png` into `output_dir`; returns both paths."""
        os.makedirs(output_dir, exist_ok=True)
        return self.save_json(os.path.join(output_dir, JSON_NAME)), self.plot(os.path.join(output_dir, PNG_NAME))
