"""Multilingual math evaluation: per-language answer extraction, scoring, resumable generation, `evaluate` metric.

Names are imported on first use (PEP 562), so that `slam eval --help` and the prompt tables do not load torch.
"""

import importlib


_SOURCES = {
    "EvalSettings": "runner",
    "InterventionSettings": "runner",
    "build_compute_metrics": "trainer_metric",
    "detect_language": "language_id",
    "extract_answer": "extraction",
    "is_correct": "extraction",
    "is_in_language": "language_id",
    "metric_path": "trainer_metric",
    "parse_gold": "extraction",
    "run_evaluation": "runner",
    "score_records": "scoring",
}

__all__ = sorted(_SOURCES)


def __getattr__(name: str):
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_SOURCES[name]}"), name)


def __dir__():
    return __all__
