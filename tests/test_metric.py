"""Scoring: gold answers score 100%, shuffled answers score what chance allows; the metric loads offline."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
from transformers import EvalPrediction

from slam_trainer.evaluation.extraction import parse_gold
from slam_trainer.evaluation.generation import json_line
from slam_trainer.evaluation.scoring import judge, score_records
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
        {"lang": "en", "answer": "4", "output": "2 + 2 = 4. The answer is 4.", "num_tokens": 10, "stopped_by": "eos"},
        {"lang": "en", "answer": "5", "output": "The answer is 6.", "num_tokens": 30, "stopped_by": "length"},
        {"lang": "zh", "answer": "3", "output": "The answer is 3.", "num_tokens": 8},  # right, but in English
    ]
    scores = score_records(records)
    assert scores["languages"]["en"] == {
        "num_examples": 2,
        "num_correct": 1,
        "num_echo": None,  # no question in the records
        "accuracy": 0.5,
        "mean_tokens": 20.0,
        "tokens_per_correct": 40.0,
        "language_consistency": 1.0,
        "ended_share": 0.5,
        "reference_accuracy": {},
    }
    assert scores["languages"]["zh"]["language_consistency"] == 0.0
    assert scores["languages"]["zh"]["ended_share"] is None  # how it ended is unknown
    assert scores["average"]["accuracy"] == pytest.approx(0.75)


def test_correct_answers_copied_from_the_question_are_counted():
    question = "Morgens 15 Tassen, nachmittags 25 Tassen. Wie viele Tassen für 20 Hühner?"
    records = [
        {"lang": "de", "answer": "20", "output": "Die Antwort ist 20.", "question": question},  # echo
        {"lang": "de", "answer": "20", "output": "60 - 15 - 25 = 20", "question": question},  # echo too: 20 is there
        {"lang": "de", "answer": "40", "output": "15 + 25 = 40", "question": question},  # computed
        {"lang": "de", "answer": "15", "output": "Die Antwort ist 25.", "question": question},  # wrong: no echo
    ]
    entry = score_records(records)["languages"]["de"]
    assert (entry["num_correct"], entry["num_echo"]) == (3, 2)


def test_both_averages_are_named_when_telugu_is_there():
    records = [
        {"lang": lang, "answer": "1", "output": "The answer is 1." if lang in ("en", "te") else "0"}
        for lang in ("en", "de", "te")
    ]
    scores = score_records(records)
    assert scores["average"]["languages"] == ["en", "de", "te"]
    assert scores["average"]["accuracy"] == pytest.approx(2 / 3)
    without = scores["average_without_te"]
    assert without["languages"] == ["en", "de"] and without["accuracy"] == 0.5 and without["num_examples"] == 2
    assert "average_without_te" not in score_records(records[:2])
    assert "average_without_te" not in score_records(records[2:])  # Telugu alone: one average


def test_reference_accuracy_follows_the_prompt_style():
    records = [
        {"lang": "en", "answer": "18", "output": "The answer is 18. Then 3 more."},  # lm-eval strict yes, last no
        {"lang": "en", "answer": "3", "output": "She has 3"},  # no phrase: strict no, flexible and last yes
    ]
    cot = score_records(records, prompt_style="mgsm_native_cot")["languages"]["en"]["reference_accuracy"]
    assert cot == {"flexible-extract": 0.5, "strict-match": 0.5}
    last = score_records(records, prompt_style="mathoctopus")["average"]["reference_accuracy"]
    assert last == {"last-number": 0.5}


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


def test_a_long_digit_run_never_reaches_predictions_as_infinity():
    verdict = judge("The answer is " + "9" * 400, "18", "en")
    assert verdict["prediction"] is None and not verdict["correct"]
    json.loads(json_line(verdict), parse_constant=pytest.fail)  # strict JSON: no Infinity/NaN constants
    with pytest.raises(ValueError):
        json_line({"prediction": float("inf")})
