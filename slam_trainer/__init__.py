"""slam-trainer: selective language alignment (SLAM) and multilingual unification learning (L²) for HF trainers."""

from slam_trainer.architectures import ArchitectureMap, UnsupportedArchitectureError, get_architecture_map
from slam_trainer.callback import SelectiveFFNCallback
from slam_trainer.config import SelectiveFFNConfig
from slam_trainer.data.loaders import load_jsonl_rows
from slam_trainer.data.synthetic import generate_problems, synthetic_parallel_dataset, synthetic_rows
from slam_trainer.delta import FFNDeltaCallback, load_ffn_delta, save_ffn_delta
from slam_trainer.freezing import FreezeReport, freeze_except_ffn
from slam_trainer.l2.collator import L2DataCollator, L2EpochCallback
from slam_trainer.l2.parallel import build_parallel_dataset
from slam_trainer.l2.segmentation import split_steps
from slam_trainer.l2.tags import add_language_tokens
from slam_trainer.trainer import SelectiveFFNTrainer


__version__ = "0.1.0.dev0"

__all__ = [
    "ArchitectureMap",
    "FFNDeltaCallback",
    "FreezeReport",
    "L2DataCollator",
    "L2EpochCallback",
    "SelectiveFFNCallback",
    "SelectiveFFNConfig",
    "SelectiveFFNTrainer",
    "UnsupportedArchitectureError",
    "__version__",
    "add_language_tokens",
    "build_parallel_dataset",
    "freeze_except_ffn",
    "generate_problems",
    "load_ffn_delta",
    "get_architecture_map",
    "load_jsonl_rows",
    "save_ffn_delta",
    "split_steps",
    "synthetic_parallel_dataset",
    "synthetic_rows",
]
