"""The probe's settings, their defaults and their checks: one source for `identify_language_layers`, auto mode
(`slam_layers="auto"`) and `slam identify`, so that the three answer the same question in the same way.

Light on purpose (no torch import): the command line checks its flags here before it loads data or a model.
"""

from __future__ import annotations

from slam_trainer.errors import ConfigError


SCORES = ("lape", "overlap", "activated_msd", "overlap_msd")

# Where the layers may be chosen. SLAM (arXiv 2501.03681) argues that language alignment happens in the lower layers
# and tunes layers 0-5; LAPE (Tang et al. 2024) finds language-specific neurons at the bottom *and* the top of the
# model. "lower_half" asks SLAM's question, "all" lets the scores pick anywhere (LAPE's view).
REGIONS = ("lower_half", "all")

DEFAULTS = {
    "num_layers": 6,  # SLAM tunes about 6 layers
    "score": "lape",  # the only published method with public code
    "region": "lower_half",  # ours, following SLAM's claim (see REGIONS)
    "top_rate": 0.01,  # the LAPE code's value
    "activation_bar_ratio": 0.95,  # the LAPE code's value
    "batch_size": 8,  # ours
    "max_length": 2048,  # ours: keeps every MGSM question whole with SmolLM2's tokenizer (Telugu: up to 1,656)
    "resamples": 100,  # ours: bootstrap resamples of the stability measure (0 turns it off)
    "seed": 0,  # ours: the bootstrap's random seed
}

# Parallel items are dealt round-robin into at most this many groups whose counts the bootstrap resamples (ours:
# enough groups for a frequency, few enough to keep the counts small; see `counting.py` for the memory).
BOOTSTRAP_UNITS = 50

# A chosen layer picked in fewer bootstrap resamples than this share makes the choice "not stable" (ours).
STABLE_FREQUENCY = 0.8


def _positive_int(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")


def check_probe_settings(
    *,
    num_layers: int = DEFAULTS["num_layers"],
    score: str = DEFAULTS["score"],
    region: str = DEFAULTS["region"],
    top_rate: float = DEFAULTS["top_rate"],
    activation_bar_ratio: float = DEFAULTS["activation_bar_ratio"],
    batch_size: int = DEFAULTS["batch_size"],
    max_length: int = DEFAULTS["max_length"],
    resamples: int = DEFAULTS["resamples"],
) -> None:
    """Refuse a setting no probe run could use, before any data or model is loaded.

    Raises:
        `ValueError`: naming the argument in backticks, with the valid range.
    """
    _positive_int("num_layers", num_layers)
    if score not in SCORES:
        raise ConfigError(f"`score` is {score!r}; choose one of {', '.join(SCORES)}.")
    if region not in REGIONS:
        raise ConfigError(f"`region` is {region!r}; choose one of {', '.join(REGIONS)}.")
    if isinstance(top_rate, bool) or not isinstance(top_rate, (int, float)) or not 0 < top_rate <= 1:
        raise ConfigError(f"`top_rate` must be in (0, 1], got {top_rate!r}.")
    if (
        isinstance(activation_bar_ratio, bool)
        or not isinstance(activation_bar_ratio, (int, float))
        or not 0 < activation_bar_ratio < 1
    ):
        raise ConfigError(f"`activation_bar_ratio` must be in (0, 1), got {activation_bar_ratio!r}.")
    _positive_int("batch_size", batch_size)
    _positive_int("max_length", max_length)
    _positive_int("resamples", resamples, minimum=0)


def region_layers(total: int, region: str) -> list[int]:
    """The layers `region` lets the probe choose: all, or the lower half `0 .. ceil(total / 2) - 1` (the middle
    layer of an odd count included)."""
    if region not in REGIONS:
        raise ConfigError(f"`region` is {region!r}; choose one of {', '.join(REGIONS)}.")
    return list(range((total + 1) // 2)) if region == "lower_half" else list(range(total))
