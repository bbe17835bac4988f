"""Bad input to `slam eval` and the evaluation API: one row per case, the expected message fragment in the row.

Every CLI case must exit with code 2 and one line on stderr before the model loads (loading is refused in these tests);
every API case must raise the named error with the fragment.
"""

import json
import math
import os
import shutil

import pytest

from slam_trainer.cli.main import main as slam
from slam_trainer.errors import ConfigError
from slam_trainer.evaluation.runner import EvalSettings, InterventionSettings, run_evaluation
from slam_trainer.evaluation.scoring import score_records
from slam_trainer.l2.decoding import LanguageSwitchLogitsProcessor
from slam_trainer.l2.tags import add_language_tokens
from slam_trainer.tiny import build_tiny_model, build_tiny_tokenizer


ROW = {"id": 0, "lang": "en", "question": "Tom has 3 apples and buys 4 more. How many?", "answer": "7"}
SWITCH = ["--switch_beta", "2", "--switch_languages", "en", "zh"]


def bad_row(drop: str | None = None, **changes) -> str:
    """A `{bad_data:...}` placeholder: ROW with `changes`, without the column `drop`."""
    row = {key: value for key, value in {**ROW, **changes}.items() if key != drop}
    return "{bad_data:" + json.dumps(row) + "}"


# (case, flags after `slam eval --model M --data D --output_dir O`, expected fragment of the one-line error).
# In flags, {bad_data:CONTENT} is a data file holding CONTENT, {compare:CONTENT} a results file, {model:NAME} a model
# folder made by the fixtures below.
CLI_CASES = [
    ("unknown language", ["--languages", "xx"], "Unknown language code 'xx'"),
    ("language not in data", ["--languages", "fr"], "`--languages` asks for fr but `--data`"),
    ("zero max_new_tokens", ["--max_new_tokens", "0"], "`--max_new_tokens` must be a positive"),
    ("zero batch_size", ["--batch_size", "0"], "`--batch_size` must be positive"),
    ("shots without exemplars", ["--num_shots", "2"], "needs `--exemplars`"),
    ("zero limit", ["--limit", "0"], "`--limit` must be a positive"),
    (
        "fixed policy without target",
        ["--switch_policy", "fixed"],
        "`--switch_target` is needed with `--switch_policy fixed`",
    ),
    ("skip_baseline alone", ["--skip_baseline"], "`--skip_baseline` leaves nothing"),
    ("null question", ["--data", bad_row(question=None)], "`question` is None"),
    ("empty question", ["--data", bad_row(question=" ")], "non-empty text"),
    ("list id", ["--data", bad_row(id=[1, 2])], "`id` is [1, 2]"),
    ("boolean id", ["--data", bad_row(id=True)], "`id` is True"),
    ("number as lang", ["--data", bad_row(lang=5)], "`lang` is 5"),
    ("answer not a number", ["--data", bad_row(answer="many")], "is not a number"),
    ("answer NaN", ["--data", bad_row(answer=math.nan)], "row id 0 (en): the gold answer nan is not a finite"),
    ("answer Infinity", ["--data", bad_row(answer=math.inf)], "is not a finite number"),
    ("missing answer column", ["--data", bad_row(drop="answer")], "missing column(s) answer"),
    ("data not JSON", ["--data", "{bad_data:not json}"], "not valid JSON"),
    ("nan switch_beta", ["--switch_beta", "nan"], "`--switch_beta` is a logit shift size and must be a finite number"),
    ("infinite switch_beta", ["--switch_beta", "inf"], "must be a finite number"),
    ("nan switch_alpha", ["--switch_alpha", "nan"], "`--switch_alpha` is a probability"),
    ("nan switch weight", ["--switch_policy", "weighted", "--switch_weights", "1", "nan"], "finite non-negative"),
    ("top_p above 1", ["--do_sample", "--top_p", "5"], "`--top_p` is a probability mass in (0, 1]"),
    ("top_p zero", ["--top_p", "0"], "`--top_p` is a probability mass in (0, 1]"),
    ("zero temperature", ["--do_sample", "--temperature", "0"], "`--temperature` must be a positive number"),
    ("nan temperature", ["--temperature", "nan"], "`--temperature` must be a positive number"),
    ("beam sampling", ["--do_sample", "--num_beams", "2"], "beam sampling"),
    ("unknown device", ["--device", "tpu9"], "`--device` 'tpu9' is not a device"),
    ("absent CUDA", ["--device", "cuda:0"], "no CUDA device is available"),
    ("empty stop string", ["--stop_strings", ""], "`--stop_strings` must be a list of non-empty strings"),
    ("chat style without template", ["--prompt_style", "chat", "--chat_template", "off"], "cannot go with"),
    ("custom code without the flag", ["--model", "{model:remote-code}"], "runs only with --trust_remote_code"),
    ("model absent", ["--model", "no-such-model"], "`--model` no-such-model: no tokenizer there"),
    (
        "chat template absent",
        ["--model", "{model:no-template}", "--chat_template", "on"],
        "the tokenizer has none; use `--chat_template off`",
    ),
    (
        "prompt + max_new_tokens over the window",
        ["--max_new_tokens", "2000"],
        "exceed the model's context window of 1,024",
    ),
    ("compare file absent", ["--compare", "absent.json"], "`--compare` absent.json: no such results file"),
    ("compare file not JSON", ["--compare", "{compare:not json}"], "is not JSON"),
    ("compare file without run", ["--compare", '{compare:{"scores": {"languages": {}}}}'], "needs `run` and `scores`"),
    ("tags not resized in the model", ["--model", "{model:tags-not-resized}", *SWITCH], "the model was not resized"),
    ("tags absent from the tokenizer", ["--model", "{model:no-tags}", *SWITCH], "must be one"),
]

