"""Bad input, one row per case: each must fail early with a clear message, the fragment given in its row.

CLI rows run `slam ...` in-process through the console script's `main` and expect exit status 2, no traceback, and
one `slam COMMAND: error: ...` line on stderr holding the fragment. API rows call a public function and expect the
exception type and the fragment. Every row errs before any model loads or any request is sent.

To add a case, append a row. Placeholders in CLI rows: `{tmp}` the test's folder, `{seed}` a valid annotation seed,
`{base}` a saved tiny Llama, `{delta}` a fresh copy of a valid delta of it (a row's `prepare(tmp)` may damage it);
`files` are (name, text or bytes) written under `{tmp}` first.
"""

import importlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

from slam_trainer.cli.main import main
from slam_trainer.errors import ConfigError, DataError, ResumeError
from tests.test_delta import DAMAGES


@dataclass(frozen=True)
class Cli:
    id: str
    argv: tuple
    expected: str
    files: tuple = ()
    prepare: Callable | None = None


@dataclass(frozen=True)
class Api:
    id: str
    call: Callable  # (material, tmp) -> anything; must raise
    error: type
    expected: str


def public(module: str, name: str):
    """`module.name`, looked up when a row runs (so that one missing name fails its rows, not the whole table)."""
    return getattr(importlib.import_module(module), name)


def jsonl(*rows) -> str:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


SEED_ROW = {"id": "q1", "question": "What is 2 + 2?", "answer": "4", "steps": ["Add 2 and 2.", "It is 4."]}
CLOSED = "http://127.0.0.1:9/v1"  # the discard port: nothing answers, so a row that wrongly sends fails at once


def annotate(*extra, seed="{seed}", languages=("zh",)):
    argv = ("annotate", "--seed", seed, "--languages", *languages, "--model", "m", "--output", "{tmp}/out.jsonl")
    return (*argv, "--base_url", CLOSED, "--max_retries", "0", *extra)


def seeded(id, expected, *rows, extra=()):
    """An `annotate` row whose seed file holds `rows`."""
    return Cli(id, annotate(*extra, seed="{tmp}/s.jsonl"), expected, files=(("s.jsonl", jsonl(*rows)),))


def l2(*extra, data="{tmp}/rows.jsonl", source="o1"):
    return ("l2-build", "--data", data, "--source", source, "--output_dir", "{tmp}/sets", *extra)


def merge(*extra, delta="{delta}", out="{tmp}/merged"):
    return ("merge", "{base}", delta, out, *extra)


def train(*extra, data="{tmp}/train.jsonl"):
    argv = ("train", "--model_name_or_path", "tiny:llama", "--output_dir", "{tmp}/run", "--dataset_name", data)
    return (*argv, "--max_steps", "1", "--use_cpu", "true", "--bf16", "false", "--report_to", "none", *extra)


PARALLEL_ROW = {"id": 1, "lang": "en", "question": "q", "answer": "1", "steps": ["s"]}

