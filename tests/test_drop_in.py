"""An ordinary TRL SFT script runs unchanged except for the trainer-class swap, and then trains SLAM-style."""

import subprocess
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from slam_trainer.tiny import build_tiny_model


SCRIPT = Path(__file__).parent / "scripts" / "trl_sft_script.py"
REPO = Path(__file__).resolve().parents[1]


def test_swapping_the_trainer_class_is_the_only_change(tmp_path):
    source = SCRIPT.read_text()
    swapped = source.replace(
        "from trl import SFTConfig, SFTTrainer",
        "from trl import SFTConfig\nfrom slam_trainer import SelectiveFFNTrainer",
    ).replace("trainer = SFTTrainer(", "trainer = SelectiveFFNTrainer(")
    assert swapped.count("SelectiveFFNTrainer") == 2 and "SFTTrainer(" not in swapped.replace(
        "SelectiveFFNTrainer", ""
    )
    script = tmp_path / "script.py"
    script.write_text(swapped)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(script), str(out)],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
    )
    trained = AutoModelForCausalLM.from_pretrained(out)
    initial = build_tiny_model("qwen2", num_layers=12, seed=0)
    changed = {
        n for (n, a), (_, b) in zip(trained.named_parameters(), initial.named_parameters()) if not torch.equal(a, b)
    }
    # A plain SFTConfig is converted with SLAM's defaults: auto mode picks layers (of the lower half), up+down only.
    assert changed, "nothing trained"
    assert all(name.endswith(("mlp.up_proj.weight", "mlp.down_proj.weight")) for name in changed), changed
    assert {int(name.split(".")[2]) for name in changed} <= set(range(6))  # the lower half of 12 layers
    assert (out / "language_layers.json").exists()
    # ... and says so, in a plain script with no logging set up: the probe before it starts, the layers after.
    assert "converting it with SLAM defaults (slam_layers='auto'" in done.stderr
    assert "Probing FFN neurons" in done.stderr
    assert "slam_layers='auto' on a model of 12 layers: Chosen by `lape`" in done.stdout
    assert "SLAM: training up+down of layers" in done.stdout
