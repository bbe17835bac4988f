"""`slam identify`: flags, files written, table printed, bad input as one-line errors before anything loads."""

import argparse
import inspect
import json
import os
import shutil

import pytest

from slam_trainer.cli import identify as identify_cli
from slam_trainer.cli.main import main
from slam_trainer.config import SelectiveFFNConfig
from slam_trainer.probe.auto import resolve_auto_layers
from slam_trainer.probe.identify import identify_language_layers
from slam_trainer.probe.report import JSON_NAME, PNG_NAME
from slam_trainer.probe.settings import DEFAULTS
from slam_trainer.tiny import build_tiny_tokenizer
from tests.ground_truth import DESIGNED_LAYERS, ground_truth_model, ground_truth_texts


MGSM = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data", "mgsm", "mgsm.jsonl"
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("truth")
    tokenizer = build_tiny_tokenizer()
    ground_truth_model(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "parallel.jsonl"
    rows = [
        {"id": i, "lang": lang, "text": text}
        for lang, texts in ground_truth_texts().items()
        for i, text in enumerate(texts)
    ]
    path.write_text("\n".join(json.dumps(row) for row in rows))
    return str(path)


def test_identify_writes_report_and_prints_table(model_dir, data_file, tmp_path, capsys):
    out = tmp_path / "report"
    argv = [
        "identify",
        "--model",
        model_dir,
        "--data",
        data_file,
        "--num_layers",
        "2",
        "--top_rate",
        "0.05",
        "--score",
        "overlap",
        "--region",
        "all",
        "--output_dir",
        str(out),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "| layer | lape | overlap | activated_msd | overlap_msd | picked | chosen |" in printed.out
    assert f"Chosen by `overlap` among all layers: {DESIGNED_LAYERS}. Stable" in printed.out
    assert "Probing FFN neurons" in printed.err  # the progress bar
    # how to pass the layers on, in a form `slam train` parses back to the same layers
    from slam_trainer.config import parse_layers

    advice = printed.out.split("To train these layers: slam train --slam_layers ")[1].split()[0]
    assert parse_layers(advice) == DESIGNED_LAYERS
    report = json.loads((out / JSON_NAME).read_text())
    assert report["chosen_layers"] == DESIGNED_LAYERS and report["score"] == "overlap"
    assert (out / PNG_NAME).read_bytes()[:4] == b"\x89PNG"


def test_identify_languages_and_max_items(model_dir, data_file, tmp_path):
    out = tmp_path / "report"
    argv = [
        "identify",
        "--model",
        model_dir,
        "--data",
        data_file,
        "--num_layers",
        "1",
        "--languages",
        "zh",
        "th",
        "--max_items",
        "3",
        "--output_dir",
        str(out),
    ]
    assert main(argv) == 0
    report = json.loads((out / JSON_NAME).read_text())
    assert report["languages"] == ["zh", "th"] and report["settings"]["items"] == 3


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--num_layers", "7", "--region", "all"], "`num_layers`=7 is more than the model's 6 decoder layers"),
        (["--num_layers", "4"], "lower half of the model (3 of 6 layers)"),
        (["--languages", "en", "fr"], "`languages` asks for ['fr']"),
        (["--max_items", "0"], "--max_items must be at least 1"),
    ],
)
def test_identify_bad_input(model_dir, data_file, tmp_path, capsys, extra, message):
    argv = ["identify", "--model", model_dir, "--data", data_file, "--output_dir", str(tmp_path)] + extra
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1
    assert not (tmp_path / JSON_NAME).exists()


# Settings checked before the data, the tokenizer or the model is read: the model path does not even exist.
EARLY_CASES = [
    (["--top_rate", "0"], "`top_rate` must be in (0, 1], got 0.0"),
    (["--top_rate", "1.5"], "`top_rate` must be in (0, 1], got 1.5"),
    (["--top_rate", "nan"], "`top_rate` must be in (0, 1], got nan"),
    (["--activation_bar_ratio", "1"], "`activation_bar_ratio` must be in (0, 1), got 1.0"),
    (["--activation_bar_ratio", "0"], "`activation_bar_ratio` must be in (0, 1), got 0.0"),
    (["--batch_size", "0"], "`batch_size` must be an integer >= 1, got 0"),
    (["--max_length", "-5"], "`max_length` must be an integer >= 1, got -5"),
    (["--resamples", "-1"], "`resamples` must be an integer >= 0, got -1"),
    (["--num_layers", "0"], "`num_layers` must be an integer >= 1, got 0"),
    (["--max_items", "0"], "--max_items must be at least 1, got 0"),
    (["--output_dir", "/dev/null"], "`--output_dir` /dev/null is a file; give a folder"),
    (["--output_dir", "/dev/null/report"], "lies under /dev/null, which is a file"),
]