CLI_CASES = [
    # --- the CLI as a whole: parsing, --config, expected failure types ---
    Cli("missing-required-option", ("annotate",), "the following arguments are required: --seed"),
    Cli("unknown-command", ("bogus",), "invalid choice: 'bogus'"),
    Cli("unrecognized-argument", merge("--bogus"), "unrecognized arguments: --bogus"),
    Cli("int-option-given-text", annotate("--concurrency", "many"), "invalid int value: 'many'"),
    Cli("choice-option-bad-value", merge("--dtype", "int8"), "invalid choice: 'int8'"),
    Cli("config-missing-file", annotate("--config", "{tmp}/none.yaml"), "No such file or directory"),
    Cli("config-is-a-directory", annotate("--config", "{tmp}"), "Is a directory"),
    Cli(
        "config-bad-yaml", annotate("--config", "{tmp}/c.yaml"), "not valid YAML at line 1", (("c.yaml", "a: [1, 2"),)
    ),
    Cli("config-not-a-mapping", annotate("--config", "{tmp}/c.yaml"), "expected a mapping", (("c.yaml", "- a\n"),)),
    Cli(
        "config-unknown-key", annotate("--config", "{tmp}/c.yaml"), "unknown option(s) sead", (("c.yaml", "sead: x"),)
    ),
    Cli(
        "config-positional-key",
        merge("--config", "{tmp}/c.yaml"),
        "`base` is a positional argument",
        (("c.yaml", "base: x"),),
    ),
    Cli(
        "config-wrong-type",
        annotate("--config", "{tmp}/c.yaml"),
        "`concurrency`: invalid value 'many'",
        (("c.yaml", "concurrency: many"),),
    ),
    Cli(
        "config-bad-choice",
        annotate("--config", "{tmp}/c.yaml"),
        "`segmentation` must be one of",
        (("c.yaml", "segmentation: words"),),
    ),
    Cli(
        "config-flag-not-boolean",
        annotate("--config", "{tmp}/c.yaml"),
        "`allow_insecure_http` is a flag",
        (("c.yaml", "allow_insecure_http: maybe"),),
    ),
    Cli(
        "config-yaml-no-is-false",
        ("annotate", "--config", "{tmp}/c.yaml"),
        "expected text, got False; quote it",
        (("c.yaml", "seed: s.jsonl\nlanguages: [zh, no]\nmodel: m\noutput: o.jsonl"),),
    ),
    Cli("train-config-bad-yaml", ("train", "--config", "{tmp}/c.yaml"), "expected ',' or ']'", (("c.yaml", "a: [1"),)),
    # --- slam annotate: seed file, options, endpoint, output paths ---
    Cli("annotate-seed-missing", annotate(seed="{tmp}/none.jsonl"), "No such data file"),
    Cli("annotate-seed-is-a-directory", annotate(seed="{tmp}"), "is a directory"),
    seeded("annotate-seed-bad-json", "s.jsonl:2: not valid JSON", SEED_ROW, "{oops"),
    Cli(
        "annotate-seed-not-utf8", annotate(seed="{tmp}/s.jsonl"), "s.jsonl:1: not UTF-8", (("s.jsonl", b"\xff\xfe{"),)
    ),
    seeded("annotate-seed-empty", "`seed_rows` is empty"),
    seeded("annotate-seed-missing-column", "missing column(s) answer", {"id": 1, "question": "q"}),
    seeded("annotate-steps-a-string", "`steps` must be a list of texts", {**SEED_ROW, "steps": "Add 2 and 2."}),
    seeded("annotate-steps-empty", "`steps` is empty", {**SEED_ROW, "steps": []}),
    seeded("annotate-steps-not-texts", "`steps` item(s) [0, 1] are not", {**SEED_ROW, "steps": [2, " "]}),
    seeded("annotate-cot-empty", "`cot` is empty", {**{k: v for k, v in SEED_ROW.items() if k != "steps"}, "cot": ""}),
    seeded("annotate-question-null", "`question` must be a non-empty text", {**SEED_ROW, "question": None}),
    seeded("annotate-answer-null", "`answer` is null", {**SEED_ROW, "answer": None}),
    seeded("annotate-id-a-list", "`id` must be a string or an integer", {**SEED_ROW, "id": [1]}),
    seeded("annotate-id-twice", "appears twice with different content", SEED_ROW, {**SEED_ROW, "answer": "5"}),
    Cli(
        "annotate-max-retries-negative",
        annotate("--max_retries", "-1"),
        "`max_retries` must be a number of at least 0",
    ),
    Cli("annotate-concurrency-zero", annotate("--concurrency", "0"), "`concurrency` must be a number of at least 1"),
    Cli("annotate-timeout-zero", annotate("--timeout", "0"), "`timeout` must be a positive number"),
    Cli("annotate-timeout-nan", annotate("--timeout", "nan"), "`timeout` must be a positive number"),
    Cli("annotate-temperature-out-of-range", annotate("--temperature", "3"), "`temperature` must be a number from 0"),
    Cli("annotate-unknown-language", annotate(languages=("zz",)), "Unknown language code 'zz'"),
    Cli("annotate-only-english", annotate(languages=("en",)), "no language besides English"),
    Cli("annotate-bad-segmentation", annotate("--segmentation", "words"), "invalid choice: 'words'"),
    Cli("annotate-url-not-http", annotate("--base_url", "localhost:8000"), "`base_url` must be an http(s) URL"),
    Cli("annotate-plain-http-remote", annotate("--base_url", "http://example.com/v1"), "is plain http to example.com"),
    Cli("annotate-url-credentials", annotate("--base_url", "http://u:p@127.0.0.1/v1"), "carries credentials"),
    Cli("annotate-key-as-flag", annotate("--api_key", "sk-abc"), "`--api_key` is not accepted"),
    Cli("annotate-key-variable-unset", annotate("--api_key_env", "SLAM_TEST_NO_SUCH_VARIABLE"), "is not set"),
    seeded("annotate-output-is-the-seed", "is the seed file itself", SEED_ROW, extra=("--output", "{tmp}/s.jsonl")),
    Cli("annotate-output-is-a-directory", annotate("--output", "{tmp}"), "is a directory"),
    Cli("annotate-cache-is-the-output", annotate("--cache", "{tmp}/out.jsonl"), "are the same file"),
    # --- slam l2-build ---
    Cli(
        "l2-source-escapes", l2(source="../../escape"), "must be a plain name", (("rows.jsonl", jsonl(PARALLEL_ROW)),)
    ),
    Cli("l2-source-with-a-slash", l2(source="a/b"), "must be a plain name", (("rows.jsonl", jsonl(PARALLEL_ROW)),)),
    Cli("l2-data-missing", l2(data="{tmp}/none.jsonl"), "No such data file"),
    Cli("l2-data-empty", l2(), "the file(s) hold no rows", (("rows.jsonl", ""),)),
    Cli("l2-data-bad-json", l2(), "rows.jsonl:1: not valid JSON", (("rows.jsonl", "{oops\n"),)),
    Cli(
        "l2-output-dir-is-a-file",
        l2(),
        "is a file; give a folder",
        (("rows.jsonl", jsonl(PARALLEL_ROW)), ("sets", "")),
    ),
    Cli(
        "l2-unknown-language", l2("--languages", "zz"), "Unknown language code", (("rows.jsonl", jsonl(PARALLEL_ROW)),)
    ),
    Cli(
        "l2-nothing-valid", l2(), "No valid parallel example", (("rows.jsonl", jsonl({**PARALLEL_ROW, "steps": []})),)
    ),
    # --- slam demo (checked before any model loads) ---
    Cli(
        "demo-no-english", ("demo", "--model", "tiny:llama", "--languages", "es", "zh"), "--languages must include en"
    ),
    Cli("demo-one-language", ("demo", "--model", "tiny:llama", "--languages", "en"), "at least 2 language(s)"),
    Cli("demo-zero-steps", ("demo", "--model", "tiny:llama", "--max_steps", "0"), "--max_steps must be at least 1"),
    Cli(
        "demo-rate-zero", ("demo", "--model", "tiny:llama", "--learning_rate", "0"), "--learning_rate must be positive"
    ),
    Cli(
        "demo-merged-exists",
        ("demo", "--model", "tiny:llama", "--output_dir", "{tmp}/demo"),
        "exists from an earlier run",
        (("demo/merged/config.json", "{}"),),
    ),
    # --- slam merge ---
    Cli("merge-delta-missing", merge(delta="{tmp}/none"), "No FFN delta at"),
    Cli("merge-delta-missing-repo-like", merge(delta="org/no-such-delta"), "could not be downloaded"),
    Cli(
        "merge-delta-a-lone-safetensors",
        merge(delta="{tmp}/d.safetensors"),
        "is a file, but",
        (("d.safetensors", ""),),
    ),
    Cli("merge-delta-not-a-delta", merge(delta="{tmp}"), "has no slam_delta.json"),
    Cli(
        "merge-delta-nested",
        merge(delta="{tmp}"),
        "holds one: pass",
        prepare=lambda tmp: (tmp / "delta").rename(tmp / "ffn_delta"),
    ),
    Cli(
        "merge-delta-bad-json",
        merge(),
        "is not valid JSON",
        prepare=lambda tmp: (tmp / "delta" / "slam_delta.json").write_text("{"),
    ),
    Cli(
        "merge-delta-old-format",
        merge(),
        "written by an older slam-trainer",
        prepare=lambda tmp: (tmp / "delta" / "slam_delta.json").write_text(
            json.dumps({**json.loads((tmp / "delta" / "slam_delta.json").read_text()), "format_version": 1})
        ),
    ),
    *[
        Cli(f"merge-delta-{name}", merge(), expected, prepare=lambda tmp, d=damage: d(tmp / "delta"))
        for name, damage, expected in DAMAGES
    ],
    Cli("merge-base-missing", ("merge", "./no-such-base", "{delta}", "{tmp}/merged"), "no such model directory"),
    Cli("merge-out-is-a-file", merge(out="{tmp}/o.txt"), "is a file; choose a new directory", (("o.txt", "x"),)),
    Cli("merge-out-not-empty", merge(out="{tmp}"), "exists and is not empty"),
    # --- slam train (the dataset file and resuming; the rest is TRL's parser) ---
    Cli("train-dataset-empty", train(), "train.jsonl is empty", (("train.jsonl", "\n"),)),
    Cli(
        "train-dataset-bad-line",
        train(),
        "train.jsonl:2: not valid JSON",
        (("train.jsonl", '{"text": "a"}\n{"text": \n'),),
    ),
    Cli(
        "train-dataset-bad-json-array",
        train(data="{tmp}/t.json"),
        "t.json:2: not valid JSON",
        (("t.json", '[{"text": "a"},\n{]'),),
    ),
    Cli(
        "train-resume-true-nothing-to-resume",
        train("--resume_from_checkpoint", "true"),
        "holds no complete checkpoint",
        (("train.jsonl", jsonl({"text": "a"})),),
    ),
    Cli(
        "train-resume-incomplete-path",
        train("--resume_from_checkpoint", "{tmp}/run/checkpoint-4"),
        "no trainer_state.json: its save was interrupted",
        (("train.jsonl", jsonl({"text": "a"})), ("run/checkpoint-4/model.safetensors", b"")),
    ),
]


