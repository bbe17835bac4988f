"""How certain the layer choice is: bootstrap resampling of the parallel items, on counts, without the model.

The probe keeps its activation counts per bootstrap unit (a round-robin share of the parallel items; one item per
unit when there are few items). A resample draws as many units as there are, with replacement; its activation
probabilities are the weighted sums of the units' counts over the weighted sums of their tokens, exactly what a
second forward pass over the resampled items would count, at the cost of one small matrix product. Each resample is
scored and chosen like the full data. Reported:

- `frequency[layer]`: the share of resamples that choose the layer;
- `mean_jaccard`: the mean Jaccard agreement |S_r ∩ S| / |S_r ∪ S| of each resample's choice S_r with the full
  data's S;
- `stable`: every chosen layer is picked in at least `STABLE_FREQUENCY` (80%) of the resamples (our bar, the one
  issue #14 asks for); otherwise the report and a warning name the layers that fall short.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from slam_trainer.probe.counting import ActivationCounts
from slam_trainer.probe.settings import STABLE_FREQUENCY


# Largest resampled count for which a float32 matrix product of integer counts is still exact.
_FLOAT32_EXACT = 2**24


def resampled_probabilities(counts: ActivationCounts, weights: torch.Tensor) -> list[list[torch.Tensor]]:
    """Activation probabilities of resampled data: for each row of `weights` (`[resamples, units]`, how often each
    unit is drawn), per layer `[neurons, languages]` float64, as `ActivationCounts.probabilities` gives them."""
    weights = weights.double()
    tokens = weights @ counts.unit_tokens.double()  # [resamples, languages]
    exact32 = float(counts.unit_tokens.sum()) * float(weights.max()) < _FLOAT32_EXACT
    per_layer = []
    for layer_counts in counts.unit_active:
        units, neurons, languages = layer_counts.shape
        flat = layer_counts.reshape(units, -1)
        # Integer counts times integer weights: exact in float32 below 2**24, else done in float64.
        dtype = torch.float32 if exact32 else torch.float64
        active = (weights.to(dtype) @ flat.to(dtype)).double().reshape(-1, neurons, languages)
        per_layer.append(active / tokens[:, None, :])
    return [[layer[r] for layer in per_layer] for r in range(weights.shape[0])]


def bootstrap_weights(units: int, resamples: int, seed: int) -> torch.Tensor:
    """`[resamples, units]` draw counts: each row draws `units` units uniformly with replacement."""
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(units, (resamples, units), generator=generator)
    return torch.zeros(resamples, units).scatter_add_(1, picks, torch.ones(resamples, units))


def bootstrap_stability(
    counts: ActivationCounts,
    choose: Callable[[list[torch.Tensor]], list[int]],
    chosen: list[int],
    *,
    resamples: int,
    seed: int,
    chunk: int = 16,
) -> dict | None:
    """Resample the units, re-choose with `choose(probabilities)`, and compare with the full data's `chosen`.

    Returns `None` when there is a single unit (nothing to resample); otherwise a dict with `resamples`, `units`,
    `seed`, `frequency` (per layer), `mean_jaccard`, `threshold`, `unstable_layers` (chosen layers below the
    threshold) and `stable`.
    """
    if resamples < 1 or counts.num_units < 2:
        return None
    num_layers = len(counts.unit_active)
    picked = torch.zeros(num_layers, dtype=torch.float64)
    jaccards = []
    weights = bootstrap_weights(counts.num_units, resamples, seed)
    reference = set(chosen)
    for start in range(0, resamples, chunk):
        for probs in resampled_probabilities(counts, weights[start : start + chunk]):
            layers = set(choose(probs))
            picked[list(layers)] += 1
            jaccards.append(len(layers & reference) / len(layers | reference))
    frequency = (picked / resamples).tolist()
    unstable = [layer for layer in chosen if frequency[layer] < STABLE_FREQUENCY]
    return {
        "resamples": resamples,
        "units": counts.num_units,
        "seed": seed,
        "frequency": frequency,
        "mean_jaccard": sum(jaccards) / len(jaccards),
        "threshold": STABLE_FREQUENCY,
        "unstable_layers": unstable,
        "stable": not unstable,
    }


def describe_stability(stability: dict | None, chosen: list[int]) -> str:
    """One sentence for the table, the log and the warning."""
    if stability is None:
        return "Stability not measured (bootstrap off, or a single parallel item)."
    share = f"{stability['resamples']} bootstrap resamples of {stability['units']} item groups"
    agreement = f"mean Jaccard agreement with the full-data choice {stability['mean_jaccard']:.2f}"
    if stability["stable"]:
        return (
            f"Stable: every chosen layer {chosen} is picked in >= {stability['threshold']:.0%} of {share} "
            f"({agreement})."
        )
    short = ", ".join(
        f"layer {layer} in {stability['frequency'][layer]:.0%}" for layer in stability["unstable_layers"]
    )
    return (
        f"NOT STABLE: of the chosen layers {chosen}, {short} of {share} (each should be >= "
        f"{stability['threshold']:.0%}; {agreement}). More parallel items may settle it (more rows in the probe "
        "data, or all of them if `max_items` cut it short); otherwise treat these layers as one choice among similar "
        "ones."
    )
