"""The `slam` command: every sub-command explains itself, recipes parse with the real parser, tiny recipes run."""

import subprocess
import sys
from pathlib import Path

import pytest

from slam_trainer.cli.main import COMMANDS, main
from slam_trainer.errors import ConfigError, DataError, MissingDependencyError


REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))
TINY_RECIPES = [path for path in RECIPES if path.stem.endswith("tiny_cpu")]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_sub_command_prints_help(command, capsys):
    # argparse formats help with %-interpolation: a literal % in help text would crash here.
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert len(capsys.readouterr().out) > 200


def test_top_level_help_lists_every_sub_command():
    result = subprocess.run(
        [sys.executable, "-m", "slam_trainer.cli", "--help"], capture_output=True, text=True, cwd=REPO, check=True
    )
    for command in COMMANDS:
        assert command in result.stdout


# Set on the command line for recipes written for GPUs, since this CPU-only machine cannot build bf16 configs.
CPU_FLAGS = {"bf16": False, "use_cpu": True}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: path.stem)
def test_every_recipe_parses_into_config_objects(recipe):
    import enum

    import yaml
    from trl import ModelConfig

    from slam_trainer.cli.train import make_parser
    from slam_trainer.config import SelectiveFFNConfig
    from slam_trainer.pipelines.training import TrainScriptArguments

    assert recipe.read_text().startswith("#"), "each recipe opens with a comment saying where its numbers come from"
    values = yaml.safe_load(recipe.read_text())
    flags = [item for key, value in CPU_FLAGS.items() for item in (f"--{key}", str(value).lower())]
    parsed = make_parser().parse_args_and_config(["--config", str(recipe), *flags])
    script_args, training_args, model_args = parsed
    assert isinstance(script_args, TrainScriptArguments) and isinstance(training_args, SelectiveFFNConfig)
    assert isinstance(model_args, ModelConfig)
    for key, expected in values.items():
        if key in CPU_FLAGS or key == "report_to":
            continue
        owner = next(obj for obj in parsed if hasattr(obj, key))
        actual = getattr(owner, key)
        actual = actual.value if isinstance(actual, enum.Enum) else actual
        assert actual == expected, f"{recipe.name}: {key} = {actual!r}, recipe says {expected!r}"


