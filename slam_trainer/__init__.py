"""slam-trainer: selective language alignment (SLAM) and multilingual unification learning (L²) for HF trainers."""

from slam_trainer.architectures import ArchitectureMap, UnsupportedArchitectureError, get_architecture_map
from slam_trainer.callback import SelectiveFFNCallback
from slam_trainer.config import SelectiveFFNConfig
from slam_trainer.data.loaders import load_jsonl_rows
from slam_trainer.data.synthetic import generate_problems, synthetic_parallel_dataset, synthetic_rows
from slam_trainer.delta import FFNDeltaCallback, load_ffn_delta, save_ffn_delta
from slam_trainer.evaluation.extraction import extract_answer
from slam_trainer.evaluation.runner import EvalSettings, run_evaluation
from slam_trainer.freezing import FreezeReport, freeze_except_ffn
from slam_trainer.l2.collator import L2DataCollator, L2EpochCallback
from slam_trainer.l2.decoding import LanguageSwitchLogitsProcessor
from slam_trainer.l2.parallel import build_parallel_dataset
from slam_trainer.l2.segmentation import split_steps
from slam_trainer.l2.tags import add_language_tokens
from slam_trainer.probe import LayerReport, identify_language_layers
from slam_trainer.trainer import SelectiveFFNTrainer
from slam_trainer.version import __version__


__all__ = [
    "ArchitectureMap",
    "EvalSettings",
    "FFNDeltaCallback",
    "FreezeReport",
    "L2DataCollator",
    "L2EpochCallback",
    "LanguageSwitchLogitsProcessor",
    "LayerReport",
    "SelectiveFFNCallback",
    "SelectiveFFNConfig",
    "SelectiveFFNTrainer",
    "UnsupportedArchitectureError",
    "__version__",
    "add_language_tokens",
    "build_parallel_dataset",
    "extract_answer",
    "freeze_except_ffn",
    "generate_problems",
    "get_architecture_map",
    "identify_language_layers",
    "load_ffn_delta",
    "load_jsonl_rows",
    "run_evaluation",
    "save_ffn_delta",
    "split_steps",
    "synthetic_parallel_dataset",
    "synthetic_rows",
]
