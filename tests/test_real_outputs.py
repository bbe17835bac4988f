"""Scoring real model outputs the way a reader does: a truth table of stored outputs of SmolLM2-135M-Instruct and
Gemma-3-270M on MGSM (tests/data/real_outputs.jsonl, made by tests/scripts/make_real_outputs.py), read by hand.

The outputs were generated without stop sequences, so they run on into invented next questions; each is first cut
where `slam eval` now ends it (`cut_at_stops` with its prompt style's stop sequences), then read. Each row names an
output (run, language, MGSM id), what a reader takes as its answer, and the issue #15 item it exercises. A reader's
answer is the number the output states as its answer; when it states none, the number it ends on (MathOctopus's
last-number rule, which a reader applies to an output that trails off), and None when it holds no quantity (list
markers such as "2." are not quantities). `was` gives what main scored.
"""

import json
import math

import pytest

from slam_trainer.evaluation.extraction import extract_answer
from slam_trainer.evaluation.generation import cut_at_stops
from slam_trainer.evaluation.language_id import detect_language
from slam_trainer.evaluation.prompts import stop_strings
from slam_trainer.evaluation.runner import EvalSettings, run_evaluation
from slam_trainer.evaluation.scoring import score_records


# (run, lang, id, a reader's answer, issue item, what the output does — as cut at its stops; `was`: main's answer)
ANSWER_ROWS = [
    # 1. An answer phrase inside a label or a sentence is not where the answer is.
    (
        "smollm2-mathoctopus-2shot",
        "de",
        0,
        2,
        "1",
        "'Schritt-für-Schritt-Antwort: ... 16 Eier. Sie ist 2 Dollar.' (was 16)",
    ),
    ("smollm2-mathoctopus-2shot", "zh", 0, 5, "1", "'逐步解答：...有 4 天。每天增加 5 台电脑。...' (was 4)"),
    ("smollm2-mathoctopus-2shot", "zh", 1, 20, "1", "'逐步解答：10 个匹布料。10 * 2 = 20 ...。10 + 20' (was 10)"),
    ("smollm2-mathoctopus-2shot", "ja", 0, 16, "1", "'ステップごとの答え：1日に16個の卵を...' (was 1)"),
    (
        "gemma3-mathoctopus-2shot",
        "en",
        0,
        2,
        "1",
        "'Step-by-Step Answer: ... 16 eggs ... for $2 per fresh duck egg.' (was 16)",
    ),
    ("gemma3-mathoctopus-2shot", "zh", 0, 2, "1", "'逐步解答：...16 颗蛋...每颗新鲜鸭蛋卖 2 美元' (was 16)"),
    ("gemma3-mathoctopus-2shot", "te", 1, 192, "1", "'దశలవారీగా సమాధానం: 2*2=4. ... మొత్తం 4*192' (was 2)"),
    ("gemma3-mathoctopus-0shot", "te", 4, None, "1", "'... సమాధానం:\n1. ప్రతి రోజూ...': a list, no quantity (was 1)"),
    ("smollm2-mathoctopus-2shot", "bn", 0, None, "1", "'ধাপে ধাপে উত্তর: সোমবার থেকে...': the label, no number"),
    # 2. An expression after the phrase states its result.
    ("smollm2-mathoctopus-0shot", "en", 1, 3, "2", "'The answer is 2 * 1.5 = 3.' (was 2)"),
    ("gemma3-mathoctopus-2shot", "en", 1, 1, "2", "'... The answer is 1/2 of 2 = 1.'"),
    # 3. The last phrase that holds a number decides.
    ("gemma3-mathoctopus-0shot", "ja", 2, 150, "3", "'答えは150%分増えました。答えはいくらですか？答えは150%...'"),
    ("gemma3-native_cot-2shot", "ja", 0, 1, "3", "'...2ドルの価格で売ります。答えは1' (cut off after 1)"),
    ("gemma3-mathoctopus-2shot", "de", 1, 4, "3", "'... Das macht 2 x 2 = 4 Knäuel. Die Antwort lautet 4 Knä'"),
    # 5. Digit runs: a long one is a number while finite; the one too long for a float (was Infinity) is cut off
    # with the invented question that holds it.
    ("gemma3-mathoctopus-2shot", "bn", 1, 2e56, "5", "'ধাপে ধাপে উত্তর: 2000...0' (57 digits)"),
    (
        "gemma3-native_cot-2shot-long",
        "en",
        1,
        4,
        "5",
        "'2 * 2 = 4 ... 2 * 2 = 4 white fibers.' then 'Question: 1000...' (was inf)",
    ),
    # Stops: the invented next question is not part of the answer.
    (
        "gemma3-mathoctopus-2shot",
        "ru",
        1,
        4,
        "stops",
        "'Пошаговое решение: 2 * 2 = 4 мотков.' then 'Задача: 1000...' (was 1e38)",
    ),
    ("gemma3-mathoctopus-2shot", "ru", 0, 32, "stops", "'Пошаговое решение: 16 * 2 = 32 долларов.' (was 16)"),
    (
        "gemma3-mathoctopus-2shot",
        "es",
        1,
        2,
        "stops",
        "'... Una bata lleva 2 rollos ...' then 'Pregunta: ... 1000 pesos' (was 1000)",
    ),
    ("gemma3-mathoctopus-2shot", "zh", 1, 4, "stops", "'...它一共需要用掉 2 * 2 = 4 匹布料。' (was 2)"),
    ("gemma3-native_cot-2shot", "de", 1, 12, "stops", "'2 x 2 x 2 = 12 Knäuel.' then 'Frage: 1000...' (was 1e26)"),
    ("gemma3-mathoctopus-2shot", "th", 0, 20, "stops", "'คำตอบทีละขั้นตอน: 16 + 2 = 20 คำตอบคือ 20'"),
    # List markers are not quantities (Gemma numbers its lines and is cut after a marker).
    ("gemma3-mathoctopus-0shot", "bn", 0, 16, "markers", "'1. 16টি করে ডিম পাড়ে\n...\n5. ' (was 5)"),
    ("gemma3-mathoctopus-0shot", "de", 0, None, "markers", "'1. I have a question ... 2. I have a question' (was 2)"),
    ("gemma3-mathoctopus-0shot", "ru", 4, None, "markers", "'1. Каждая из кур ...\n2. ... по три чашки' (was 2)"),
    ("gemma3-mathoctopus-0shot", "te", 3, 60, "markers", "'1. 3 సార్లు 3 ...\n2. ... 60 మీటర్లు ...\n3. ఒక' (was 3)"),
    ("gemma3-mathoctopus-0shot", "bn", 3, 1800, "markers", "'1. 3x3 = 90 meters ... 4. 1800'"),
]
KNOWN_DISAGREEMENTS = [
    # A worked-answer label directly followed by a number, then a cut-off digit run: a reader takes 2020.
    ("smollm2-mathoctopus-2shot", "ja", 1, 2020, "1", "'ステップごとの答え：2020です。2020です。...2024の202'"),
]
# (run, lang, id, the language a reader sees (None: none), what the output is)
LANGUAGE_ROWS = [
    ("gemma3-mathoctopus-0shot", "sw", 2, "en", "'I am a student in a school in Tanzania.' x4 (was fr)"),
    ("gemma3-mathoctopus-0shot", "es", 1, None, "'A. 2/2 = 1/2\\nB. 1/2 = 1/2 ...' (was fr)"),
    ("gemma3-mathoctopus-0shot", "bn", 3, "en", "'1. 3x3 = 90 meters\\n2. 60 meters = 600 meters ...' (was None)"),
    ("smollm2-mathoctopus-2shot", "sw", 0, "sw", "'Jibu la Hatua kwa Hatua: Kuna kuwa kuwa kuwa ...'"),
    ("smollm2-native_cot-2shot", "fr", 0, "fr", "'2000 œufs par jour. 2000 çà 2000 çà ...' (was None)"),
    ("smollm2-mathoctopus-0shot", "te", 3, "te", "'జేమ్ప్ వారంలో 3 సా' (cut off)"),
    ("smollm2-mathoctopus-0shot", "th", 2, "en", "'### Thai\\n\\n### Thai ...' (was None)"),
]


