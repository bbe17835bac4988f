"""`slam eval` end to end: files, stops and token counts, batching, resume after a real kill, chat templates, context.

Tiny random models check the mechanics; the real SmolLM2 checks that outputs end at their stop. Extraction and scoring
are tested on hand-written and stored real outputs (test_extraction.py, test_metric.py, test_real_outputs.py), bad
input in test_eval_bad_inputs.py.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import GenerationMixin

from slam_trainer.cli.main import main as slam
from slam_trainer.evaluation.generation import TransformersBackend
from slam_trainer.evaluation.prompts import build_prompts
from slam_trainer.evaluation.runner import EvalSettings, run_evaluation
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
    assert sorted((r["lang"], r["id"]) for r in records) == [("en", 0), ("en", 1), ("zh", 0), ("zh", 1)]
    assert all(1 <= r["num_tokens"] <= 6 and isinstance(r["output"], str) for r in records)
    assert {r["stopped_by"] for r in records} <= {"eos", "stop", "length"}
    scores = json.loads(read(tmp_path / "baseline" / "results.json"))["scores"]
    assert list(scores["languages"]) == ["en", "zh"]
    en = [r for r in records if r["lang"] == "en"]
    assert scores["languages"]["en"]["mean_tokens"] == sum(r["num_tokens"] for r in en) / 2
    assert results[0]["throughput"]["tokens"] == sum(r["num_tokens"] for r in records)


def test_resume_with_other_settings_is_refused(model_dir, data_file, tmp_path):
    run_evaluation(settings(model_dir, data_file, limit=1), tmp_path, progress=False)
    with pytest.raises(ValueError, match="max_new_tokens.*--overwrite"):
        run_evaluation(settings(model_dir, data_file, limit=1, max_new_tokens=5), tmp_path, progress=False)
    run_evaluation(settings(model_dir, data_file, limit=1, max_new_tokens=5), tmp_path, overwrite=True, progress=False)


def test_intervention_records_the_steps_it_steered_and_warns_when_it_never_acted(
    model_dir, data_file, tmp_path, caplog
):
    from slam_trainer.evaluation.runner import InterventionSettings

    # k = the whole vocabulary at every position: the processor shifts a tag at every generated step of every row.
    always = InterventionSettings(beta=3.0, top_k=10_000, boundary="any")
    results = run_evaluation(settings(model_dir, data_file, limit=1), tmp_path / "always", intervention=always)
    switch = {result["run"]: result for result in results}["switch"]
    records = [json.loads(line) for line in read(tmp_path / "always" / "switch" / "predictions.jsonl").splitlines()]
    assert all(1 <= record["steered_steps"] <= 6 for record in records)
    assert switch["steering"] == {"rows": 3, "rows_steered": 3, "steps": sum(r["steered_steps"] for r in records)}
    baseline = tmp_path / "always" / "baseline"
    assert "steered_steps" not in read(baseline / "predictions.jsonl")
    assert "steering" not in read(baseline / "results.json")

    # beta 0 shifts nothing: the run is the baseline's, and the log says why.
    never = InterventionSettings(beta=0.0, top_k=10_000, boundary="any")
    caplog.set_level("WARNING")
    results = run_evaluation(settings(model_dir, data_file, limit=1), tmp_path / "never", intervention=never)
    assert {result["run"]: result for result in results}["switch"]["steering"]["rows_steered"] == 0
    assert "intervention of run 'switch' never acted" in caplog.text


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
    steering = json.loads(read(out / "switch" / "results.json"))["steering"]  # shown, not only in the file
    assert f"switch: the intervention acted on {steering['rows_steered']} of {steering['rows']} rows" in printed
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


def test_a_tokenizer_without_pad_token_pads_with_eos(model_dir, data_file, tmp_path):
    no_pad = tmp_path / "no-pad"
    shutil.copytree(model_dir, no_pad)
    tokenizer = build_tiny_tokenizer()
    tokenizer.pad_token = None
    tokenizer.save_pretrained(no_pad)
    results = run_evaluation(settings(str(no_pad), data_file, limit=1), tmp_path / "out", progress=False)
    assert results[0]["scores"]["average"]["num_examples"] == 3


def test_prompts_zero_and_few_shot():
    exemplars = {"de": [{"question": "Frage: Roger hat 5 Bälle.", "cot": "Schritt: 5 + 6 = 11. Die Antwort ist 11."}]}
    row = [{"lang": "de", "question": "Wie viele?"}]
    (zero,) = build_prompts(row, "mathoctopus")
    assert "in German. Please answer in German." in zero and zero.endswith(
        "### Instruction:\nWie viele?\n\n### Response:"
    )
    (few,) = build_prompts(row, "slam", exemplars=exemplars)
    assert few == (
        "Human: Frage: Roger hat 5 Bälle.\nAssistant: Schritt: 5 + 6 = 11. Die Antwort ist 11.\n"
        "Human: Frage: Wie viele?\nAssistant:"
    )
    (chat,) = build_prompts(row, "chat", tokenizer=build_tiny_tokenizer(), exemplars=exemplars)
    assert chat.endswith("Human: Frage: Wie viele?\nAssistant: ") and "Die Antwort ist 11.</s>" in chat


def test_chat_template_is_applied_by_default_and_can_be_switched_off(model_dir, data_file, tmp_path):
    run_evaluation(settings(model_dir, data_file, limit=1), tmp_path / "auto", progress=False)
    run_evaluation(settings(model_dir, data_file, limit=1, chat_template=False), tmp_path / "off", progress=False)
    auto = json.loads(read(tmp_path / "auto" / "baseline" / "settings.json"))
    off = json.loads(read(tmp_path / "off" / "baseline" / "settings.json"))
    assert auto["chat_template_applied"] is True and off["chat_template_applied"] is False
    # The tiny tokenizer's template ends a turn with </s>: a stop besides the style's own.
    assert auto["stop_strings_used"]["en"] == ["\n### Instruction:", "\n### Response:", "</s>"]
    assert off["stop_strings_used"]["en"] == ["\n### Instruction:", "\n### Response:"]
    row = [{"lang": "en", "question": "Q?"}]
    wrapped = build_prompts(row, "mathoctopus", tokenizer=build_tiny_tokenizer(), chat_template=True)[0]
    assert wrapped.startswith("Human: Below is an instruction") and wrapped.endswith("### Response:\nAssistant: ")


def test_an_output_ends_at_its_first_stop_and_counts_the_tokens_up_to_it(model_dir):
    tokenizer = build_tiny_tokenizer()  # byte-level: one token per character, so counts are exact
    model = build_tiny_model()
    backend = TransformersBackend(model, tokenizer)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id

    def ids(text):
        return tokenizer.encode(text, add_special_tokens=False)

    stops = ["\nQuestion:", "</s>"]
    stopped = backend._complete(ids("x = 18.\nQuestion: next") + [pad, pad], stops)
    assert (stopped.text, stopped.num_tokens, stopped.stopped_by) == ("x = 18.", len("x = 18.\nQuestion:"), "stop")
    ended = backend._complete(ids("It is 7.") + [eos] + ids("junk"), stops)
    assert (ended.text, ended.num_tokens, ended.stopped_by) == ("It is 7.", len("It is 7.") + 1, "eos")
    unfinished = backend._complete(ids("1 2 3 4"), stops)
    assert (unfinished.text, unfinished.num_tokens, unfinished.stopped_by) == ("1 2 3 4", 7, "length")


def test_batched_sorted_generation_equals_plain_generate_per_example(model_dir, data_file, tmp_path):
    run_evaluation(settings(model_dir, data_file, batch_size=3, chat_template=False, stop_strings=[]), tmp_path)
    records = [json.loads(line) for line in read(tmp_path / "baseline" / "predictions.jsonl").splitlines()]
    model, tokenizer = build_tiny_model(), build_tiny_tokenizer()
    add_language_tokens(tokenizer, model, ["en", "zh", "de"])
    rows = [json.loads(line) for line in read(Path(data_file)).splitlines()]
    prompts = build_prompts(rows, "mathoctopus")
    by_key = {(r["lang"], r["id"]): r for r in records}
    for row, prompt in zip(rows, prompts):
        inputs = tokenizer(prompt, return_tensors="pt")
        output = model.generate(**inputs, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        generated = output[0, inputs["input_ids"].shape[1] :].tolist()
        if tokenizer.eos_token_id in generated:
            generated = generated[: generated.index(tokenizer.eos_token_id)]
        assert by_key[(row["lang"], row["id"])]["output"] == tokenizer.decode(generated)


def test_a_frozen_model_s_output_layer_gets_a_contiguous_input_while_generating():
    # Merged LoRA adapters load frozen; a strided lm_head input then runs as a bmm that copies the weight per prompt.
    model, tokenizer = build_tiny_model(), build_tiny_tokenizer()
    model.requires_grad_(False)
    head, contiguous = model.get_output_embeddings(), []
    head.register_forward_hook(lambda module, args, output: contiguous.append(args[0].is_contiguous()))
    TransformersBackend(model, tokenizer, max_new_tokens=3).generate(
        ["What is 2 + 3?", "Add 4 and 5, then 6."], [0, 1], []
    )
    assert contiguous and all(contiguous)
    contiguous.clear()
    head(torch.zeros(2, 4, model.config.hidden_size)[:, -1:, :])  # outside generation the layer is left as it was
    assert contiguous == [False]


def test_sampling_draws_do_not_depend_on_the_batch(model_dir, data_file, tmp_path):
    sampled = {"do_sample": True, "temperature": 1.5, "max_new_tokens": 12, "seed": 3}
    run_evaluation(settings(model_dir, data_file, batch_size=1, **sampled), tmp_path / "one", progress=False)
    run_evaluation(settings(model_dir, data_file, batch_size=4, **sampled), tmp_path / "four", progress=False)
    one = sorted(read(tmp_path / "one" / "baseline" / "predictions.jsonl").splitlines())
    four = sorted(read(tmp_path / "four" / "baseline" / "predictions.jsonl").splitlines())
    assert one == four
    # the per-row seeds' hash is recorded: a sampled run does not resume under another one
    assert json.loads(read(tmp_path / "one" / "baseline" / "settings.json"))["sampling_seeds"] == "blake2b-64"
    run_evaluation(settings(model_dir, data_file, batch_size=1, **{**sampled, "seed": 4}), tmp_path / "other")
    other = sorted(read(tmp_path / "other" / "baseline" / "predictions.jsonl").splitlines())
    assert other != one  # the seed matters


def _wait_for_lines(path: Path, process, at_least: int, timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists() and len(read(path).splitlines()) >= at_least:
            return len(read(path).splitlines())
        time.sleep(0.02)
    raise AssertionError(f"the run ended (code {process.poll()}) or stalled before writing {at_least} rows")


@pytest.mark.slow
def test_a_killed_sampling_run_resumes_to_the_draws_of_an_uninterrupted_one(model_dir, tmp_path):
    rows = [
        {"id": i, "lang": lang, "question": f"{questions[i % 2]} ({i})", "answer": str(i)}
        for lang, questions in QUESTIONS.items()
        for i in range(8)
    ]
    data = tmp_path / "bench.jsonl"
    data.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    argv = [sys.executable, "-m", "slam_trainer.cli", "eval", "--model", model_dir, "--data", str(data)]
    argv += ["--do_sample", "--temperature", "1.3", "--seed", "7", "--max_new_tokens", "96", "--device", "cpu"]
    argv += ["--dtype", "float32", "--batch_size", "2", "--stop_strings"]
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run([*argv, "--output_dir", str(whole)], check=True, env=environment, capture_output=True)

    process = subprocess.Popen([*argv, "--output_dir", str(killed)], env=environment, stderr=subprocess.DEVNULL)
    predictions = killed / "baseline" / "predictions.jsonl"
    try:
        written = _wait_for_lines(predictions, process, at_least=3)  # mid-run, after a batch and a half or more
    finally:
        process.kill()
        process.wait()
    assert written < len(rows) and not (killed / "baseline" / "results.json").exists()
    # Leave a batch half written, as a kill between two rows' writes does, and a torn line after it.
    lines = read(predictions).splitlines(keepends=True)
    lines = lines if len(lines) % 2 else lines[:-1]
    predictions.write_text("".join(lines) + lines[-1][: len(lines[-1]) // 2], encoding="utf-8")
    subprocess.run([*argv, "--output_dir", str(killed)], check=True, env=environment, capture_output=True)
    assert sorted(read(predictions).splitlines()) == sorted(
        read(whole / "baseline" / "predictions.jsonl").splitlines()
    )
    assert read(killed / "baseline" / "results.json") == read(whole / "baseline" / "results.json")


@pytest.mark.real_model
@pytest.mark.slow
def test_real_smollm2_outputs_end_at_their_stop(smollm2_path, shared_data, tmp_path):
    limit = 64
    results = run_evaluation(
        EvalSettings(
            model=smollm2_path,
            data=str(shared_data / "mgsm" / "mgsm.jsonl"),
            languages=["en", "de", "zh"],
            limit=2,
            batch_size=2,
            max_new_tokens=limit,
            dtype="float32",
            device="cpu",
        ),
        tmp_path,
        progress=False,
    )
    records = [json.loads(line) for line in read(tmp_path / "baseline" / "predictions.jsonl").splitlines()]
    stopped = [r for r in records if r["stopped_by"] != "length"]
    assert stopped, "every output ran to max_new_tokens"
    assert all(r["num_tokens"] < limit for r in stopped) and all(
        r["num_tokens"] == limit for r in records if r not in stopped
    )
    assert not any(
        stop in r["output"] for r in records for stop in ("<|im_end|>", "### Instruction:", "### Response:")
    )
    assert results[0]["scores"]["average"]["ended_share"] == round(len(stopped) / len(records), 6)
    assert results[0]["throughput"]["tokens"] == sum(r["num_tokens"] for r in records)


@pytest.mark.slow
@pytest.mark.real_model
def test_smollm2_telugu_8_shot_prompts_exceed_its_context_window(smollm2_path, shared_data):
    from transformers import AutoConfig, AutoTokenizer

    from slam_trainer.evaluation.benchmark import load_benchmark, load_exemplars
    from slam_trainer.evaluation.loading import context_window
    from slam_trainer.evaluation.runner import check_context

    rows = load_benchmark(shared_data / "mgsm" / "mgsm.jsonl", ["en", "bn", "te"], limit=3)
    exemplars = load_exemplars(shared_data / "mgsm" / "exemplars.jsonl", ["en", "bn", "te"], 8)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    prompts = build_prompts(rows, "mathoctopus", tokenizer=tokenizer, exemplars=exemplars, chat_template=True)
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    window = context_window(AutoConfig.from_pretrained(smollm2_path), tokenizer)
    assert window == 8192
    with pytest.raises(ValueError, match=r"te: 3 row\(s\), prompts up to [\d,]+ tokens") as raised:
        check_context(rows, lengths, 600, window)
    assert "en:" not in str(raised.value) and "bn:" not in str(raised.value)
    over = check_context(rows, lengths, 600, window, "warn")
    assert {entry["lang"] for entry in over} == {"te"} and min(entry["prompt_tokens"] for entry in over) > 8192 - 600


def test_the_plot_s_axes_start_at_zero_also_when_every_accuracy_is_zero(tmp_path, monkeypatch):
    """An all-zero run drew an accuracy axis of -0.04..0.04 (matplotlib centres a flat axis on its value)."""
    import matplotlib.figure

    from slam_trainer.evaluation.report import plot_results

    limits = []
    monkeypatch.setattr(
        matplotlib.figure.Figure, "savefig", lambda self, *a, **k: limits.extend(axis.get_ylim() for axis in self.axes)
    )
    scores = {"languages": {"en": {"accuracy": 0.0, "mean_tokens": 0.0}, "de": {"accuracy": 0.0, "mean_tokens": 0}}}
    plot_results([{"run": "baseline", "scores": scores}], tmp_path / "r.png")
    assert limits == [(0.0, 100.0), (0.0, 1.0)]
