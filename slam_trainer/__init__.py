"""slam-trainer: selective language alignment (SLAM) and multilingual unification learning (L²) for HF trainers.

The public names are imported on first use (PEP 562 module `__getattr__`), so that `import slam_trainer` and
`slam --help` do not pay for torch, transformers and TRL until something needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from slam_trainer.version import __version__


# Public name -> the module that defines it.
_EXPORTS = {
    "ArchitectureMap": "slam_trainer.architectures",
    "UnsupportedArchitectureError": "slam_trainer.architectures",
    "get_architecture_map": "slam_trainer.architectures",
    "SelectiveFFNCallback": "slam_trainer.callback",
    "SelectiveFFNConfig": "slam_trainer.config",
    "load_jsonl_rows": "slam_trainer.data.loaders",
    "generate_problems": "slam_trainer.data.synthetic",
    "synthetic_parallel_dataset": "slam_trainer.data.synthetic",
    "synthetic_rows": "slam_trainer.data.synthetic",
    "FFNDeltaCallback": "slam_trainer.delta",
    "ConfigError": "slam_trainer.errors",
    "DataError": "slam_trainer.errors",
    "MissingDependencyError": "slam_trainer.errors",
    "ModelError": "slam_trainer.errors",
    "ResumeError": "slam_trainer.errors",
    "SlamTrainerError": "slam_trainer.errors",
    "load_ffn_delta": "slam_trainer.delta",
    "save_ffn_delta": "slam_trainer.delta",
    "extract_answer": "slam_trainer.evaluation.extraction",
    "EvalSettings": "slam_trainer.evaluation.runner",
    "run_evaluation": "slam_trainer.evaluation.runner",
    "FreezeReport": "slam_trainer.freezing",
    "freeze_except_ffn": "slam_trainer.freezing",
    "L2DataCollator": "slam_trainer.l2.collator",
    "L2EpochCallback": "slam_trainer.l2.collator",
    "LanguageSwitchLogitsProcessor": "slam_trainer.l2.decoding",
    "build_parallel_dataset": "slam_trainer.l2.parallel",
    "split_steps": "slam_trainer.l2.segmentation",
    "add_language_tokens": "slam_trainer.l2.tags",
    "load_model_and_tokenizer": "slam_trainer.loading",
    "LayerReport": "slam_trainer.probe",
    "identify_language_layers": "slam_trainer.probe",
    "SelectiveFFNTrainer": "slam_trainer.trainer",
}

__all__ = [
    "ArchitectureMap",
    "ConfigError",
    "DataError",
    "EvalSettings",
    "FFNDeltaCallback",
    "FreezeReport",
    "L2DataCollator",
    "L2EpochCallback",
    "LanguageSwitchLogitsProcessor",
    "LayerReport",
    "MissingDependencyError",
    "ModelError",
    "ResumeError",
    "SelectiveFFNCallback",
    "SelectiveFFNConfig",
    "SelectiveFFNTrainer",
    "SlamTrainerError",
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
    "load_model_and_tokenizer",
    "run_evaluation",
    "save_ffn_delta",
    "split_steps",
    "synthetic_parallel_dataset",
    "synthetic_rows",
]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from slam_trainer.architectures import ArchitectureMap, UnsupportedArchitectureError, get_architecture_map
    from slam_trainer.callback import SelectiveFFNCallback
    from slam_trainer.config import SelectiveFFNConfig
    from slam_trainer.data.loaders import load_jsonl_rows
    from slam_trainer.data.synthetic import generate_problems, synthetic_parallel_dataset, synthetic_rows
    from slam_trainer.delta import FFNDeltaCallback, load_ffn_delta, save_ffn_delta
    from slam_trainer.errors import (
        ConfigError,
        DataError,
        MissingDependencyError,
        ModelError,
        ResumeError,
        SlamTrainerError,
    )
    from slam_trainer.evaluation.extraction import extract_answer
    from slam_trainer.evaluation.runner import EvalSettings, run_evaluation
    from slam_trainer.freezing import FreezeReport, freeze_except_ffn
    from slam_trainer.l2.collator import L2DataCollator, L2EpochCallback
    from slam_trainer.l2.decoding import LanguageSwitchLogitsProcessor
    from slam_trainer.l2.parallel import build_parallel_dataset
    from slam_trainer.l2.segmentation import split_steps
    from slam_trainer.l2.tags import add_language_tokens
    from slam_trainer.loading import load_model_and_tokenizer
    from slam_trainer.probe import LayerReport, identify_language_layers
    from slam_trainer.trainer import SelectiveFFNTrainer