KNOWN_LANGUAGE_DISAGREEMENTS = [
    # Template markup only: the identifier's byte n-grams of "Response" lean German; a reader sees English markup.
    ("smollm2-mathoctopus-0shot", "ja", 0, "en", "'\\n\\n### Response:' x6"),
]


@pytest.fixture(scope="module")
def outputs(real_outputs):
    """Each output as `slam eval` ends it: cut at its prompt style's stop sequences."""
    ended = {}
    for record in real_outputs:
        style = "mgsm_native_cot" if "native_cot" in record["run"] else "mathoctopus"
        text = cut_at_stops(record["output"], stop_strings(style, record["lang"]))
        ended[(record["run"], record["lang"], record["id"])] = {**record, "output": text}
    return ended


def _ids(rows):
    return [f"{run}-{lang}-{example}" for run, lang, example, *_ in rows]


@pytest.mark.parametrize(("run", "lang", "example", "reader", "item", "what"), ANSWER_ROWS, ids=_ids(ANSWER_ROWS))
def test_extraction_agrees_with_a_reader(outputs, run, lang, example, reader, item, what):
    record = outputs[(run, lang, example)]
    extracted = extract_answer(record["output"], lang)
    assert extracted == (None if reader is None else pytest.approx(reader)), what


@pytest.mark.parametrize(
    ("run", "lang", "example", "reader", "item", "what"), KNOWN_DISAGREEMENTS, ids=_ids(KNOWN_DISAGREEMENTS)
)
@pytest.mark.xfail(strict=True, reason="known disagreement: a label read as no phrase, then a cut-off last number")
def test_known_disagreements_with_a_reader(outputs, run, lang, example, reader, item, what):
    assert extract_answer(outputs[(run, lang, example)]["output"], lang) == pytest.approx(reader), what


