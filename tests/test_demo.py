"""`slam demo` end to end on a random tiny model (what `make demo` runs on SmolLM2): every step's artefact is written,
and the merged model is the base with exactly the delta's tensors replaced."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file


REPO = Path(__file__).resolve().parents[1]


def test_the_demo_writes_every_artefact_and_the_merge_is_base_plus_delta(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "slam_trainer.cli.main", "demo", "--model", "tiny:llama", "--output_dir", str(out)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert all(f"[{step}/7]" in done.stdout for step in range(1, 8)), done.stdout

    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["model"] == "tiny:llama" and summary["layers"] and 0 < summary["trainable_share"] < 1
    assert set(summary["languages"]) >= {"en", "es"}
    assert all(0.0 <= v <= 1.0 for v in summary["non_english_average"].values())
    layers = json.loads((out / "train" / "language_layers.json").read_text(encoding="utf-8"))
    assert layers["chosen_layers"] == summary["layers"]
    assert (out / "train" / "language_layers.png").read_bytes().startswith(b"\x89PNG")

    base, merged = load_file(out / "base" / "model.safetensors"), load_file(out / "merged" / "model.safetensors")
    delta = load_file(out / "delta" / "ffn_delta.safetensors")
    assert set(delta) == {
        f"model.layers.{layer}.mlp.{projection}_proj.weight"
        for layer in summary["layers"]
        for projection in ("up", "down")
    }
    for name, tensor in merged.items():  # the delta's tensors replaced, every other tensor the base's, bitwise
        expected = delta.get(name, base[name])
        assert torch.equal(tensor, expected), name
    assert any(not torch.equal(delta[name], base[name]) for name in delta), "training changed nothing"
