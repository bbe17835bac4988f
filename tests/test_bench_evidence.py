"""The evidence benchmark's smoke test: `--quick` on a tiny random model writes its three files with the schema."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_evidence.py"
TRAINED_ARMS = ["full", "slam-auto", "slam-low", "slam-top", "slam-random", "lora", "slam-lora"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--lr", "full=fast"], "`--lr full=fast`: give ARM=LR,LR,..."),
        (["--lr", "slam-best=1e-3"], "ARM one of full, slam-auto"),
        (["--lr", "lora=-1e-3"], "positive rates"),
        (["--languages", "es", "en"], "`--languages` must start with en"),
        (["--languages", "en", "xx"], "Unknown language code 'xx'"),
        (["--steps", "0"], "`--steps` must be at least 1, got 0"),
        (["--mgsm_problems", "-1"], "`--mgsm_problems` must be 0 (skip) or more"),
    ],
)
def test_bad_flags_fail_before_anything_loads(flags, message, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(SCRIPT.parents[1])}
    command = [sys.executable, str(SCRIPT), *flags, "--work_dir", str(tmp_path / "work")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and message in result.stderr.splitlines()[-1]
    assert not (tmp_path / "work").exists()


def test_a_record_cut_by_an_interruption_is_redone_and_the_log_stays_readable(tmp_path, monkeypatch):
    import importlib

    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    bench = importlib.import_module("bench_evidence")
    path = tmp_path / "runs.jsonl"
    path.write_text('{"key": "setup"}\n{"key": "train/full/lr=0.0001/seed=0", "val', encoding="utf-8")
    log = bench.RunLog(path)
    assert "setup" in log and "train/full/lr=0.0001/seed=0" not in log
    log.add({"key": "train/full/lr=0.0001/seed=0", "val": {}})
    assert list(bench.RunLog(path).records) == ["setup", "train/full/lr=0.0001/seed=0"]


@pytest.mark.slow
def test_quick_run_writes_the_results_files_with_the_schema(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(SCRIPT.parents[1]), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(SCRIPT), "--quick", "--model", "tiny:llama", "--work_dir", str(tmp_path / "work")]
    subprocess.run([*command, "--results_dir", str(tmp_path / "results")], check=True, env=env, timeout=900)

    results = tmp_path / "results"
    assert (results / "evidence.png").read_bytes().startswith(b"\x89PNG")
    assert "## Targets" in (results / "evidence.md").read_text(encoding="utf-8")
    summary = json.loads((results / "evidence.json").read_text(encoding="utf-8"))
    assert summary["model"] == "tiny:llama"
    assert summary["languages"][0] == "en" and len(summary["seeds"]) >= 2
    assert list(summary["arms"]) == ["base", *TRAINED_ARMS]
    for arm, entry in summary["arms"].items():
        assert set(entry["accuracy"]) == set(summary["languages"])
        assert all(0.0 <= value <= 1.0 for value in entry["accuracy"].values())
        assert 0.0 <= entry["trainable_share"] <= 1.0
        if arm != "base":
            assert set(entry["accuracy_by_seed"]) == {str(seed) for seed in summary["seeds"]}
            assert entry["step_time_ratio"] > 0 and entry["peak_memory_ratio"] > 0
    assert summary["arms"]["full"]["step_time_ratio"] == 1.0 and summary["arms"]["full"]["trainable_share"] == 1.0
    assert all(summary["arms"][arm]["layers"] for arm in TRAINED_ARMS if arm.startswith("slam"))
    assert set(summary["l2"]["arms"]) == {"en-cot", "l2-full", "l2-mixed"}
    for decodings in summary["l2"]["arms"].values():
        assert set(decodings) == {"baseline", "switch"}
        assert 0.0 <= decodings["switch"]["rows_steered"] <= 1.0
    assert set(summary["targets"]) == {
        "gain_kept",
        "trainable_share",
        "english_retention",
        "step_time",
        "identification",
    }

    # Every run is logged once; running again resumes from the log and trains nothing.
    rerun = subprocess.run(
        [*command, "--results_dir", str(tmp_path / "again")], check=True, env=env, capture_output=True, text=True
    )
    assert "[1/" not in rerun.stdout
    assert json.loads((tmp_path / "again" / "evidence.json").read_text(encoding="utf-8"))["arms"] == summary["arms"]
