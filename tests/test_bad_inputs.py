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
from pathlib import Path

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
    early: bool = False  # must fail before any model weights load (loading is refused in the row)


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


def merge(*extra, delta="{delta}", out="{tmp}/merged", base="{base}"):
    return ("merge", base, delta, out, *extra)


def tiny_folder(architecture, folder, **overrides):
    from slam_trainer.tiny import build_tiny_model

    build_tiny_model(architecture, **overrides).save_pretrained(folder)


def delta_of_layer(layer, folder):
    """A delta of a tiny Llama's FFN in `layer` only."""
    from slam_trainer.delta import save_ffn_delta
    from slam_trainer.freezing import freeze_except_ffn
    from slam_trainer.tiny import build_tiny_model

    model = build_tiny_model("llama")
    freeze_except_ffn(model, [layer])
    save_ffn_delta(model, str(folder))


class _Payload:
    """What a poisoned pickle runs when loaded without `weights_only`: here, nothing harmful (torch must refuse it)."""

    def __reduce__(self):
        import os

        return (os.getcwd, ())


def poisoned_model(folder):
    """A saved tiny Llama whose weights are a pickle holding a call instead of tensors."""
    tiny_folder("llama", folder)
    (folder / "model.safetensors").unlink()
    torch.save({"model.embed_tokens.weight": _Payload()}, folder / "pytorch_model.bin")


def poisoned_checkpoint(folder):
    """A checkpoint folder that looks complete, with a poisoned model file."""
    poisoned_model(folder)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 1, "log_history": []}))


def train(*extra, data="{tmp}/train.jsonl", model="tiny:llama"):
    argv = ("train", "--model_name_or_path", model, "--output_dir", "{tmp}/run", "--dataset_name", data)
    return (*argv, "--max_steps", "1", "--use_cpu", "true", "--bf16", "false", "--report_to", "none", *extra)


ALIAS_BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n" for previous, name in zip("abcdefgh", "bcdefghi")
)  # 9**9 values once expanded, from 350 bytes

MIX_ROW = {"id": 1, "lang": "en", "question": "What is 2 + 2?", "answer": "4", "cot": "2 + 2 = 4."}
PARALLEL_ROW = {"id": 1, "lang": "en", "question": "q", "answer": "1", "steps": ["s"]}

