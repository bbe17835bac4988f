"""`evaluate` metric: multilingual math accuracy (answer extraction per language, exact match within 1e-3).

Shipped inside slam-trainer and loaded offline from its path:

    >>> import evaluate
    >>> from slam_trainer.evaluation import metric_path
    >>> metric = evaluate.load(metric_path())
    >>> metric.compute(predictions=["La respuesta es 2,5."], references=["2.5"], languages=["es"])["accuracy"]
    1.0
"""

import datasets
import evaluate

from slam_trainer.errors import ConfigError
from slam_trainer.evaluation.scoring import score_records


_DESCRIPTION = """
Reads the answer from each generated output the way the question's language writes numbers (the last number, or the
number after the language's "The answer is" phrase; locale thousands separators and decimal commas; digits of any
script) and counts it correct when it lies within `tolerance` (1e-3, as MathOctopus) of the gold answer.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): generated outputs (without the prompt).
    references (`list` of `str`): gold answers, written as in MGSM/MSVAMP (`"2,125"`, `"18"`).
    languages (`str` or `list` of `str`): the question's language code, one for all or one per prediction.
    num_tokens (`list` of `int`, *optional*): generated tokens per prediction, for the token statistics.
    tolerance (`float`, *optional*, defaults to 1e-3): largest distance from the gold answer counted correct.
Returns:
    accuracy, language_consistency, and when `num_tokens` is given mean_tokens and tokens_per_correct: macro
    averages over languages; the same per language with a `_{lang}` suffix (e.g. `accuracy_de`).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MultilingualMathAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, languages="en", num_tokens=None, tolerance=1e-3):
        if isinstance(languages, str):
            languages = [languages] * len(predictions)
        if len(languages) != len(predictions):
            raise ConfigError(f"`languages` has {len(languages)} entries for {len(predictions)} predictions.")
        if num_tokens is not None and len(num_tokens) != len(predictions):
            raise ConfigError(f"`num_tokens` has {len(num_tokens)} entries for {len(predictions)} predictions.")
        records = [
            {"output": output, "answer": gold, "lang": lang, "num_tokens": None if num_tokens is None else count}
            for output, gold, lang, count in zip(
                predictions, references, languages, num_tokens or [None] * len(predictions)
            )
        ]
        scores = score_records(records, tolerance)
        flat = {key: value for key, value in scores["average"].items() if _is_score(key, value)}
        for lang, entry in scores["languages"].items():
            flat.update({f"{key}_{lang}": value for key, value in entry.items() if _is_score(key, value)})
        return flat


def _is_score(key: str, value) -> bool:
    """A number worth reporting (not a count, not a breakdown, not missing)."""
    return isinstance(value, float) and not key.startswith("num_")