@pytest.mark.parametrize(("run", "lang", "example", "reader", "what"), LANGUAGE_ROWS, ids=_ids(LANGUAGE_ROWS))
def test_language_label_agrees_with_a_reader(outputs, run, lang, example, reader, what):
    assert detect_language(outputs[(run, lang, example)]["output"]) == reader, what


@pytest.mark.parametrize(
    ("run", "lang", "example", "reader", "what"), KNOWN_LANGUAGE_DISAGREEMENTS, ids=_ids(KNOWN_LANGUAGE_DISAGREEMENTS)
)
@pytest.mark.xfail(strict=True, reason="known disagreement: markup-only text labelled German")
def test_known_language_disagreements_with_a_reader(outputs, run, lang, example, reader, what):
    assert detect_language(outputs[(run, lang, example)]["output"]) == reader, what


def test_no_output_scores_as_a_non_finite_number(real_outputs):
    for record in real_outputs:
        value = extract_answer(record["output"], record["lang"])
        assert value is None or math.isfinite(value)


def test_both_averages_on_a_real_run(real_outputs):
    records = [record for record in real_outputs if record["run"] == "smollm2-mathoctopus-0shot"]
    scores = score_records(records, prompt_style="mathoctopus")
    per_language = {lang: entry["accuracy"] for lang, entry in scores["languages"].items()}
    assert len(per_language) == 11 and per_language["en"] > 0  # one correct English answer: 2 * 1.5 = 3
    assert scores["average"]["languages"] == list(per_language)
    assert scores["average"]["accuracy"] == pytest.approx(sum(per_language.values()) / 11, abs=1e-6)
    without = scores["average_without_te"]
    assert without["languages"] == [lang for lang in per_language if lang != "te"]
    assert without["accuracy"] == pytest.approx(sum(v for k, v in per_language.items() if k != "te") / 10, abs=1e-6)
    assert without["num_examples"] == 50 and scores["average"]["num_examples"] == 55
    json.dumps(scores, allow_nan=False)


@pytest.mark.real_model
@pytest.mark.slow
def test_an_echo_of_the_question_is_counted(gemma3_path, shared_data, tmp_path):
    """Gemma-3-270M copies German MGSM question 4, whose last number (20) is the answer: correct, and an echo. (A live
    run: the output is the question itself, which stays out of tests/data.)"""
    results = run_evaluation(
        EvalSettings(
            model=gemma3_path,
            data=str(shared_data / "mgsm" / "mgsm.jsonl"),
            languages=["de"],
            limit=5,
            batch_size=5,
            max_new_tokens=160,
            dtype="float32",
            device="cpu",
        ),
        tmp_path,
        progress=False,
    )
    records = {
        record["id"]: record for record in map(json.loads, (tmp_path / "baseline" / "predictions.jsonl").open())
    }
    rows = map(json.loads, (shared_data / "mgsm" / "mgsm.jsonl").open(encoding="utf-8"))
    question = next(row["question"] for row in rows if row["lang"] == "de" and row["id"] == 4)
    assert records[4]["output"].strip().startswith(question[:60])  # it repeats the question
    assert records[4]["prediction"] == 20 and records[4]["correct"] and records[4]["echo"]
    entry = results[0]["scores"]["languages"]["de"]
    assert entry["num_echo"] == sum(record["echo"] for record in records.values()) >= 1
    assert entry["num_echo"] <= entry["num_correct"]
