"""Scoring: gold answers score 100%, shuffled answers score what chance allows; the metric loads offline."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
from transformers import EvalPrediction

from slam_trainer.evaluation.extraction import parse_gold
from slam_trainer.evaluation.scoring import score_records
from slam_trainer.evaluation.trainer_metric import build_compute_metrics, metric_path
from slam_trainer.tiny import build_tiny_tokenizer


DATA = Path("../shared/data")
needs_data = pytest.mark.skipif(not (DATA / "mgsm").is_dir(), reason="third-party data ../shared/data is absent")


def _rows(name: str) -> list[dict]:
    with open(DATA / name, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@needs_data
@pytest.mark.parametrize("name", ["mgsm/mgsm.jsonl", "msvamp/msvamp.jsonl"])
def test_gold_answers_as_predictions_score_100_percent(name):
    rows = _rows(name)
    scores = score_records({**row, "output": str(row["answer"])} for row in rows)
    assert scores["average"]["accuracy"] == 1.0
    assert all(entry["accuracy"] == 1.0 for entry in scores["languages"].values())
    assert scores["average"]["num_examples"] == len(rows)


@needs_data
def test_shuffled_answers_score_the_chance_agreement():
    rows = [row for row in _rows("mgsm/mgsm.jsonl") if row["lang"] in ("en", "de", "zh")]
    outputs = [str(row["answer"]) for row in rows]
    random.Random(0).shuffle(outputs)
    scores = score_records({**row, "output": output} for row, output in zip(rows, outputs))
    # Expected: the share of pairs whose (shuffled) gold answers happen to be equal.
    matches = sum(parse_gold(row["answer"]) == parse_gold(output) for row, output in zip(rows, outputs))
    assert scores["average"]["num_correct"] == matches
    assert scores["average"]["accuracy"] < 0.1


def test_token_statistics_and_language_consistency():
    records = [
        {"lang": "en", "answer": "4", "output": "2 + 2 = 4. The answer is 4.", "num_tokens": 10},
        {"lang": "en", "answer": "5", "output": "The answer is 6.", "num_tokens": 30},
        {"lang": "zh", "answer": "3", "output": "The answer is 3.", "num_tokens": 8},  # right, but in English
    ]
    scores = score_records(records)
    assert scores["languages"]["en"] == {
        "num_examples": 2,
        "num_correct": 1,
        "accuracy": 0.5,
        "mean_tokens": 20.0,
        "tokens_per_correct": 40.0,
        "language_consistency": 1.0,
    }
    assert scores["languages"]["zh"]["language_consistency"] == 0.0
    assert scores["average"]["accuracy"] == pytest.approx(0.75)


def test_no_records_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        score_records([])


def test_evaluate_metric_loads_offline_from_its_path():
    import evaluate

    metric = evaluate.load(metric_path())
    result = metric.compute(
        predictions=["La respuesta es 2,5.", "答案是 1,200。", "The answer is 7"],
        references=["2.5", "1,200", "8"],
        languages=["es", "zh", "en"],
    )
    assert result["accuracy_es"] == 1.0 and result["accuracy_zh"] == 1.0 and result["accuracy_en"] == 0.0
    assert result["accuracy"] == pytest.approx(2 / 3)


def test_compute_metrics_for_trainer_scores_the_labelled_tokens():
    tokenizer = build_tiny_tokenizer()
    prompt, answers = "Q: 2+2?\nA:", [" 4", " 5"]
    encoded = [tokenizer(prompt + answer)["input_ids"] for answer in answers]
    labels = np.array(
        [[-100] * len(tokenizer(prompt)["input_ids"]) + ids[len(tokenizer(prompt)["input_ids"]) :] for ids in encoded]
    )
    # Teacher-forced argmax predictions: position t predicts token t + 1.
    predictions = np.array([ids[1:] + [tokenizer.pad_token_id] for ids in encoded])
    compute_metrics = build_compute_metrics(tokenizer, references=["4", "4"], languages="en")
    result = compute_metrics(EvalPrediction(predictions=predictions, label_ids=labels))
    assert result["accuracy"] == 0.5
