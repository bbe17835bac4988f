"""The result of the language-layer identification: per-layer scores, per-language counts, the chosen layers.

It saves as JSON (reloadable with `LayerReport.from_json`), prints as a Markdown table (for the terminal and the
model card) and draws a heatmap of layers × languages with the chosen layers marked.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field


JSON_NAME = "language_layers.json"
PNG_NAME = "language_layers.png"


@dataclass
class LayerReport:
    """Language statistics of each decoder layer's FFN neurons (formulas in `slam_trainer.probe.scores`).

    Parameters:
        model_class (`str`): class name of the probed model.
        languages (`list[str]`): language codes, the column order of every per-language table.
        pivot (`str`): the language overlaps are measured against.
        score (`str`): the score the layers were chosen by.
        chosen_layers (`list[int]`): the `num_layers` best layers under `score`, ascending.
        ranking (`list[int]`): the candidate layers from most to least language-specific under `score`.
        scores (`dict[str, list[float]]`): every score, one value per layer.
        lape_neurons (`list[list[int]]`): `[layer][language]` LAPE language-specific neurons.
        activated (`list[list[int]]`): `[layer][language]` activated neurons.
        overlap (`list[list[float]]`): `[layer][language]` Jaccard overlap of activated sets with the pivot's.
        neurons (`list[int]`): FFN neurons per layer (MoE: all experts' plus the shared expert's).
        tokens (`dict[str, int]`): counted tokens per language.
        settings (`dict`): the parameters of the run (`top_rate`, `activation_bar_ratio`, the bar, ...).
    """

    model_class: str
    languages: list[str]
    pivot: str
    score: str
    chosen_layers: list[int]
    ranking: list[int]
    scores: dict[str, list[float]]
    lape_neurons: list[list[int]]
    activated: list[list[int]]
    overlap: list[list[float]]
    neurons: list[int]
    tokens: dict[str, int]
    settings: dict = field(default_factory=dict)

    @property
    def num_layers(self) -> int:
        """Decoder layers of the probed model."""
        return len(self.neurons)

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
            return "LAPE language-specific neurons", self.lape_neurons
        if self.score == "activated_msd":
            values = [[count / n for count in row] for row, n in zip(self.activated, self.neurons)]
            return "share of activated neurons", values
        return f"overlap of activated neurons with {self.pivot!r}", self.overlap

    def format_table(self) -> str:
        """Markdown table: one row per layer, every score, the chosen layers starred."""
        header = "| layer | " + " | ".join(self.scores) + " | chosen |"
        lines = [header, "|" + " --- |" * (len(self.scores) + 2)]
        for layer in range(self.num_layers):
            values = " | ".join(f"{self.scores[name][layer]:.4g}" for name in self.scores)
            lines.append(f"| {layer} | {values} | {'*' if layer in self.chosen_layers else ''} |")
        tokens = ", ".join(f"{lang} {count}" for lang, count in self.tokens.items())
        lines.append(f"\nChosen by `{self.score}`: {self.chosen_layers}. Tokens counted: {tokens}.")
        return "\n".join(lines)

    def plot(self, path: str) -> str:
        """Draw the heatmap (layer 0 at the bottom, chosen layers boxed and starred) to a PNG file."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle

        title, values = self.heatmap()
        figure, axes = plt.subplots(figsize=(1.2 + 0.6 * len(self.languages), 1.5 + 0.3 * self.num_layers))
        image = axes.imshow(values, origin="lower", aspect="auto", cmap="viridis")
        axes.set_xticks(range(len(self.languages)), self.languages)
        axes.set_yticks(
            range(self.num_layers),
            [f"{layer}*" if layer in self.chosen_layers else str(layer) for layer in range(self.num_layers)],
        )
        for layer in self.chosen_layers:
            axes.add_patch(Rectangle((-0.5, layer - 0.5), len(self.languages), 1, fill=False, edgecolor="red", lw=2))
        axes.set_xlabel("language")
        axes.set_ylabel("decoder layer (* chosen)")
        axes.set_title(f"{self.model_class}: {title}\nchosen by {self.score}: {self.chosen_layers}", fontsize=9)
        figure.colorbar(image, ax=axes)
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)
        return path

    def save(self, output_dir: str) -> tuple[str, str]:
        """Write `language_layers.json` and `language_layers.png` into `output_dir`; returns both paths."""
        os.makedirs(output_dir, exist_ok=True)
        return self.save_json(os.path.join(output_dir, JSON_NAME)), self.plot(os.path.join(output_dir, PNG_NAME))
