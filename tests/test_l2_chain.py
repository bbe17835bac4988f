"""The L² command chain connects: annotate → l2-build → train → eval → merge, each reading what the one before wrote.

Run on SmolLM2-135M-Instruct with the annotation endpoint faked on loopback (tests/test_annotate.py), a few steps
only: what is checked is that each command takes the previous one's output as the docs say, not what training does.
"""

import json
from collections import Counter

import pytest
import torch
from safetensors.torch import load_file

from slam_trainer.cli.main import main as slam
from tests.test_annotate import SEED, FakeEndpoint


MODEL = "smollm2-135m-instruct"
CPU = ["--use_cpu", "true", "--bf16", "false", "--report_to", "none"]


def run(*argv) -> None:
    assert slam([str(arg) for arg in argv]) == 0, " ".join(map(str, argv))


@pytest.mark.slow
@pytest.mark.real_model
def test_annotate_build_train_eval_merge(smollm2_path, shared_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # a seed of both kinds l2-build accepts: chains as `steps`, and as `cot` text
    seed = [dict(row) for row in SEED[:4]]
    for row in seed[2:]:
        row["cot"] = " ".join(row.pop("steps"))
    (tmp_path / "seed.jsonl").write_text("".join(json.dumps(row) + "\n" for row in seed), encoding="utf-8")
    fake = FakeEndpoint(Counter())
    try:
        run("annotate", "--seed", "seed.jsonl", "--languages", "zh", "es", "--model", "m", "--base_url",
            fake.base_url, "--output", "ann.jsonl")  # fmt: skip
    finally:
        fake.close()
    run("l2-build", "--data", "ann.jsonl", "--source", "o1", "--output_dir", "data")  # annotate kept the seed rows
    folder = tmp_path / "data" / "L2-M_o1_3_4"
    assert folder.is_dir()

    # the folder l2-build wrote is what slam train reads, for L² sequences and for SLAM's rows alike
    run("train", "--model_name_or_path", MODEL, "--dataset_name", folder, "--l2_mode", "mixed", "--slam_layers",
        "0,1", "--max_steps", "2", "--per_device_train_batch_size", "2", "--slam_save_delta", "true",
        "--output_dir", "run", *CPU)  # fmt: skip
    run("train", "--model_name_or_path", MODEL, "--dataset_name", folder, "--slam_layers", "0,1", "--max_steps",
        "1", "--per_device_train_batch_size", "2", "--output_dir", "run-slam", *CPU)  # fmt: skip
    delta = json.loads((tmp_path / "run" / "ffn_delta" / "slam_delta.json").read_text())
    assert delta["base_model"] == MODEL  # the name given, not this machine's cache folder

    mgsm = tmp_path / "mgsm.jsonl"
    rows = [json.loads(line) for line in (shared_data / "mgsm" / "mgsm.jsonl").read_text().splitlines()]
    mgsm.write_text("".join(json.dumps(r) + "\n" for r in rows if r["lang"] in ("en", "zh") and r["id"] in (0, 1)))
    run("eval", "--model", MODEL, "--delta", "run/ffn_delta", "--data", mgsm, "--max_new_tokens", "8",
        "--output_dir", "eval")  # fmt: skip
    assert json.loads((tmp_path / "eval" / "baseline" / "results.json").read_text())["scores"]["languages"]

    run("merge", delta["base_model"], "run/ffn_delta", "merged")
    merged, trained = load_file(tmp_path / "merged" / "model.safetensors"), load_file("run/model.safetensors")
    assert merged.keys() == trained.keys() and all(torch.equal(merged[n], trained[n]) for n in trained)
