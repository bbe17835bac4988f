"""Multilingual math evaluation: per-language answer extraction, scoring, resumable generation, `evaluate` metric."""

from slam_trainer.evaluation.extraction import extract_answer, is_correct, parse_gold
from slam_trainer.evaluation.language_id import detect_language, is_in_language
from slam_trainer.evaluation.runner import EvalSettings, InterventionSettings, run_evaluation
from slam_trainer.evaluation.scoring import score_records
from slam_trainer.evaluation.trainer_metric import build_compute_metrics, metric_path


__all__ = [
    "EvalSettings",
    "InterventionSettings",
    "build_compute_metrics",
    "detect_language",
    "extract_answer",
    "is_correct",
    "is_in_language",
    "metric_path",
    "parse_gold",
    "run_evaluation",
    "score_records",
]
