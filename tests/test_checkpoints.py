"""Resuming: true/false words as TRL's parser reads them, and incomplete checkpoints (a kill mid-save) skipped."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from slam_trainer.checkpoints import resolve_resume_checkpoint
from slam_trainer.cli.main import main


REPO = Path(__file__).resolve().parents[1]


def _checkpoint(output_dir: Path, step: int, state: str | None = '{"global_step": 1}') -> Path:
    folder = output_dir / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"")
    if state is not None:
        (folder / "trainer_state.json").write_text(state)
    return folder


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, None),
        (False, None),
        ("false", None),
        ("False", None),
        ("no", None),
        ("0", None),
        (True, "checkpoint-2"),
        ("true", "checkpoint-2"),
        ("True", "checkpoint-2"),
        ("yes", "checkpoint-2"),
        ("1", "checkpoint-2"),
        ("{out}/checkpoint-1", "checkpoint-1"),
    ],
)
def test_resume_values_as_trl_reads_booleans(value, expected, tmp_path):
    _checkpoint(tmp_path, 1), _checkpoint(tmp_path, 2)
    _checkpoint(tmp_path, 3, state=None)  # killed mid-save: no trainer state
    _checkpoint(tmp_path, 10, state='{"global_st')  # killed while writing the trainer state
    value = value.format(out=tmp_path) if isinstance(value, str) else value
    found = resolve_resume_checkpoint(value, str(tmp_path))
    assert found == (None if expected is None else str(tmp_path / expected))


def test_skipped_checkpoints_are_named(tmp_path, caplog):
    _checkpoint(tmp_path, 2), _checkpoint(tmp_path, 4, state=None)
    assert resolve_resume_checkpoint("true", str(tmp_path)) == str(tmp_path / "checkpoint-2")
    assert "Skipping checkpoint-4 (no trainer_state.json: its save was interrupted); resuming from checkpoint-2" in (
        caplog.text
    )


@pytest.mark.slow
def test_a_run_killed_during_a_checkpoint_save_resumes_from_the_last_complete_one(tmp_path, caplog):
    """A real `slam train` process is killed (SIGKILL) while writing checkpoint-4; `--resume_from_checkpoint true`
    then resumes from checkpoint-2, says so, and finishes."""
    out = tmp_path / "run"
    argv = ["--config", str(REPO / "recipes" / "slam_tiny_cpu.yaml"), "--output_dir", str(out), "--max_steps", "4"]
    argv += ["--save_strategy", "steps", "--save_steps", "2", "--synthetic_problems", "8"]
    script = REPO / "tests" / "scripts" / "train_killed_in_checkpoint.py"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed = subprocess.run([sys.executable, str(script), "4", "--", *argv], env=env, capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert (out / "checkpoint-4" / "model.safetensors").is_file()  # the weights were written, the rest was not
    assert not (out / "checkpoint-4" / "trainer_state.json").exists()
    saved_at = (out / "checkpoint-2" / "trainer_state.json").stat().st_mtime_ns
    assert main(["train", *argv, "--resume_from_checkpoint", "true"]) == 0
    assert "Skipping checkpoint-4" in caplog.text and "resuming from checkpoint-2" in caplog.text
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and (out / "model.safetensors").is_file()
    assert (out / "checkpoint-2" / "trainer_state.json").stat().st_mtime_ns == saved_at  # resumed, not redone
