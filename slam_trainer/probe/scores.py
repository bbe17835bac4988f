"""Per-layer language statistics of FFN neurons, and the choice of layers.

Input: P[layer][neuron, lang], the probability that the neuron is active (> 0) on a token of the language. With
L layers, K languages and the pivot language `v` (English by default):

- **LAPE** (Tang et al. 2024, the RUCAIBox/Language-Specific-Neurons code): normalise each neuron's P over the
  languages, p = P / Σ_lang P, entropy H = −Σ p log p. The bar b is the `activation_bar_ratio` quantile of all P
  (every layer, neuron, language); a neuron whose P exceeds b for no language is excluded. The `top_rate` share of
  all neurons with the lowest H (ties: lower layer, lower neuron first) are language-specific, each assigned to
  every language whose P exceeds b. `lape[layer]` counts the layer's language-specific neurons;
  `lape_neurons[layer][lang]` counts those assigned to `lang`. Checked step by step against the reference
  `identify.py` (docs/layer_identification.md lists the deviations: tie order, one parameter for the code's equal
  `filter_rate` and `activation_bar_ratio`, and the per-layer count, which is ours: LAPE selects neurons, not
  layers).
- **Activated neurons**: `A[layer][lang]` = {neurons with P > t}, with t = `active_threshold`, by default the LAPE
  bar b (our choice: the SLAM paper's threshold is unpublished; b makes "activated" mean "among the 5% most
  frequently active neurons of the model"). `activated[layer][lang]` = |A|.
- **Overlap with the pivot**: `overlap[layer][lang]` = |A_lang ∩ A_v| / |A_lang ∪ A_v| (Jaccard; 1 when both are
  empty). Our choice of normalisation: the paper's summary names only "overlap".
- **MSD** (mean squared deviation across languages, as the SLAM paper's summary describes):
  `activated_msd[layer]` = mean_lang (f_lang − mean f)² with f = activated / neurons in the layer, and
  `overlap_msd[layer]` = mean_lang (o_lang − mean o)² over the overlaps, the pivot's own 1 included.

Layer scores (higher = more language-specific) are `lape`, `overlap` (= 1 − mean overlap over the non-pivot
languages), `activated_msd` and `overlap_msd`.
"""

from __future__ import annotations

import torch

from slam_trainer.errors import ConfigError
from slam_trainer.probe.settings import SCORES


def _quantile(values: torch.Tensor, ratio: float) -> float:
    """The LAPE code's quantile: the `round(n * ratio)`-th smallest value (1-based, at least the first)."""
    k = min(max(1, round(values.numel() * ratio)), values.numel())
    return values.flatten().kthvalue(k).values.item()


def lape(probs: list[torch.Tensor], *, top_rate: float = 0.01, activation_bar_ratio: float = 0.95) -> dict:
    """LAPE language-specific neurons per layer; returns `bar`, `lape` `[layers]`, `lape_neurons` `[layers, langs]`."""
    sizes = [p.shape[0] for p in probs]
    all_probs = torch.cat(probs)  # [neurons of all layers, langs]
    layer_of = torch.repeat_interleave(torch.arange(len(probs)), torch.tensor(sizes))
    normed = all_probs / all_probs.sum(-1, keepdim=True)
    normed = torch.nan_to_num(normed, nan=0.0)
    entropy = -(normed * torch.where(normed > 0, normed.log(), torch.zeros_like(normed))).sum(-1)
    bar = _quantile(all_probs, activation_bar_ratio)
    entropy[(all_probs > bar).sum(-1) == 0] = torch.inf
    k = round(all_probs.shape[0] * top_rate)
    if k < 1:
        raise ConfigError(
            f"`top_rate`={top_rate} selects no neuron out of {all_probs.shape[0]}; raise it to at least "
            f"{1 / all_probs.shape[0]:.2g}."
        )
    selected = torch.sort(entropy, stable=True).indices[:k]
    assigned = all_probs[selected] > bar  # [k, langs]; excluded neurons (H = inf) are assigned to nothing
    lape_neurons = torch.zeros(len(probs), all_probs.shape[1], dtype=torch.int64)
    lape_neurons.index_add_(0, layer_of[selected], assigned.long())
    lape_count = torch.zeros(len(probs), dtype=torch.int64)
    lape_count.index_add_(0, layer_of[selected], assigned.any(-1).long())
    return {"bar": bar, "lape": lape_count, "lape_neurons": lape_neurons}


def overlap_statistics(probs: list[torch.Tensor], pivot: int, threshold: float) -> dict:
    """Activated-neuron counts, Jaccard overlap with the pivot language, and their MSDs across languages."""
    activated, overlap, activated_msd, overlap_msd = [], [], [], []
    for layer_probs in probs:
        active = layer_probs > threshold  # [neurons, langs]
        counts = active.sum(0)
        inter = (active & active[:, pivot : pivot + 1]).sum(0).double()
        union = (active | active[:, pivot : pivot + 1]).sum(0).double()
        jaccard = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
        fractions = counts.double() / layer_probs.shape[0]
        activated.append(counts)
        overlap.append(jaccard)
        activated_msd.append(((fractions - fractions.mean()) ** 2).mean())
        overlap_msd.append(((jaccard - jaccard.mean()) ** 2).mean())
    overlap = torch.stack(overlap)
    others = [lang for lang in range(overlap.shape[1]) if lang != pivot]
    return {
        "activated": torch.stack(activated),
        "overlap_by_language": overlap,
        "overlap": 1.0 - overlap[:, others].mean(-1),
        "activated_msd": torch.stack(activated_msd),
        "overlap_msd": torch.stack(overlap_msd),
    }


def all_scores(
    probs: list[torch.Tensor],
    pivot: int,
    *,
    top_rate: float,
    activation_bar_ratio: float,
    active_threshold: float | None = None,
) -> dict:
    """Every score and per-language table, as `LayerReport` holds them (tensors)."""
    lape_stats = lape(probs, top_rate=top_rate, activation_bar_ratio=activation_bar_ratio)
    threshold = lape_stats["bar"] if active_threshold is None else active_threshold
    return {**lape_stats, **overlap_statistics(probs, pivot, threshold), "active_threshold": threshold}


def layer_score(
    probs: list[torch.Tensor],
    score: str,
    pivot: int,
    *,
    top_rate: float,
    activation_bar_ratio: float,
    active_threshold: float | None = None,
) -> torch.Tensor:
    """One score per layer, computing only what `score` needs (the bootstrap calls it once per resample)."""
    if score not in SCORES:
        raise ConfigError(f"`score` is {score!r}; choose one of {', '.join(SCORES)}.")
    if score == "lape":
        return lape(probs, top_rate=top_rate, activation_bar_ratio=activation_bar_ratio)["lape"]
    if active_threshold is None:
        active_threshold = _quantile(torch.cat(probs), activation_bar_ratio)
    return overlap_statistics(probs, pivot, active_threshold)[score]


def rank_layers(scores: list[float], candidates: list[int]) -> list[int]:
    """Candidate layers from the highest score down; ties go to the lower layer."""
    return sorted(candidates, key=lambda layer: (-scores[layer], layer))


def choose_layers(scores: list[float], candidates: list[int], num_layers: int) -> list[int]:
    """The `num_layers` best candidates, ascending."""
    return sorted(rank_layers(scores, candidates)[:num_layers])
