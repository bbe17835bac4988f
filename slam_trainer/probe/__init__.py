"""Language-layer identification: which decoder layers' FFN neurons are language-specific (SLAM's layer analysis).

`identify_language_layers` runs the model over parallel text with hooks that count how often each FFN neuron is
active per language, scores every layer (LAPE, activated counts, overlap with a pivot language, their mean squared
deviation) and chooses the best layers; `resolve_auto_layers` does the same once per distributed run for
`slam_layers="auto"`.
"""

from slam_trainer.probe.counting import ActivationCounts, count_activations
from slam_trainer.probe.identify import identify_language_layers
from slam_trainer.probe.report import LayerReport
from slam_trainer.probe.scores import SCORES


__all__ = ["SCORES", "ActivationCounts", "LayerReport", "count_activations", "identify_language_layers"]
