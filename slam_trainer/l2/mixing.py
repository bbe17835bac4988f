"""Which language each step of a mixed chain of thought is written in: L²'s step-wise mixture as a Markov chain.

The paper translates "randomly chosen fragments" and publishes no probabilities. Ours: two numbers a user can read
off the data, `switch_probability` (the share of step boundaries where the language changes) and `language_weights`
(the share of steps in each language), both exact in expectation at every position of every chain. The first step's
language is drawn from the weights; at each boundary the chain moves from language i to j != i with probability
`F[i][j] / w[i]`, where `F` is a symmetric matrix with zero diagonal whose row sums `f[i]` add up to the switch
probability. Symmetry keeps the weights stationary, and the total flow is the switch rate. A language can only be
left as often as it is entered, so each `f[i]` is at most half the total; weights and rates that cannot both hold
raise an error that says so.
"""

from __future__ import annotations

import random

from slam_trainer.errors import ConfigError


def _row_sums(weights: list[float], switch_probability: float) -> list[float]:
    """How often each language is switched away from: proportional to its weight where that is feasible."""
    cap = switch_probability / 2
    if sum(min(w, cap) for w in weights) < switch_probability - 1e-12:
        raise ConfigError(
            f"`switch_probability`={switch_probability} cannot hold with `language_weights` {weights}: every switch "
            "leaves one language and enters another, so rare languages limit how often the language can change. "
            "Lower `switch_probability` or make the weights more even."
        )
    low, high = 0.0, 1.0 / max(min(weights), 1e-12)
    for _ in range(200):  # bisection on the scale t of f[i] = min(w[i], cap, t * w[i])
        middle = (low + high) / 2
        if sum(min(w, cap, middle * w) for w in weights) < switch_probability:
            low = middle
        else:
            high = middle
    return [min(w, cap, high * w) for w in weights]


def _symmetric_flow(row_sums: list[float]) -> list[list[float]]:
    """A symmetric, non-negative matrix with zero diagonal and the given row sums (each at most half the total)."""
    n, total = len(row_sums), sum(row_sums)
    largest = max(range(n), key=row_sums.__getitem__)
    if total == 0:
        return [[0.0] * n for _ in range(n)]
    if row_sums[largest] >= total / 2 - 1e-12:  # a star: every switch goes through the largest language
        flow = [[0.0] * n for _ in range(n)]
        for j in range(n):
            if j != largest:
                flow[largest][j] = flow[j][largest] = row_sums[j]
        return flow
    scale = [max(r, 1e-300) for r in row_sums]  # symmetric Sinkhorn scaling: F = diag(d) (1 - I) diag(d)
    for _ in range(10_000):
        total_scale = sum(scale)
        updated = [(scale[i] * row_sums[i] / (total_scale - scale[i])) ** 0.5 for i in range(n)]
        converged = max(abs(a - b) for a, b in zip(updated, scale)) < 1e-15
        scale = updated
        if converged:
            break
    return [[0.0 if i == j else scale[i] * scale[j] for j in range(n)] for i in range(n)]


class LanguageSchedule:
    """Draws the language of each step of a chain.

    Parameters:
        languages (`list[str]`):
            The languages to mix.
        weights (`list[float]`, *optional*):
            The share of steps in each language (normalised); uniform by default.
        switch_probability (`float`, *optional*, defaults to `0.3`):
            The share of step boundaries at which the language changes.
    """

    def __init__(self, languages: list[str], weights: list[float] | None = None, switch_probability: float = 0.3):
        if not 0.0 <= switch_probability <= 1.0:
            raise ConfigError(f"`switch_probability` must be in [0, 1], got {switch_probability}.")
        weights = [1.0] * len(languages) if weights is None else [float(w) for w in weights]
        if len(weights) != len(languages) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ConfigError(
                f"`language_weights` must give one non-negative weight per language with a positive sum, "
                f"got {weights} for {languages}."
            )
        if switch_probability > 0 and len(languages) < 2:
            raise ConfigError("`switch_probability` > 0 needs at least two languages to switch between.")
        self.languages = list(languages)
        self.weights = [w / sum(weights) for w in weights]
        self.switch_probability = switch_probability
        flow = _symmetric_flow(_row_sums(self.weights, switch_probability))
        # transitions[i][j]: probability of moving from language i to j at a boundary (j == i: staying).
        self.transitions = []
        for i, w in enumerate(self.weights):
            row = [flow[i][j] / w if w > 0 and j != i else 0.0 for j in range(len(languages))]
            row[i] = max(0.0, 1.0 - sum(row))
            self.transitions.append(row)

    def first(self, rng: random.Random) -> int:
        return rng.choices(range(len(self.languages)), weights=self.weights)[0]

    def sample(self, num_steps: int, rng: random.Random) -> list[str]:
        """The language of each of `num_steps` steps."""
        if num_steps == 0:
            return []
        indices = [self.first(rng)]
        for _ in range(num_steps - 1):
            indices.append(rng.choices(range(len(self.languages)), weights=self.transitions[indices[-1]])[0])
        return [self.languages[i] for i in indices]
