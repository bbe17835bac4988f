"""`slam eval` end to end with a tiny model: files, resume after an interruption, bad input, prompts.

Tiny random models write garbage, so these tests check the mechanics; extraction and scoring are tested on
hand-written outputs in test_extraction.py and test_metric.py.
"""

import json
import shutil

import pytest
from transformers import GenerationMixin

from slam_trainer.cli.main import main as slam
from slam_trainer.evaluation.prompts import build_prompt
from slam_trainer.evaluation.runner import EvalSettings, InterventionSettings, run_evaluation
from slam_trainer.l2.tags import add_language_tokens
from slam_trainer.tiny import build_tiny_model, build_tiny_tokenizer


QUESTIONS = {
    "en": ["Tom has 3 apples and buys 4 more. How many?", "A box holds 12 eggs. How many in 2 boxes?"],
    "de": ["Anna hat 5 Äpfel und isst 2. Wie viele bleiben?", "Ein Buch kostet 2,5 Euro. Was kosten 2?"],
    "zh": ["小明有5个苹果，又买了3个。他现在有几个？", "一盒有6支笔，3盒有几支？"],
}
ANSWERS = ["7", "24"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-model")
    tokenizer, model = build_tiny_tokenizer(), build_tiny_model()
    add_language_tokens(tokenizer, model, ["en", "zh", "de"])
    tokenizer.save_pretrained(path)
    model.save_pretrained(path)
    return str(path)


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "bench.jsonl"
    rows = [
        {"id": i, "lang": lang, "question": q, "answer": ANSWERS[i]}
        for lang, questions in QUESTIONS.items()
        for i, q in enumerate(questions)
    ]
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def settings(model_dir, data_file, **overrides):
    values = {"batch_size": 2, "max_new_tokens": 6, "dtype": "float32", "device": "cpu", **overrides}
    return EvalSettings(model=model_dir, data=data_file, **values)


def read(path):
    return path.read_text(encoding="utf-8")


def test_interrupted_eval_resumes_to_the_same_results(model_dir, data_file, tmp_path, monkeypatch):
    whole = tmp_path / "whole"
    run_evaluation(settings(model_dir, data_file), whole, progress=False)

    # Interrupt the second run during its second batch, as Ctrl-C would.
    interrupted = tmp_path / "interrupted"
    calls = {"n": 0}
    original = GenerationMixin.generate

    def generate_then_interrupt(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GenerationMixin, "generate", generate_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_evaluation(settings(model_dir, data_file), interrupted, progress=False)
    monkeypatch.setattr(GenerationMixin, "generate", original)
    predictions = interrupted / "baseline" / "predictions.jsonl"
    assert len(read(predictions).splitlines()) == 2 and not (interrupted / "baseline" / "results.json").exists()
    with predictions.open("a", encoding="utf-8") as handle:  # a record cut short by a kill mid-write
        handle.write('{"id": 0, "lang": "de", "outp')

    results = run_evaluation(settings(model_dir, data_file), interrupted, progress=False)
    assert results[0]["throughput"]["rows"] == 4  # only the missing rows were generated
    assert read(interrupted / "baseline" / "results.json") == read(whole / "baseline" / "results.json")
    resumed = sorted(read(predictions).splitlines())
    assert resumed == sorted(read(whole / "baseline" / "predictions.jsonl").splitlines())


def test_results_files_and_counts(model_dir, data_file, tmp_path):
    results = run_evaluation(settings(model_dir, data_file, languages=["zh", "en"]), tmp_path, progress=False)
    records = [json.loads(line) for line in read(tmp_path / "baseline" / "predictions.jsonl").splitlines()]
    assert [(r["lang"], r["id"]) for r in records] == [("en", 0), ("en", 1), ("zh", 0), ("zh", 1)]
    assert all(1 <= r["num_tokens"] <= 6 and isinstance(r["output"], str) for r in records)
    scores = json.loads(read(tmp_path / "baseline" / "results.json"))["scores"]
    assert list(scores["languages"]) == ["en", "zh"]
    assert scores["languages"]["en"]["mean_tokens"] == sum(r["num_tokens"] for r in records[:2]) / 2
    assert results[0]["throughput"]["tokens"] == sum(r["num_tokens"] for r in records)


def test_resume_with_other_settings_is_refused(model_dir, data_file, tmp_path):
    run_evaluation(settings(model_dir, data_file, limit=1), tmp_path, progress=False)
    with pytest.raises(ValueError, match="max_new_tokens.*--overwrite"):
        run_evaluation(settings(model_dir, data_file, limit=1, max_new_tokens=5), tmp_path, progress=False)
    run_evaluation(settings(model_dir, data_file, limit=1, max_new_tokens=5), tmp_path, overwrite=True, progress=False)


def test_cli_runs_baseline_and_intervention_in_one_invocation(model_dir, data_file, tmp_path, capsys):
    out = tmp_path / "out"
    code = slam(
        [
            "eval",
            "--model",
            model_dir,
            "--data",
            data_file,
            "--languages",
            "en",
            "de",
            "--limit",
            "1",
            "--max_new_tokens",
            "5",
            "--device",
            "cpu",
            "--output_dir",
            str(out),
            "--switch_beta",
            "3",
            "--switch_boundary",
            "any",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "baseline:acc%" in printed and "switch:tokens" in printed and "tokens/s" in printed
    for run in ("baseline", "switch"):
        assert len(read(out / run / "predictions.jsonl").splitlines()) == 2
    switch_settings = json.loads(read(out / "switch" / "settings.json"))
    assert switch_settings["intervention"]["beta"] == 3.0
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Several runs passed together share the table and the PNG.
    assert (
        slam(
            [
                "eval",
                "--model",
                model_dir,
                "--data",
                data_file,
                "--languages",
                "en",
                "--limit",
                "1",
                "--max_new_tokens",
                "2",
                "--device",
                "cpu",
                "--output_dir",
                str(tmp_path / "again"),
                "--compare",
                str(out / "switch" / "results.json"),
            ]
        )
        == 0
    )
    assert "switch:acc%" in capsys.readouterr().out


def test_help_renders(capsys):
    with pytest.raises(SystemExit) as exit_info:
        slam(["eval", "--help"])
    assert exit_info.value.code == 0 and "--switch_beta" in capsys.readouterr().out


@pytest.fixture
def no_model_loading(monkeypatch):
    """Bad input must fail before the (expensive) model load."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr("slam_trainer.evaluation.loading.load_model", refuse)


@pytest.mark.usefixtures("no_model_loading")
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--languages", "xx"], "Unknown language code 'xx'"),
        (["--languages", "fr"], "`languages` asks for fr but `data`"),
        (["--max_new_tokens", "0"], "`max_new_tokens` must be a positive"),
        (["--batch_size", "0"], "`batch_size` must be positive"),
        (["--num_shots", "2"], "needs `exemplars`"),
        (["--limit", "0"], "`limit` must be a positive"),
        (["--switch_policy", "fixed"], "`target` is needed"),
        (["--skip_baseline"], "`skip_baseline` leaves nothing"),
    ],
)
def test_bad_input_is_a_one_line_error(model_dir, data_file, tmp_path, capsys, flags, message):
    code = slam(["eval", "--model", model_dir, "--data", data_file, "--output_dir", str(tmp_path), *flags])
    error = capsys.readouterr().err
    assert code == 2 and message in error and len(error.strip().splitlines()) == 1


@pytest.mark.usefixtures("no_model_loading")
@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": 0, "lang": "en", "question": "q"}\n', r"missing column\(s\) answer"),
        ("", "holds no rows"),
        ('{"id": 0, "lang": "en", "question": "q", "answer": "many"}\n', "is not a number"),
        ("not json\n", r"bad.jsonl:1: not valid JSON"),
    ],
)
def test_bad_data_file_is_a_clear_error(model_dir, tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        run_evaluation(settings(model_dir, str(path)), tmp_path / "out", progress=False)


def test_a_tokenizer_without_pad_token_pads_with_eos(model_dir, data_file, tmp_path):
    no_pad = tmp_path / "no-pad"
    shutil.copytree(model_dir, no_pad)
    tokenizer = build_tiny_tokenizer()
    tokenizer.pad_token = None
    tokenizer.save_pretrained(no_pad)
    results = run_evaluation(settings(str(no_pad), data_file, limit=1), tmp_path / "out", progress=False)
    assert results[0]["scores"]["average"]["num_examples"] == 3


def test_intervention_needs_single_token_tags(data_file, tmp_path, no_model_loading):
    plain = tmp_path / "plain"
    build_tiny_tokenizer().save_pretrained(plain)
    with pytest.raises(ValueError, match="must be one"):
        run_evaluation(
            settings(str(plain), data_file),
            tmp_path / "out",
            intervention=InterventionSettings(beta=1.0),
            progress=False,
        )


def test_prompts_zero_and_few_shot():
    exemplars = [{"question": "Frage: Roger hat 5 Bälle.", "cot": "Schritt: 5 + 6 = 11. Die Antwort ist 11."}]
    zero = build_prompt("Wie viele?", "de", "mathoctopus")
    assert "in German. Please answer in German." in zero and zero.endswith(
        "### Instruction:\nWie viele?\n\n### Response:"
    )
    few = build_prompt("Wie viele?", "de", "slam", exemplars=exemplars)
    assert few == (
        "Human: Frage: Roger hat 5 Bälle.\nAssistant: Schritt: 5 + 6 = 11. Die Antwort ist 11.\n"
        "Human: Frage: Wie viele?\nAssistant:"
    )
    chat = build_prompt("Wie viele?", "de", "chat", tokenizer=build_tiny_tokenizer(), exemplars=exemplars)
    assert chat.endswith("Human: Frage: Wie viele?\nAssistant: ") and "Die Antwort ist 11.</s>" in chat
