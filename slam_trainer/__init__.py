"""slam-trainer: selective language alignment (SLAM) and multilingual unification learning (L²) for HF trainers."""

from slam_trainer.architectures import ArchitectureMap, UnsupportedArchitectureError, get_architecture_map
from slam_trainer.callback import SelectiveFFNCallback
from slam_trainer.config import SelectiveFFNConfig
from slam_trainer.freezing import FreezeReport, freeze_except_ffn
from slam_trainer.trainer import SelectiveFFNTrainer


__version__ = "0.1.0.dev0"

__all__ = [
    "ArchitectureMap",
    "FreezeReport",
    "SelectiveFFNCallback",
    "SelectiveFFNConfig",
    "SelectiveFFNTrainer",
    "UnsupportedArchitectureError",
    "__version__",
    "freeze_except_ffn",
    "get_architecture_map",
]
