"""Bad input to `slam eval` and the evaluation API: one row per case, the expected message fragment in the row.

Every CLI case must exit with code 2 and one line on stderr before the model loads (loading is refused in these tests);
every API case must raise the named error with the fragment.
"""

import json
import math
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
    ("language not in data", ["--languages", "fr"], "`languages` asks for fr but `data`"),
    ("zero max_new_tokens", ["--max_new_tokens", "0"], "`max_new_tokens` must be a positive"),
    ("zero batch_size", ["--batch_size", "0"], "`batch_size` must be positive"),
    ("shots without exemplars", ["--num_shots", "2"], "needs `exemplars`"),
    ("zero limit", ["--limit", "0"], "`limit` must be a positive"),
    ("fixed policy without target", ["--switch_policy", "fixed"], "`target` is needed"),
    ("skip_baseline alone", ["--skip_baseline"], "`skip_baseline` leaves nothing"),
    ("null question", ["--data", bad_row(question=None)], "`question` is None"),
    ("empty question", ["--data", bad_row(question=" ")], "non-empty text"),
    ("list id", ["--data", bad_row(id=[1, 2])], "`id` is [1, 2]"),
    ("boolean id", ["--data", bad_row(id=True)], "`id` is True"),
    ("number as lang", ["--data", bad_row(lang=5)], "`lang` is 5"),
    ("answer not a number", ["--data", bad_row(answer="many")], "is not a number"),
    ("missing answer column", ["--data", bad_row(drop="answer")], "missing column(s) answer"),
    ("data not JSON", ["--data", "{bad_data:not json}"], "not valid JSON"),
    ("nan switch_beta", ["--switch_beta", "nan"], "`beta` is a logit shift size and must be a finite number"),
    ("infinite switch_beta", ["--switch_beta", "inf"], "must be a finite number"),
    ("nan switch_alpha", ["--switch_alpha", "nan"], "`alpha` is a probability"),
    ("nan switch weight", ["--switch_policy", "weighted", "--switch_weights", "1", "nan"], "finite non-negative"),
    ("top_p above 1", ["--do_sample", "--top_p", "5"], "`top_p` is a probability mass in (0, 1]"),
    ("top_p zero", ["--top_p", "0"], "`top_p` is a probability mass in (0, 1]"),
    ("zero temperature", ["--do_sample", "--temperature", "0"], "`temperature` must be a positive number"),
    ("nan temperature", ["--temperature", "nan"], "`temperature` must be a positive number"),
    ("beam sampling", ["--do_sample", "--num_beams", "2"], "beam sampling"),
    ("unknown device", ["--device", "tpu9"], "`device` 'tpu9' is not a device"),
    ("absent CUDA", ["--device", "cuda:0"], "no CUDA device is available"),
    ("empty stop string", ["--stop_strings", ""], "`stop_strings` must be a list of non-empty strings"),
    ("chat style without template", ["--prompt_style", "chat", "--chat_template", "off"], "cannot go with"),
    ("model absent", ["--model", "no-such-model"], "`model` no-such-model: no tokenizer there"),
    ("chat template absent", ["--model", "{model:no-template}", "--chat_template", "on"], "the tokenizer has none"),
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
    for name in ("default", "no-template", "tags-not-resized", "no-tags"):
        tokenizer, model = build_tiny_tokenizer(), build_tiny_model()
        if name in ("default", "no-template"):
            add_language_tokens(tokenizer, model, ["en", "zh", "de"])
        if name == "tags-not-resized":
            add_language_tokens(tokenizer, None, ["en", "zh", "de"])
        if name == "no-template":
            tokenizer.chat_template = None
        tokenizer.save_pretrained(root / name)
        model.save_pretrained(root / name)
        folders[name] = str(root / name)
    return folders


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