def endpoint(**overrides):
    return public("slam_trainer.l2.annotation", "Endpoint")(**{"base_url": CLOSED, "model": "m", **overrides})


def run_annotate(tmp, rows=(SEED_ROW,), **kwargs):
    settings = {"endpoint": endpoint(), "cache_path": tmp / "c.jsonl", "max_retries": 0, "progress": False, **kwargs}
    return public("slam_trainer.l2.annotation", "annotate")(
        list(rows) if isinstance(rows, tuple) else rows, ["zh"], **settings
    )


def tiny_frozen():
    from slam_trainer.freezing import freeze_except_ffn
    from slam_trainer.tiny import build_tiny_model

    model = build_tiny_model("llama")
    freeze_except_ffn(model, [0])
    return model


def write(tmp, name, data):
    (tmp / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    return tmp / name


API_CASES = [
    # --- slam_trainer.l2.annotation: Endpoint, annotate, parse_translation, AnnotationCache ---
    Api("endpoint-url-not-text", lambda m, t: endpoint(base_url=8000), ConfigError, "`base_url` must be a string"),
    Api(
        "endpoint-plain-http-remote",
        lambda m, t: endpoint(base_url="http://10.1.2.3/v1"),
        ValueError,
        "allow_insecure_http",
    ),
    Api("endpoint-model-empty", lambda m, t: endpoint(model=" "), ValueError, "`model` must be the model name"),
    Api("endpoint-timeout-negative", lambda m, t: endpoint(timeout=-1), ValueError, "`timeout` must be a positive"),
    Api("endpoint-temperature-nan", lambda m, t: endpoint(temperature=float("nan")), ValueError, "`temperature`"),
    Api("endpoint-key-not-text", lambda m, t: endpoint(api_key=123), ConfigError, "`api_key` must be a string"),
    Api("endpoint-key-with-newline", lambda m, t: endpoint(api_key="sk-a\nX-Evil: 1"), ValueError, "whitespace"),
    Api(
        "annotate-endpoint-a-string",
        lambda m, t: run_annotate(t, endpoint=CLOSED),
        ConfigError,
        "`endpoint` must be an `Endpoint`",
    ),
    Api("annotate-max-retries-negative", lambda m, t: run_annotate(t, max_retries=-1), ValueError, "`max_retries`"),
    Api(
        "annotate-invalid-retries-negative",
        lambda m, t: run_annotate(t, invalid_retries=-1),
        ValueError,
        "`invalid_retries`",
    ),
    Api(
        "annotate-concurrency-fraction",
        lambda m, t: run_annotate(t, concurrency=1.5),
        ValueError,
        "`concurrency` must be an integer",
    ),
    Api("annotate-backoff-negative", lambda m, t: run_annotate(t, backoff=-1), ValueError, "`backoff`"),
    Api(
        "annotate-segmentation-unknown",
        lambda m, t: run_annotate(t, segmentation="words"),
        ValueError,
        "`segmentation` must be one of",
    ),
    Api("annotate-rows-a-string", lambda m, t: run_annotate(t, rows="q1"), DataError, "`seed_rows` must be a list"),
    Api("annotate-row-not-a-dict", lambda m, t: run_annotate(t, rows=("q1",)), DataError, "Seed row 1 must be a dict"),
    Api("annotate-no-rows", lambda m, t: run_annotate(t, rows=()), ValueError, "`seed_rows` is empty"),
    Api(
        "parse-translation-content-null",
        lambda m, t: public("slam_trainer.l2.annotation", "parse_translation")(None, 2),
        Exception,  # `InvalidReplyError`, an `EndpointError`: not looked up here, so that this table imports anywhere
        "reply has no text content",
    ),
    Api(
        "cache-is-a-directory",
        lambda m, t: public("slam_trainer.l2.annotation", "AnnotationCache")(t),
        IsADirectoryError,
        "Is a directory",
    ),
    # --- slam_trainer.data.loaders ---
    Api(
        "load-rows-directory",
        lambda m, t: public("slam_trainer.data.loaders", "load_jsonl_rows")(t),
        IsADirectoryError,
        "is a directory",
    ),
    Api(
        "load-rows-not-utf8",
        lambda m, t: public("slam_trainer.data.loaders", "load_jsonl_rows")(write(t, "x.jsonl", b'{"id": "\xe9"}\n')),
        ValueError,
        "x.jsonl:1: not UTF-8",
    ),
    Api(
        "check-data-file-empty",
        lambda m, t: public("slam_trainer.data.loaders", "check_data_file")(write(t, "x.csv", "")),
        ValueError,
        "is empty",
    ),
    # --- slam_trainer.delta ---
    Api(
        "save-delta-not-a-model",
        lambda m, t: public("slam_trainer.delta", "save_ffn_delta")("model", str(t)),
        ConfigError,
        "must be a model or",
    ),
    Api(
        "save-delta-path-a-file",
        lambda m, t: public("slam_trainer.delta", "save_ffn_delta")(tiny_frozen(), str(write(t, "f", "x"))),
        NotADirectoryError,
        "is a file",
    ),
    Api(
        "save-delta-path-a-number",
        lambda m, t: public("slam_trainer.delta", "save_ffn_delta")(tiny_frozen(), 3),
        ConfigError,
        "`path` must be a directory path",
    ),
    Api(
        "load-delta-not-a-model",
        lambda m, t: public("slam_trainer.delta", "load_ffn_delta")("model", m["delta"]),
        ConfigError,
        "`base_model` must be a model",
    ),
    Api(
        "load-delta-check-base-text",
        lambda m, t: public("slam_trainer.delta", "load_ffn_delta")(tiny_frozen(), m["delta"], check_base="no"),
        ConfigError,
        "`check_base` must be True or False",
    ),
    Api(
        "load-delta-path-a-number",
        lambda m, t: public("slam_trainer.delta", "load_ffn_delta")(tiny_frozen(), 3),
        ConfigError,
        "must be a string or path",
    ),
    Api(
        "load-delta-missing-path",
        lambda m, t: public("slam_trainer.delta", "load_ffn_delta")(tiny_frozen(), str(t / "none")),
        FileNotFoundError,
        "No FFN delta at",
    ),
    # --- slam_trainer.checkpoints ---
    Api(
        "resume-true-nothing-there",
        lambda m, t: public("slam_trainer.checkpoints", "resolve_resume_checkpoint")(True, str(t)),
        ValueError,
        "holds no complete checkpoint",
    ),
    Api(
        "resume-a-number",
        lambda m, t: public("slam_trainer.checkpoints", "resolve_resume_checkpoint")(3, str(t)),
        ResumeError,
        "must be a bool or a checkpoint path",
    ),
]


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    """A saved tiny Llama base, a valid delta of it, and a valid annotation seed file."""
    from slam_trainer.delta import save_ffn_delta
    from slam_trainer.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("material")
    build_tiny_model("llama").save_pretrained(root / "base")
    model = tiny_frozen()
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight += 1
    save_ffn_delta(model, str(root / "delta"))
    (root / "seed.jsonl").write_text(jsonl(SEED_ROW), encoding="utf-8")
    return {"base": str(root / "base"), "delta": str(root / "delta"), "seed": str(root / "seed.jsonl")}


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda case: case.id)
def test_cli_bad_input_is_one_line_and_exit_status_2(case, material, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    for name, data in case.files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    places = {
        "tmp": str(tmp_path),
        "seed": material["seed"],
        "base": material["base"],
        "delta": str(tmp_path / "delta"),
    }
    if any("{delta}" in arg for arg in case.argv) or case.prepare is not None:
        shutil.copytree(material["delta"], tmp_path / "delta")
    if case.prepare is not None:
        case.prepare(tmp_path)
    status = main([arg.format(**places) for arg in case.argv])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("slam")]
    assert status == 2 and "Traceback" not in err, err
    assert len(errors) == 1 and ": error: " in errors[0], err
    assert case.expected in errors[0]


@pytest.mark.parametrize("case", API_CASES, ids=lambda case: case.id)
def test_api_bad_input_raises_a_clear_error(case, material, tmp_path):
    with pytest.raises(case.error) as info:
        case.call(material, tmp_path)
    assert case.expected in str(info.value)


@pytest.mark.parametrize("table", [CLI_CASES, API_CASES], ids=["cli", "api"])
def test_every_case_id_is_unique(table):
    ids = [case.id for case in table]
    assert len(ids) == len(set(ids))