CLI_CASES = [
    # --- the CLI as a whole: parsing, --config, expected failure types ---
    Cli("missing-required-option", ("annotate",), "the following arguments are required: --seed"),
    Cli("unknown-command", ("bogus",), "invalid choice: 'bogus'"),
    Cli("unrecognized-argument", merge("--bogus"), "unknown option(s) --bogus; see `slam merge --help`"),
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
    Cli(
        "config-duplicate-key",
        annotate("--config", "{tmp}/c.yaml"),
        "duplicate key 'concurrency'",
        (("c.yaml", "concurrency: 2\nconcurrency: 4\n"),),
    ),
    Cli(
        "train-config-duplicate-key",
        train("--config", "{tmp}/c.yaml"),
        "duplicate key 'learning_rate'",
        (("c.yaml", "learning_rate: 1.0e-4\nlearning_rate: 1.0e-5\n"),),
    ),
    Cli("config-alias-bomb", annotate("--config", "{tmp}/c.yaml"), "expand to more than", (("c.yaml", ALIAS_BOMB),)),
    Cli(
        "train-config-alias-bomb", train("--config", "{tmp}/c.yaml"), "expand to more than", (("c.yaml", ALIAS_BOMB),)
    ),
    Cli(
        "config-recursive-alias",
        annotate("--config", "{tmp}/c.yaml"),
        "refers to the node that holds it",
        (("c.yaml", "seed: &a [*a]\n"),),
    ),
    Cli(
        "config-list-for-a-scalar-is-cut",
        annotate("--config", "{tmp}/c.yaml"),
        "`seed` takes a single value, got ['xxxxxxxxxx', ",
        (("c.yaml", "seed: [" + ", ".join(["xxxxxxxxxx"] * 500) + "]\n"),),
    ),
    Cli(
        "train-config-list-for-a-scalar",
        train("--config", "{tmp}/c.yaml"),
        "`learning_rate` takes a single value, got a list [0.0001, 2e-05]",
        (("c.yaml", "learning_rate: [1.0e-4, 2.0e-5]\n"),),
    ),
    Cli(
        "train-config-mapping-for-a-scalar",
        train("--config", "{tmp}/c.yaml"),
        "`gradient_accumulation_steps` takes a single value, got a mapping",
        (("c.yaml", "gradient_accumulation_steps: {a: 1}\n"),),
    ),
    Cli("config-not-utf8", annotate("--config", "{tmp}/c.yaml"), "not UTF-8", (("c.yaml", b"seed: \xff\xfe\n"),)),
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
        "l2-language-not-in-the-data",
        l2("--languages", "en", "fr"),
        "`--languages` asks for fr, but no row is in it: the data holds en",
        (("rows.jsonl", jsonl(PARALLEL_ROW)),),
    ),
    Cli(
        "l2-steps-a-string",
        l2(),
        "`steps` must be a list of texts, got a string",
        (("rows.jsonl", jsonl({**PARALLEL_ROW, "steps": "one long step"})),),
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
    Cli(
        "merge-base-another-architecture",
        merge(base="{tmp}/gpt2"),
        "trained on a LlamaForCausalLM (an unnamed model), but `base` ",
        prepare=lambda tmp: tiny_folder("gpt2", tmp / "gpt2"),
        early=True,
    ),
    Cli(
        "merge-base-too-shallow",
        merge(base="{tmp}/shallow", delta="{tmp}/delta3"),
        "The delta holds layer 3 but `base` ",
        prepare=lambda tmp: (tiny_folder("llama", tmp / "shallow", num_layers=2), delta_of_layer(3, tmp / "delta3")),
        early=True,
    ),
    Cli(
        "merge-base-weights-poisoned",
        merge(base="{tmp}/poisoned"),
        "a weights file holds code or objects other than tensors",
        prepare=lambda tmp: poisoned_model(tmp / "poisoned"),
    ),
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
        "train-dataset-latin1-csv",
        train(data="{tmp}/t.csv"),
        "t.csv:3: not UTF-8 text (byte 0xe9",
        (("t.csv", "prompt,completion\nWhat is 2+2?,4\nCaf\xe9 prices?,5\n".encode("latin-1")),),
    ),
    Cli("train-layers-absurd-range", train("--slam_layers", "0-10000000000"), "beyond 100,000"),
    Cli(
        "train-eval-on-a-file-without-test-split",
        train("--eval_strategy", "steps"),
        "has no split 'test'",
        (("train.jsonl", '{"prompt": "a", "completion": "b"}\n'),),
        early=True,
    ),
    Cli(
        "train-eval-share-out-of-range",
        train("--eval_share", "1.5"),
        "`eval_share` must be between 0 and 1",
        early=True,
    ),
    Cli(
        "train-eval-share-holds-out-no-id",
        train("--eval_strategy", "steps", "--synthetic_problems", "2", data="synthetic"),
        "`eval_share` 0.1 of 2 problem ids holds out 0",
        early=True,
    ),
    Cli("train-dataset-streaming", train("--dataset_streaming", "true"), "`dataset_streaming`", early=True),
    Cli("train-extra-trainable-bad-regex", train("--slam_extra_trainable", "("), "not a valid one"),
    Cli(
        "train-ffn-modules-bad-json", train("--slam_ffn_modules", "{{bad json"), "`slam_ffn_modules` is not valid JSON"
    ),
    Cli(
        "train-full-with-slam-layers",
        train("--training", "full", "--slam_layers", "0-1"),
        "`--training full` trains every parameter, so --slam_layers",
        (("train.jsonl", jsonl({"text": "a"})),),
        early=True,
    ),
    Cli(
        "train-full-with-save-delta",
        train("--training", "full", "--slam_save_delta", "true"),
        "so --slam_save_delta (SLAM's choice of what trains) would not apply",
        (("train.jsonl", jsonl({"text": "a"})),),
        early=True,
    ),
    Cli(
        "train-full-with-extra-trainable",
        train("--training", "full", "--slam_extra_trainable", "embeddings", "lm_head"),
        "--slam_extra_trainable",
        (("train.jsonl", jsonl({"text": "a"})),),
        early=True,
    ),
    Cli(
        "train-layer-beyond-the-model",
        train("--slam_layers", "0,40"),
        "`slam_layers` has index 40 but tiny:llama has 4 decoder layers (valid: -4..3)",
        (("train.jsonl", jsonl({"text": "a"})),),
        early=True,
    ),
    Cli(
        "train-layer-beyond-a-saved-model",
        train("--slam_layers", "[0, 99999999999]", model="{base}"),
        "has index 99999999999 but",
        (("train.jsonl", jsonl({"text": "a"})),),
        early=True,
    ),
    Cli(
        "train-l2-mode-with-text-rows",
        train("--l2_mode", "mixed"),
        "`l2_mode` needs parallel rows",
        (("train.jsonl", jsonl({"text": "a"})),),
        early=True,
    ),
    Cli(
        "train-languages-not-in-the-data",
        train("--languages", "en", "fr"),
        "`--languages` asks for fr, but no row is in it: the data holds en, zh",
        (("train.jsonl", jsonl(MIX_ROW, {**MIX_ROW, "lang": "zh"})),),
        early=True,
    ),
    Cli(
        "train-duplicate-id-lang",
        train(),
        "rows 1 and 3 are both id 1 in language 'en'",
        (("train.jsonl", jsonl(MIX_ROW, {**MIX_ROW, "lang": "zh"}, {**MIX_ROW, "cot": "Other."})),),
        early=True,
    ),
    Cli(
        "train-float-option-given-text",
        train("--learning_rate", "fast"),
        "argument --learning_rate/--learning-rate: invalid float value: 'fast'",
        early=True,
    ),
    Cli(
        "train-model-weights-poisoned",
        train("--slam_layers", "0", model="{tmp}/poisoned"),
        "a weights file holds code or objects other than tensors, which torch refuses to load (it refused",
        (("train.jsonl", jsonl({"text": "a"})),),
        prepare=lambda tmp: poisoned_model(tmp / "poisoned"),
    ),
    Cli(
        "train-resume-checkpoint-poisoned",
        train("--resume_from_checkpoint", "{tmp}/run/checkpoint-1", "--max_steps", "2", "--slam_layers", "0"),
        "checkpoint-1: a file there holds code or objects other than tensors",
        (("train.jsonl", jsonl({"text": "a"})),),
        prepare=lambda tmp: poisoned_checkpoint(tmp / "run" / "checkpoint-1"),
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
    # --- the user's own words: typos get the closest valid name, non-Hub names never reach the Hub client ---
    Cli("flag-typo-suggests", ("identify", "--modle", "x"), "--modle (did you mean --model?)"),
    Cli(
        "config-key-typo-suggests",
        annotate("--config", "{tmp}/c.yaml"),
        "sead (did you mean seed?)",
        (("c.yaml", "sead: x"),),
    ),
    Cli(
        "train-config-key-typo-suggests",
        train("--config", "{tmp}/c.yaml"),
        "unknown option(s) max_step (did you mean max_steps?)",
        (("c.yaml", "max_step: 3\n"), ("train.jsonl", jsonl({"prompt": "a", "completion": "b"}))),
    ),
    Cli("train-flag-typo-suggests", train("--lerning_rate", "1"), "--lerning_rate (did you mean --learning_rate?)"),
    Cli("demo-short-name-typo", ("demo", "--model", "smollm2"), "did you mean smollm2-135m-instruct?"),
    Cli("identify-short-name-typo", ("identify", "--model", "gemma3"), "did you mean gemma3-270m?"),
    Cli(
        "train-short-name-typo",
        (
            "train",
            "--model_name_or_path",
            "smollm2-135m",
            "--output_dir",
            "{tmp}/run",
            "--dataset_name",
            "{tmp}/t.jsonl",
        )
        + ("--use_cpu", "true", "--bf16", "false", "--report_to", "none"),
        "--model_name_or_path smollm2-135m: no such folder and not a known short name; did you mean smollm2-135m-",
        (("t.jsonl", jsonl({"prompt": "a", "completion": "b"})),),
    ),
    Cli(
        "train-arrow-file-of-a-saved-dataset",
        train(data="{tmp}/set/data-00000-of-00001.arrow"),
        "pass the folder it lies in",
        (("set/state.json", "{}"), ("set/dataset_info.json", "{}"), ("set/data-00000-of-00001.arrow", b"")),
    ),
    Cli(
        "l2-on-invalid-raise-names-the-flag",
        l2("--on_invalid", "raise"),
        "(pass --on_invalid drop to leave them out)",
        (("rows.jsonl", jsonl(PARALLEL_ROW, {**PARALLEL_ROW, "id": 2, "steps": []})),),
    ),
    Cli(
        "annotate-no-key-for-a-remote-endpoint",
        annotate("--base_url", "https://api.openai.com/v1"),
        "no API key for api.openai.com: set the environment variable OPENAI_API_KEY",
    ),
    Cli(  # any set variable stands in for a key: the row must stop at the name lookup, before a request
        "annotate-host-not-found",
        annotate("--base_url", "https://no-such-host.invalid/v1", "--api_key_env", "HOME"),
        "the host no-such-host.invalid cannot be found",
    ),
    Cli(
        "eval-not-a-path-nor-hub-id",
        ("eval", "--model", "./no/such/", "--data", "{tmp}/d.jsonl"),
        "not a Hub id",
        (("d.jsonl", jsonl({"id": 1, "lang": "en", "question": "q", "answer": "1"})),),
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


PARALLEL_EXAMPLE = {
    "id": "q1",
    "question": {"en": "What is 2 + 2?", "zh": "二加二是多少？"},
    "steps": {"en": ["Add 2 and 2.", "It is 4."], "zh": ["二加二。", "是四。"]},
    "answer": "4",
}


def tagged_tokenizer():
    from slam_trainer.l2.tags import add_language_tokens
    from slam_trainer.tiny import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    add_language_tokens(tokenizer, None, ["en", "zh"])
    return tokenizer


def collator(**overrides):
    from slam_trainer.tiny import build_tiny_tokenizer

    return public("slam_trainer.l2.collator", "L2DataCollator")(build_tiny_tokenizer(), ["en", "zh"], **overrides)


def switch(**overrides):
    return public("slam_trainer.l2.decoding", "LanguageSwitchLogitsProcessor")(
        tagged_tokenizer(), ["en", "zh"], **overrides
    )


def build_parallel(rows, **kwargs):
    return public("slam_trainer.l2.parallel", "build_parallel_dataset")(rows, **kwargs)


def slam_mix(rows):
    return public("slam_trainer.data.slam_mix", "build_slam_training_set")(rows)


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
    Api(
        "endpoint-proxy-remote-for-plain-http",
        lambda m, t: endpoint(proxy="http://10.1.2.3:3128"),
        ValueError,
        "the proxy would read the key in clear",
    ),
    Api("endpoint-proxy-not-http", lambda m, t: endpoint(proxy="socks5://127.0.0.1:1080"), ValueError, "`proxy`"),
    Api("endpoint-key-not-ascii", lambda m, t: endpoint(api_key="sk-caf\u00e9-123"), ValueError, "non-ASCII"),
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
    # --- slam_trainer.l2.collator: L2DataCollator (refused at init or at the batch, never mid-training) ---
    Api("collator-max-length-text", lambda m, t: collator(max_length="96"), ValueError, "`max_length` must be a"),
    Api("collator-max-length-float", lambda m, t: collator(max_length=96.5), ValueError, "`max_length` must be a"),
    Api("collator-pad-multiple-float", lambda m, t: collator(pad_to_multiple_of=8.0), ValueError, "positive integer"),
    Api("collator-pad-multiple-bool", lambda m, t: collator(pad_to_multiple_of=True), ValueError, "positive integer"),
    Api("collator-seed-text", lambda m, t: collator(seed="1"), ValueError, "`seed` must be an integer"),
    Api("collator-ratio-text", lambda m, t: collator(mixed_ratio="0.5"), ValueError, "`mixed_ratio` must be a number"),
    Api(
        "collator-template-unknown-field",
        lambda m, t: collator(prompt_template="{question} in {lang}"),
        ValueError,
        "`prompt_template` has field(s) {lang}",
    ),
    Api(
        "collator-template-positional-field",
        lambda m, t: collator(prompt_template="{question} {}"),
        ValueError,
        "`prompt_template` has field(s)",
    ),
    Api(
        "collator-template-broken-brace",
        lambda m, t: collator(prompt_template="{question"),
        ValueError,
        "not a valid format string",
    ),
    Api("collator-tag-format-unknown-field", lambda m, t: collator(tag_format="<{lang}{x}>"), ValueError, "{x}"),
    Api("collator-empty-batch", lambda m, t: collator()([]), ValueError, "got an empty batch"),
    Api(
        "collator-steps-a-string",
        lambda m, t: collator()([{**PARALLEL_EXAMPLE, "steps": {"en": "Add 2 and 2.", "zh": "加。"}}]),
        ValueError,
        "must be a list of texts, got a string",
    ),
    Api(
        "collator-step-whitespace",
        lambda m, t: collator()([{**PARALLEL_EXAMPLE, "steps": {"en": ["Add.", " \n"], "zh": ["加。", "四。"]}}]),
        ValueError,
        "step(s) [1] in 'en' are empty",
    ),
    Api(
        "collator-question-blank",
        lambda m, t: collator()([{**PARALLEL_EXAMPLE, "question": {"en": " ", "zh": "问"}}]),
        ValueError,
        "the question in 'en' is not a non-empty text",
    ),
    # --- slam_trainer.l2.parallel and the SLAM mix: steps, cot, duplicate (id, lang), absent languages ---
    Api(
        "parallel-steps-a-string",
        lambda m, t: build_parallel([{**PARALLEL_ROW, "steps": "Add 2 and 2."}]),
        ValueError,
        "`steps` must be a list of texts, got a string",
    ),
    Api(
        "parallel-cot-not-text",
        lambda m, t: build_parallel([{**{k: v for k, v in PARALLEL_ROW.items() if k != "steps"}, "cot": 5}]),
        ValueError,
        "`cot` must be a text",
    ),
    Api(
        "parallel-duplicate-id-lang",
        lambda m, t: build_parallel([PARALLEL_ROW, {**PARALLEL_ROW, "answer": "2"}]),
        ValueError,
        "rows 1 and 2 are both id 1 in language 'en'",
    ),
    Api(
        "parallel-language-absent",
        lambda m, t: build_parallel([PARALLEL_ROW], languages=["en", "fr"]),
        ValueError,
        "`languages` asks for fr, but no row is in it: the data holds en",
    ),
    Api(
        "slam-mix-cot-whitespace",
        lambda m, t: slam_mix([{**MIX_ROW, "lang": "zh", "cot": " \n "}, MIX_ROW]),
        ValueError,
        "has no `cot` (or a blank one)",
    ),
    Api(
        "slam-mix-duplicate-id-lang",
        lambda m, t: slam_mix([MIX_ROW, {**MIX_ROW, "cot": "Other."}]),
        ValueError,
        "rows 1 and 2 are both id 1 in language 'en'",
    ),
    Api(
        "benchmark-duplicate-id-lang",
        lambda m, t: public("slam_trainer.evaluation.benchmark", "load_benchmark")(
            write(t, "b.jsonl", jsonl({**MIX_ROW, "answer": "4"}, {**MIX_ROW, "answer": "4"}))
        ),
        ValueError,
        "rows 1 and 2 are both id 1 in language 'en'",
    ),
    Api(
        "probe-duplicate-id-lang",
        lambda m, t: public("slam_trainer.probe.parallel", "load_parallel_texts")(
            [
                {"id": 1, "lang": "en", "text": "a"},
                {"id": 1, "lang": "zh", "text": "b"},
                {"id": 1, "lang": "en", "text": "c"},
            ]
        ),
        ValueError,
        "rows 1 and 3 are both id 1 in language 'en'",
    ),
    # --- slam_trainer.l2.decoding: LanguageSwitchLogitsProcessor ---
    Api("switch-alpha-none", lambda m, t: switch(alpha=None), ValueError, "`alpha` is a probability"),
    Api("switch-alpha-text", lambda m, t: switch(alpha="0.5"), ValueError, "`alpha` is a probability"),
    Api("switch-beta-text", lambda m, t: switch(beta="2"), ValueError, "`beta` is a logit shift size"),
    Api("switch-seed-float", lambda m, t: switch(seed=0.5), ValueError, "`seed` must be an integer"),
    Api(
        "switch-weights-a-string",
        lambda m, t: switch(policy="weighted", weights="1 1"),
        ValueError,
        "`weights` must be a list of numbers",
    ),
    Api(
        "switch-logits-narrower-than-tags",
        lambda m, t: switch()(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 8)),
        ValueError,
        "the model was not resized for the tags",
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
    # --- slam_trainer.precision (the policy is checked when the trainer is built, before training) ---
    Api(
        "trainable-dtype-unknown",
        lambda m, t: public("slam_trainer.config", "SelectiveFFNConfig")(
            str(t), use_cpu=True, bf16=False, slam_trainable_dtype="float64"
        ),
        ConfigError,
        "`slam_trainable_dtype` must be 'float32'",
    ),
    Api(
        "callback-trainable-dtype-unknown",
        lambda m, t: public("slam_trainer.callback", "SelectiveFFNCallback")([0], trainable_dtype="bf16"),
        ConfigError,
        "`trainable_dtype` must be 'float32'",
    ),
    Api(
        "bf16-model-without-autocast",
        lambda m, t: half_trainer(t, torch.bfloat16, bf16=False),
        ConfigError,
        "Set `bf16=True` (`--bf16 true`)",
    ),
    Api(
        "fp16-trained-tensors-under-fp16",
        lambda m, t: half_trainer(t, torch.float16, fp16=True, slam_trainable_dtype="model"),
        ConfigError,
        "the gradient scaler refuses float16 gradients",
    ),
    Api(
        "fsdp-half-trained-fused-tensor",
        lambda m, t: under_fsdp(lambda: fused_up_only_trainer(t)),
        ConfigError,
        "FSDP cannot train half of the fused tensor(s) model.layers.0.mlp.gate_up_proj.weight",
    ),
    Api(
        "fsdp-l2-tag-rows",
        lambda m, t: under_fsdp(lambda: tagged_trainer(t)),
        ConfigError,
        "SLAM does not train L² tag rows alone under FSDP",
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


def under_fsdp(call):
    """`call()` with the variable `accelerate launch` sets for an FSDP config (the process itself stays unsharded)."""
    import os

    os.environ["ACCELERATE_USE_FSDP"] = "true"
    try:
        return call()
    finally:
        del os.environ["ACCELERATE_USE_FSDP"]


def fused_up_only_trainer(tmp):
    """`Trainer` over a tiny Phi-3 (fused gate_up_proj) with a `SelectiveFFNCallback` training only `up` of layer 0."""
    from transformers import Trainer

    from slam_trainer.callback import SelectiveFFNCallback
    from slam_trainer.tiny import build_tiny_model
    from tests.conftest import cpu_config

    callback = SelectiveFFNCallback([0], ["up"])
    return Trainer(
        model=build_tiny_model("phi3"), args=cpu_config(tmp / "out", weight_decay=0.0), callbacks=[callback]
    )


def tagged_trainer(tmp):
    """`Trainer` over a tiny Llama with L² tags added and a `SelectiveFFNCallback`: the tag rows would train."""
    from transformers import Trainer

    from slam_trainer.callback import SelectiveFFNCallback
    from slam_trainer.l2.tags import add_language_tokens
    from slam_trainer.tiny import build_tiny_model, build_tiny_tokenizer
    from tests.conftest import cpu_config

    model = build_tiny_model()
    add_language_tokens(build_tiny_tokenizer(), model, ["en", "zh"])
    return Trainer(model=model, args=cpu_config(tmp / "out"), callbacks=[SelectiveFFNCallback([0])])


def half_trainer(tmp, dtype, **overrides):
    """A `SelectiveFFNTrainer` over a tiny Llama cast to `dtype`, on CPU, with `overrides` of `cpu_config`."""
    from datasets import Dataset

    from slam_trainer.tiny import build_tiny_model, build_tiny_tokenizer
    from slam_trainer.trainer import SelectiveFFNTrainer
    from tests.conftest import cpu_config

    model = build_tiny_model("llama").to(dtype)
    dataset = Dataset.from_dict({"prompt": ["1+2="], "completion": [" 3"]})
    args = cpu_config(tmp / "out", **overrides)
    return SelectiveFFNTrainer(model, args=args, train_dataset=dataset, processing_class=build_tiny_tokenizer())


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
    if case.early:

        def refuse(*args, **kwargs):
            raise AssertionError("model weights were loaded before the input was checked")

        monkeypatch.setattr("slam_trainer.loading._load_weights", refuse)
        monkeypatch.setattr("slam_trainer.tiny.build_tiny_model", refuse)
    status = main([arg.format(**places) for arg in case.argv])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("slam")]
    assert status == 2 and "Traceback" not in err, err
    assert len(errors) == 1 and ": error: " in errors[0], err
    if case.argv[0] in ("annotate", "l2-build"):  # nothing loads before these fail: the error is all there is
        assert [line for line in err.splitlines() if line.strip()] == errors, err
    assert case.expected in errors[0] and len(errors[0]) < 1_100  # a bounded line, never a whole file


@pytest.mark.parametrize("case", API_CASES, ids=lambda case: case.id)
def test_api_bad_input_raises_a_clear_error(case, material, tmp_path):
    with pytest.raises(case.error) as info:
        case.call(material, tmp_path)
    assert case.expected in str(info.value)


@pytest.mark.parametrize("table", [CLI_CASES, API_CASES], ids=["cli", "api"])
def test_every_case_id_is_unique(table):
    ids = [case.id for case in table]
    assert len(ids) == len(set(ids))


SUBPROCESS_CASES = [
    # (id, argv after `slam`, fragment): run as a real process, where warnings reach stderr (pytest captures them
    # in-process), so that nothing but the error line is printed
    ("train-empty-dataset", train(), "train.jsonl is empty"),
    ("train-key-as-argument", train("--api-key", "sk-Zq8xR2vLmN4pK7wY1cB3Qs9T"), "unknown option(s) --api-key; see"),
]


@pytest.mark.parametrize("argv, expected", [c[1:] for c in SUBPROCESS_CASES], ids=[c[0] for c in SUBPROCESS_CASES])
def test_a_slam_error_is_its_only_line_in_a_real_process(argv, expected, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "train.jsonl").write_text("\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PYTHONWARNINGS": "default"}
    command = [sys.executable, "-m", "slam_trainer.cli", *(arg.format(tmp=tmp_path) for arg in argv)]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in finished.stderr.splitlines() if line.strip()]
    assert finished.returncode == 2 and len(lines) == 1 and expected in lines[0], finished.stderr
    assert "Zq8xR2vLmN4pK7wY1cB3Qs9T" not in finished.stderr


def test_an_interrupted_merge_leaves_no_half_model_and_the_rerun_works(material, tmp_path, monkeypatch, capsys):
    """`slam merge` writes into a hidden folder renamed into place: stopped mid-save (here: after the first file),
    nothing is at OUT, and a rerun, even over a leftover hidden folder of a killed run, writes the whole model."""
    from transformers import AutoModelForCausalLM, PreTrainedModel

    out = tmp_path / "merged"
    original = PreTrainedModel.save_pretrained

    def save_then_die(self, folder, *args, **kwargs):
        (Path(folder) / "config.json").write_text("{}")
        raise KeyboardInterrupt  # as a kill mid-write, the rest never comes

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", save_then_die)
    assert main(["merge", material["base"], material["delta"], str(out)]) == 130
    assert not out.exists() and list(tmp_path.iterdir()) == []
    monkeypatch.setattr(PreTrainedModel, "save_pretrained", original)
    (tmp_path / ".merged.partial").mkdir()  # what a kill -9 leaves
    (tmp_path / ".merged.partial" / "config.json").write_text("{}")
    assert main(["merge", material["base"], material["delta"], str(out)]) == 0, capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["merged"]
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert float(merged.model.layers[0].mlp.up_proj.weight.mean()) != float(
        AutoModelForCausalLM.from_pretrained(material["base"]).model.layers[0].mlp.up_proj.weight.mean()
    )
