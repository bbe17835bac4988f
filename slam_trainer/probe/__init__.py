"""Language-layer identification: which decoder layers' FFN neurons are language-specific (SLAM's layer analysis).

`identify_language_layers` runs the model over parallel text with hooks that count how often each FFN neuron is
active per language, scores every layer (LAPE, activated counts, overlap with a pivot language, their mean squared
deviation), chooses the best layers of a region and measures how stable that choice is under bootstrap resampling;
`resolve_auto_layers` does the same once per distributed run for `slam_layers="auto"`. The names below are
imported on first use, so that `slam --help` (which reads `slam_trainer.probe.settings`) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING


_EXPORTS = {
    "ActivationCounts": "slam_trainer.probe.counting",
    "LayerReport": "slam_trainer.probe.report",
    "SCORES": "slam_trainer.probe.settings",
    "count_activations": "slam_trainer.probe.counting",
    "identify_language_layers": "slam_trainer.probe.identify",
}

__all__ = ["SCORES", "ActivationCounts", "LayerReport", "count_activations", "identify_language_layers"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from slam_trainer.probe.counting import ActivationCounts, count_activations
    from slam_trainer.probe.identify import identify_language_layers
    from slam_trainer.probe.report import LayerReport
    from slam_trainer.probe.settings import SCORES