@pytest.mark.parametrize("extra, message", EARLY_CASES)
def test_identify_checks_settings_before_loading(tmp_path, capsys, extra, message):
    argv = ["identify", "--model", str(tmp_path / "no_model"), "--data", str(tmp_path / "no_data.jsonl")] + extra
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1
    assert "does not exist" not in error and "not a model directory" not in error


def test_cli_api_and_auto_mode_share_their_defaults():
    """One source of defaults (`probe.settings.DEFAULTS`) for the command line, the API and auto mode."""
    subparsers = argparse.ArgumentParser().add_subparsers()
    parser = identify_cli.make_parser(subparsers)
    api = inspect.signature(identify_language_layers).parameters
    for name, value in DEFAULTS.items():
        assert parser.get_default(name) == value == api[name].default, name
    assert inspect.signature(resolve_auto_layers).parameters["region"].default == DEFAULTS["region"]
    assert SelectiveFFNConfig.__dataclass_fields__["slam_probe_region"].default == DEFAULTS["region"] == "lower_half"
    assert SelectiveFFNConfig.__dataclass_fields__["slam_num_layers"].default == DEFAULTS["num_layers"]


def test_identify_missing_files(model_dir, tmp_path, capsys):
    assert main(["identify", "--model", model_dir, "--data", str(tmp_path / "none.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["identify", "--model", str(tmp_path / "no_model")]) == 2
    assert "no such folder, and not a Hub id" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(MGSM), reason="MGSM not found at ../shared/data/mgsm/mgsm.jsonl")
def test_identify_reads_mgsm(model_dir, tmp_path):
    # identify caps --max_length at the model's window: give this RoPE model one that holds the longest MGSM item
    long_window = tmp_path / "model"
    shutil.copytree(model_dir, long_window)
    config = json.loads((long_window / "config.json").read_text())
    (long_window / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 4096}))
    out = tmp_path / "mgsm"
    argv = [
        "identify",
        "--model",
        str(long_window),
        "--data",
        MGSM,
        "--max_items",
        "6",
        "--num_layers",
        "2",
        "--max_length",
        "4096",  # the byte-level tokenizer needs up to ~3 tokens per Telugu character
        "--output_dir",
        str(out),
    ]
    assert main(argv) == 0
    report = json.loads((out / JSON_NAME).read_text())
    assert len(report["languages"]) == 11 and report["settings"]["items"] == 6 and report["pivot"] == "en"


def test_items_longer_than_the_context_window_are_dropped_not_a_crash(tmp_path, capsys, caplog):
    """GPT-2 has 1,024 positions; an item of ~1,500 tokens under the default --max_length (2,048) used to reach the
    forward pass and fail there (IndexError). --max_length is lowered to the window, with a warning."""
    from transformers.utils import logging as hf_logging

    from slam_trainer.tiny import build_tiny_model

    model = tmp_path / "gpt2"
    build_tiny_model("gpt2").save_pretrained(model)
    build_tiny_tokenizer().save_pretrained(model)
    rows = [{"id": 0, "lang": lang, "text": f"{lang} word " * 200} for lang in ("en", "zh")]  # ~1,600 tokens
    rows += [{"id": i, "lang": lang, "text": f"{lang} short item {i}"} for i in range(1, 6) for lang in ("en", "zh")]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    hf_logging.enable_propagation()
    try:
        argv = ["identify", "--model", str(model), "--data", str(data), "--num_layers", "1", "--resamples", "0"]
        assert main([*argv, "--output_dir", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    finally:
        hf_logging.disable_propagation()
    assert "longer than the model's context window of 1024 tokens" in caplog.text
    report = json.loads((tmp_path / "out" / JSON_NAME).read_text())
    assert report["settings"]["items"] == 5  # the long item dropped from both languages
