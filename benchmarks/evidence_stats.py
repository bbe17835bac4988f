"""The evidence benchmark's statistics: per-problem verdicts → non-English means and paired bootstrap intervals.

A scored evaluation keeps one verdict per problem and language (`"0110..."` in the order of the data file, which is
the same for every arm). An arm's non-English mean at one budget is the mean over its seeds, the non-English
languages and the problems. Its interval resamples problems (a problem carries all its languages) and seeds, both
with replacement, and takes the 2.5th and 97.5th percentiles of the resampled means (ours: 2,000 resamples, a
fixed random seed, so the same records give the same intervals). A difference between two arms uses the same
resampled problems for both (paired: the same questions) and the same resampled seed positions (paired: seed s of
every arm sees the same training order); an arm with one "seed" (the untrained base) keeps it in every resample.
"""

from __future__ import annotations

import numpy as np


RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def verdict_matrix(by_seed: list[dict[str, str]], languages: list[str]) -> np.ndarray:
    """`[seeds, problems]` mean verdict over `languages` from each seed's `{lang: "0110..."}`."""
    if not by_seed or not languages:
        raise ValueError("verdict_matrix needs at least one seed and one language.")
    rows = []
    for verdicts in by_seed:
        lengths = {len(verdicts[lang]) for lang in languages}
        if len(lengths) != 1:
            raise ValueError(f"Languages hold different problem counts: {sorted(lengths)}.")
        rows.append(np.mean([[char == "1" for char in verdicts[lang]] for lang in languages], axis=0))
    if len({row.shape for row in rows}) != 1:
        raise ValueError("Seeds hold different problem counts.")
    return np.asarray(rows, dtype=float)


def _weights(count: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """`[resamples, count]`: how often each index is drawn in each resample (draws with replacement)."""
    picks = rng.integers(0, count, size=(resamples, count))
    weights = np.zeros((resamples, count))
    np.add.at(weights, (np.arange(resamples)[:, None], picks), 1.0)
    return weights / count


def bootstrap_means(
    matrices: list[np.ndarray], *, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> list[np.ndarray]:
    """Resampled means of each `[seeds, problems]` matrix, on the SAME resampled problems and seed positions (the
    matrices must share the problem count; a one-seed matrix keeps its seed)."""
    problems = {matrix.shape[1] for matrix in matrices}
    if len(problems) != 1:
        raise ValueError(f"Paired matrices need the same problems, got counts {sorted(problems)}.")
    rng = np.random.default_rng(seed)
    problem_weights = _weights(problems.pop(), resamples, rng)
    seeds = max(matrix.shape[0] for matrix in matrices)
    seed_weights = _weights(seeds, resamples, rng)
    means = []
    for matrix in matrices:
        weights = seed_weights if matrix.shape[0] == seeds else np.full((resamples, 1), 1.0)
        if matrix.shape[0] not in (1, seeds):
            raise ValueError(f"Paired matrices need the same seeds (or one), got {matrix.shape[0]} and {seeds}.")
        means.append(np.einsum("rs,sp,rp->r", weights, matrix, problem_weights))
    return means


def interval(values: np.ndarray) -> list[float]:
    """The 95% percentile interval, rounded to 4 digits."""
    low, high = np.percentile(values, [2.5, 97.5])
    return [round(float(low), 4), round(float(high), 4)]


def mean_with_interval(matrix: np.ndarray) -> tuple[float, list[float]]:
    """The mean of a `[seeds, problems]` matrix and its bootstrap 95% interval."""
    (resampled,) = bootstrap_means([matrix])
    return round(float(matrix.mean()), 4), interval(resampled)


def difference_with_interval(first: np.ndarray, second: np.ndarray) -> tuple[float, list[float]]:
    """`mean(first) - mean(second)` and its paired bootstrap 95% interval."""
    a, b = bootstrap_means([first, second])
    return round(float(first.mean() - second.mean()), 4), interval(a - b)


def gain_ratio_with_interval(
    arm: np.ndarray, reference: np.ndarray, base: np.ndarray
) -> tuple[float | None, list[float] | None]:
    """`(mean(arm) - mean(base)) / (mean(reference) - mean(base))`, the share of the reference's gain over the base
    that `arm` keeps, and its paired bootstrap 95% interval (all three on the same resampled problems; arm and
    reference on the same seed positions). None where the reference's gain is not above 0 (no gain to keep), the
    interval None where it is not above 0 in some resample."""
    gain = reference.mean() - base.mean()
    if gain <= 0:
        return None, None
    a, r, b = bootstrap_means([arm, reference, base])
    point = round(float((arm.mean() - base.mean()) / gain), 4)
    return point, (interval((a - b) / (r - b)) if np.all(r - b > 0) else None)