# (case, call, error type, expected fragment)
API_CASES = [
    (
        "max_new_tokens as text",
        lambda: EvalSettings("m", "d", max_new_tokens="10"),
        ConfigError,
        "`max_new_tokens` must be an integer",
    ),
    ("nan top_p", lambda: EvalSettings("m", "d", top_p=math.nan), ValueError, "`top_p` is a probability mass"),
    (
        "stop_strings as one string",
        lambda: EvalSettings("m", "d", stop_strings="\n"),
        ValueError,
        "`stop_strings` must be a list",
    ),
    (
        "unknown prompt style",
        lambda: EvalSettings("m", "d", prompt_style="harness"),
        ValueError,
        "`prompt_style` must be one of",
    ),
    (
        "unknown overflow policy",
        lambda: EvalSettings("m", "d", context_overflow="cut"),
        ValueError,
        "`context_overflow` must be one of",
    ),
    (
        "nan beta",
        lambda: LanguageSwitchLogitsProcessor(build_tiny_tokenizer(), ["en", "zh"], beta=math.nan),
        ValueError,
        "finite number",
    ),
    (
        "boolean top_k",
        lambda: LanguageSwitchLogitsProcessor(build_tiny_tokenizer(), ["en", "zh"], top_k=True),
        ValueError,
        "`top_k` must be a positive integer",
    ),
    ("no records", lambda: score_records([]), ValueError, "the records are empty"),
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny model folders: with tags (the default), without a chat template, with tags the model was not resized for,
    and without tags."""
    root = tmp_path_factory.mktemp("models")
    folders = {}
    for name in ("default", "no-template", "tags-not-resized", "no-tags", "remote-code"):
        tokenizer, model = build_tiny_tokenizer(), build_tiny_model()
        if name in ("default", "no-template"):
            add_language_tokens(tokenizer, model, ["en", "zh", "de"])
        if name == "tags-not-resized":
            add_language_tokens(tokenizer, None, ["en", "zh", "de"])
        if name == "no-template":
            tokenizer.chat_template = None
        tokenizer.save_pretrained(root / name)
        model.save_pretrained(root / name)
        if name == "remote-code":
            _with_own_modelling_code(root / name)
        folders[name] = str(root / name)
    return folders


def _with_own_modelling_code(folder):
    """Make a saved tiny Llama a custom-code model: its config names classes defined in files of its folder."""
    (folder / "configuration_remote.py").write_text(
        "from transformers import LlamaConfig\n\n\nclass RemoteConfig(LlamaConfig):\n    model_type = 'remote-llama'\n"
    )
    (folder / "modeling_remote.py").write_text(
        "from transformers import LlamaForCausalLM\n\nfrom .configuration_remote import RemoteConfig\n\n\n"
        "class RemoteForCausalLM(LlamaForCausalLM):\n    config_class = RemoteConfig\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="remote-llama", architectures=["RemoteForCausalLM"])
    config["auto_map"] = {
        "AutoConfig": "configuration_remote.RemoteConfig",
        "AutoModelForCausalLM": "modeling_remote.RemoteForCausalLM",
    }
    (folder / "config.json").write_text(json.dumps(config))


@pytest.fixture
def no_model_loading(monkeypatch):
    """Bad input must fail before the (expensive) model load."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr("slam_trainer.evaluation.loading.load_model", refuse)


def _materialise(flag: str, tmp_path, models) -> str:
    """Turn `{bad_data:...}`, `{compare:...}` and `{model:...}` placeholders into files and folders."""
    for kind in ("bad_data", "compare", "model"):
        prefix = "{" + kind + ":"
        if flag.startswith(prefix):
            content = flag[len(prefix) : -1]
            if kind == "model":
                return models[content]
            path = tmp_path / f"{kind}.json"
            path.write_text(content + "\n", encoding="utf-8")
            return str(path)
    return flag


@pytest.mark.usefixtures("no_model_loading")
@pytest.mark.parametrize(("case", "flags", "message"), CLI_CASES, ids=[case[0] for case in CLI_CASES])
def test_cli_bad_input_is_one_early_line(case, flags, message, models, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "bench.jsonl"
    data.write_text(json.dumps(ROW) + "\n", encoding="utf-8")
    flags = [_materialise(flag, tmp_path, models) for flag in flags]
    argv = ["eval", "--model", models["default"], "--data", str(data), "--output_dir", str(tmp_path / "out"), *flags]
    code = slam(argv)
    error = capsys.readouterr().err
    assert code == 2, error
    assert message in error and len(error.strip().splitlines()) == 1, error


@pytest.mark.parametrize(("case", "call", "error", "message"), API_CASES, ids=[case[0] for case in API_CASES])
def test_api_bad_input_is_a_clear_error(case, call, error, message):
    with pytest.raises(error) as raised:
        call()
    assert message in str(raised.value)


def test_exemplar_without_cot_is_refused_before_loading(models, tmp_path, no_model_loading):
    data = tmp_path / "bench.jsonl"
    data.write_text(json.dumps(ROW) + "\n", encoding="utf-8")
    exemplars = tmp_path / "exemplars.jsonl"
    exemplars.write_text(json.dumps({"lang": "en", "question": "Q: 1 + 1?", "cot": None}) + "\n", encoding="utf-8")
    settings = EvalSettings(models["default"], str(data), num_shots=1, exemplars=str(exemplars), device="cpu")
    with pytest.raises(ValueError, match="`cot` is None"):
        run_evaluation(settings, tmp_path / "out", progress=False)


def test_intervention_with_a_copied_tokenizer_is_checked_against_the_model(models, tmp_path, no_model_loading):
    """`--tokenizer` with tags over a model folder without them: the vocabulary check reads the model's config."""
    data = tmp_path / "bench.jsonl"
    data.write_text(json.dumps(ROW) + "\n", encoding="utf-8")
    plain = tmp_path / "plain"
    shutil.copytree(models["no-tags"], plain)
    settings = EvalSettings(str(plain), str(data), tokenizer=models["tags-not-resized"], device="cpu")
    with pytest.raises(ValueError, match="the model was not resized"):
        run_evaluation(
            settings,
            tmp_path / "out",
            intervention=InterventionSettings(beta=1.0, languages=["en", "zh"]),
            progress=False,
        )


# ------------------------------------------------- resuming: never two models, two data files or two writers in a run


def _retrain(folder):
    """The model in `folder` trained further: same files, same shapes, other weights."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight.mul_(1.01)
    model.save_pretrained(folder)


def _other_model(folder, models):
    """Another model of the same architecture and size written into `folder` (as after a kill and a new download)."""
    for name in ("model.safetensors", "config.json"):
        shutil.copy(os.path.join(models["no-tags"], name), folder / name)


def _cut_inside_a_character(run):
    predictions = run / "baseline" / "predictions.jsonl"
    lines = predictions.read_bytes().splitlines(keepends=True)
    torn = lines[-1][: lines[-1].index(b'"output"')] + '"output": "小'.encode()[:-1]  # inside a character's bytes
    predictions.write_bytes(b"".join(lines[:-1]) + torn)
    (run / "baseline" / "results.json").unlink()


def _tear_settings(run):
    path = run / "baseline" / "settings.json"
    path.write_bytes(path.read_bytes()[:40])


def _edit_data(data):
    rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]
    rows[0]["answer"] = "8"
    data.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


# (case, what happens to (model folder, data file, run folder) after a first run, fragment of the ResumeError; None:
# the second run resumes and ends with the first run's results)
RESUME_CASES = [
    ("same everything", lambda model, data, run: None, None),
    ("retrained model, same folder", lambda model, data, run: _retrain(model), "(model_fingerprint)"),
    ("another model, same folder", lambda model, data, run: _other_model(model, MODELS), "model_fingerprint"),
    ("data edited, same path", lambda model, data, run: _edit_data(data), "(data_sha256)"),
    ("predictions cut inside a character", lambda model, data, run: _cut_inside_a_character(run), None),
    ("settings.json torn", lambda model, data, run: _tear_settings(run), "settings.json is unreadable"),
    (
        "predictions line damaged mid-file",
        lambda model, data, run: (run / "baseline" / "predictions.jsonl").write_text('{"id": 0}\n{"x\n'),
        "predictions.jsonl:1: not a prediction record",
    ),
    ("output_dir a file", lambda model, data, run: shutil.rmtree(run) or run.write_text("x"), "is a file"),
]
MODELS = {}


@pytest.mark.parametrize(("case", "change", "message"), RESUME_CASES, ids=[case[0] for case in RESUME_CASES])
def test_resume_checks_the_model_weights_the_data_and_the_files(case, change, message, models, tmp_path):
    from slam_trainer.errors import ResumeError

    MODELS.update(models)
    model = tmp_path / "model"
    shutil.copytree(models["default"], model)
    data = tmp_path / "bench.jsonl"
    rows = [
        {"id": i, "lang": lang, "question": f"{q} {i}", "answer": str(i)}
        for i in range(2)
        for lang, q in (("en", "How many apples?"), ("zh", "小明有几个苹果？"))
    ]
    data.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    settings = EvalSettings(str(model), str(data), max_new_tokens=4, batch_size=1, device="cpu", dtype="float32")
    run = tmp_path / "run"
    first = run_evaluation(settings, run, progress=False)[0]
    change(model, data, run)
    if message is None:
        again = run_evaluation(settings, run, progress=False)[0]
        assert again["scores"] == first["scores"] and again["settings"] == first["settings"]
        return
    with pytest.raises(ResumeError) as raised:
        run_evaluation(settings, run, progress=False)
    assert message in str(raised.value)


def test_a_second_writer_on_one_output_dir_is_refused(models, tmp_path, no_model_loading):
    from slam_trainer.errors import ResumeError
    from slam_trainer.resume import exclusive_lock

    data = tmp_path / "bench.jsonl"
    data.write_text(json.dumps(ROW) + "\n", encoding="utf-8")
    settings = EvalSettings(models["default"], str(data), device="cpu")
    with exclusive_lock(tmp_path / "out"):  # a first `slam eval` still writing there
        with pytest.raises(ResumeError, match=r"is in use by process \d+"):
            run_evaluation(settings, tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "baseline").exists()


@pytest.mark.parametrize("command", ["eval", "identify"])
def test_trust_remote_code_is_a_flag_of_the_commands_whose_refusal_names_it(command, models, tmp_path, capsys):
    data = tmp_path / "bench.jsonl"
    data.write_text(json.dumps(ROW) + "\n", encoding="utf-8")
    model = ["--model", models["remote-code"], "--output_dir", str(tmp_path / "out")]
    if command == "eval":
        argv = ["eval", *model, "--data", str(data), "--max_new_tokens", "2", "--device", "cpu"]
    else:
        argv = ["identify", *model, "--num_layers", "1", "--resamples", "0", "--region", "all"]
    assert slam(argv) == 2 and "runs only with --trust_remote_code" in capsys.readouterr().err
    assert slam([*argv, "--trust_remote_code"]) == 0, capsys.readouterr().err