def test_unknown_recipe_key_fails(tmp_path, capsys):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text((REPO / "recipes" / "slam_tiny_cpu.yaml").read_text() + "slam_layrs: [0]\n")
    assert main(["train", "--config", str(recipe)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("slam train: error:") and "slam_layrs" in error[0]


@pytest.mark.parametrize("recipe", TINY_RECIPES, ids=lambda path: path.stem)
def test_tiny_recipes_run_end_to_end(recipe, tmp_path, capsys):
    import torch
    import yaml
    from safetensors.torch import load_file

    from slam_trainer.tiny import build_tiny_model

    assert main(["train", "--config", str(recipe), "--output_dir", str(tmp_path), "--max_steps", "2"]) == 0
    values = yaml.safe_load(recipe.read_text())
    trained = load_file(tmp_path / "model.safetensors")
    initial = build_tiny_model(values["model_name_or_path"].removeprefix("tiny:")).state_dict()
    expected = {f"model.layers.{i}.mlp.{p}_proj.weight" for i in values["slam_layers"] for p in ("up", "down")}
    if values.get("l2_special_tokens"):  # tags appended: of the embeddings and lm_head only their rows train
        expected |= {"model.embed_tokens.weight", "lm_head.weight"}
        for name in ("model.embed_tokens.weight", "lm_head.weight"):
            assert torch.equal(trained[name][: len(initial[name])], initial[name]), f"an old row of {name} moved"
    assert trained.keys() == initial.keys()
    changed = {
        name
        for name, tensor in trained.items()
        if tensor.shape != initial[name].shape or not torch.equal(tensor, initial[name])
    }
    assert changed == expected
    if values.get("slam_save_delta"):  # docs/distributed.md: written with save_strategy "no", and the path shown
        assert (tmp_path / "ffn_delta" / "slam_delta.json").is_file()
        assert f"to {tmp_path / 'ffn_delta'}." in capsys.readouterr().out


def test_bad_input_exits_with_one_line_reason(capsys):
    assert main(["eval", "--model", "nowhere", "--data", "missing.jsonl"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("slam eval: error:")


def test_a_yaml_config_supplies_required_options_and_flags_win(tmp_path, capsys):
    recipe = tmp_path / "eval.yaml"
    recipe.write_text(f"model: nowhere\ndata: {tmp_path / 'from_yaml.jsonl'}\n")
    assert main(["eval", "--config", str(recipe)]) == 2
    error = capsys.readouterr().err
    assert "required" not in error and "from_yaml.jsonl" in error  # `--model`/`--data` came from the file
    assert main(["eval", "--config", str(recipe), "--data", str(tmp_path / "from_flag.jsonl")]) == 2
    error = capsys.readouterr().err
    assert "from_flag.jsonl" in error and "from_yaml.jsonl" not in error


@pytest.mark.parametrize(
    "error",
    [
        MissingDependencyError("`merge` needs deepspeed; install it with: pip install slam-trainer[deepspeed]"),
        PermissionError(13, "Permission denied", "/data/out"),
        FileNotFoundError(2, "No such file or directory", "/data/in.jsonl"),
        ConfigError("`layers` must be a list of ints,\ngot 'x'"),
        DataError("data.jsonl:3: not valid JSON"),
        KeyboardInterrupt(),
    ],
    ids=lambda error: type(error).__name__,
)
def test_expected_failures_are_one_line_never_a_traceback(error, monkeypatch, capsys):
    import slam_trainer.cli.merge as merge

    def fail(args):
        raise error

    monkeypatch.setattr(merge, "main", fail)
    status = main(["merge", "base", "delta", "out"])
    lines = capsys.readouterr().err.splitlines()
    assert status == (130 if isinstance(error, KeyboardInterrupt) else 2) and len(lines) == 1
    assert lines[0].startswith("slam merge: ") and (str(error).split("\n")[0] in lines[0] or not str(error))


@pytest.mark.parametrize(
    "error",
    [
        ValueError("a bug's ValueError"),
        TypeError("unsupported operand type(s)"),
        KeyError("layers"),
        ImportError("cannot import name 'x' from partially initialized module"),
        OSError("[Errno 28] No space left on device"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_anything_else_is_a_bug_and_keeps_its_traceback(error, monkeypatch):
    """Only the package's errors (and a missing file, bad YAML, a missing package) are the user's to fix."""
    import slam_trainer.cli.merge as merge

    def fail(args):
        raise error

    monkeypatch.setattr(merge, "main", fail)
    with pytest.raises(type(error)) as raised:
        main(["merge", "base", "delta", "out"])
    assert raised.value is error


@pytest.mark.parametrize(
    "prompt_format, eval_style",
    [("auto", "chat"), ("chat", "chat"), ("plain", "slam")],  # the tiny tokenizer has a chat template
)
@pytest.mark.parametrize("l2_mode", ["off", "full"])
def test_slam_train_prompts_are_the_ones_slam_eval_asks(prompt_format, eval_style, l2_mode, make_cpu_config, tmp_path):
    """SLAM rows and L² sequences alike start with the prompt `slam eval --prompt_style` builds for the question."""
    from datasets import Dataset

    from slam_trainer.data.synthetic import synthetic_rows
    from slam_trainer.evaluation.prompts import build_prompts
    from slam_trainer.pipelines.training import TrainScriptArguments, build_training_data
    from slam_trainer.tiny import build_tiny_model, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    rows = synthetic_rows(2, languages=["en", "es"], world="one-step")
    script_args = TrainScriptArguments(
        dataset_format="parallel", languages=["en", "es"], l2_mode=l2_mode, prompt_format=prompt_format
    )
    dataset, _ = build_training_data(
        Dataset.from_list(rows), script_args, tokenizer, build_tiny_model(), make_cpu_config(tmp_path)
    )
    expected = tokenizer(
        build_prompts([{"lang": "en", "question": rows[0]["question"]}], eval_style, tokenizer=tokenizer)[0],
        add_special_tokens=eval_style != "chat",
    )["input_ids"]
    if l2_mode == "off":  # rendered by TRL: a conversation through the chat template, or the text prompt
        prompt = dataset[0]["prompt"]
        text = (
            tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
            if isinstance(prompt, list)
            else prompt
        )
        assert tokenizer(text, add_special_tokens=eval_style != "chat")["input_ids"] == expected
    else:
        assert dataset[0]["prompt_ids"]["en"] == expected


def test_slam_train_help_is_short_grouped_and_complete_without_importing_trl(capsys):
    """`slam train --help` shows the package's options first, grouped, every one of them with its real default, and
    imports neither torch nor TRL's trainers (what made it take seconds); `--help-all` is TRL's full help."""
    import dataclasses
    import subprocess
    import sys

    from slam_trainer.config import SelectiveFFNConfig
    from slam_trainer.pipelines.training import TrainScriptArguments

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    assert shown.index("SLAM: ") < shown.index("L²: ") < shown.index("Data:") < shown.index("--help-all")
    fields = [f for f in dataclasses.fields(SelectiveFFNConfig) if f.name.startswith("slam_")]
    fields += dataclasses.fields(TrainScriptArguments)
    for item in fields:  # read from config.py's source: in step with the class itself
        assert f"\n  --{item.name}\n" in shown, item.name
        default = item.default if item.default is not dataclasses.MISSING else item.default_factory()
        block = shown.split(f"\n  --{item.name}\n")[1].split("\n  --")[0]
        if default not in (None, ""):
            shown_default = ", ".join(map(str, default)) if isinstance(default, list) else str(default)
            assert f"default: {shown_default})" in " ".join(block.split()), item.name
    assert len(shown.splitlines()) < 120
    probe = (
        "import sys; from slam_trainer.cli.main import main\ntry: main(['train', '--help'])\n"
        "except SystemExit: print('torch' in sys.modules or 'trl.trainer' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    assert done.stdout.strip().endswith("False")
    with pytest.raises(SystemExit):
        main(["train", "--help-all"])
    full = capsys.readouterr().out
    assert "--per_device_train_batch_size" in full and "--slam_layers" in full and len(full.splitlines()) > 300


@pytest.mark.parametrize("l2_mode", ["off", "mixed"])
def test_slam_train_reads_mixed_steps_and_cot_rows_as_l2_build_does(l2_mode, tmp_path):
    """Rows that `slam l2-build` accepts (some with `steps`, some with `cot`) train as well: `datasets` fills the
    absent column with None, which read as the other kind instead of a TypeError."""
    import json

    rows = [
        {"id": 1, "lang": "en", "question": "Two plus one?", "answer": "3", "steps": ["Two.", "Plus one is 3."]},
        {"id": 1, "lang": "zh", "question": "二加一？", "answer": "3", "cot": "二。加一是 3。"},
        {"id": 2, "lang": "en", "question": "One plus one?", "answer": "2", "cot": "One. Plus one is 2."},
        {"id": 2, "lang": "zh", "question": "一加一？", "answer": "2", "steps": ["一。", "加一是 2。"]},
    ]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    argv = ["train", "--model_name_or_path", "tiny:llama", "--dataset_name", str(data), "--slam_layers", "0"]
    argv += ["--l2_mode", l2_mode, "--max_steps", "1", "--output_dir", str(tmp_path / "run"), "--max_length", "512"]
    assert main([*argv, "--use_cpu", "true", "--bf16", "false", "--report_to", "none"]) == 0
