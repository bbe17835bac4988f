"""SLAM under DeepSpeed ZeRO-2, ZeRO-3 and FSDP2 with 2 CPU ranks, launched with the recipes in recipes/accelerate/.

Each launch trains a tiny saved Llama for 4 steps (global batch 4: 2 ranks x 2), saves checkpoints with FFN deltas,
the full model and a delta, then resumes a second run from checkpoint-2. The same script run as one process with
batch 4 is the reference. Trained tensors must match it within ATOL (fp32; only the order of the reductions
differs), frozen tensors must be bitwise the initial ones, and the resumed run must end bitwise where the first did.
Under FSDP2 the `slam train` command also runs on a bf16-loaded model with `--bf16 true` and auto layers: the precision
policy under accelerate's `MixedPrecisionPolicy`. The test-machine shims are tests/distributed_scripts/cpu_*.py.
Run alone with `pytest -m distributed`.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from slam_trainer.delta import DeltaMetadata, load_ffn_delta
from slam_trainer.tiny import build_tiny_model, build_tiny_tokenizer


pytestmark = pytest.mark.distributed
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "distributed_scripts" / "train_and_resume.py"
ATOL = 1e-5
ENV = {
    **os.environ,
    "DS_ACCELERATOR": "cpu",
    "PYTHONPATH": str(ROOT),
    "OMP_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def run(command, output_dir):
    result = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return output_dir


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    path = tmp_path_factory.mktemp("base")
    build_tiny_model("llama").save_pretrained(path)
    build_tiny_tokenizer().save_pretrained(path)  # for the auto-layer probe of `slam train`
    return path


@pytest.fixture(scope="module")
def reference(base, tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    return run([sys.executable, str(SCRIPT), "--base", str(base), "--output_dir", str(out), "--batch_size", "4"], out)


@pytest.fixture(scope="module")
def tagged_reference(base, tmp_path_factory):
    out = tmp_path_factory.mktemp("single-tags")
    command = [sys.executable, str(SCRIPT), "--base", str(base), "--output_dir", str(out), "--batch_size", "4"]
    return run([*command, "--tags"], out)


def launch(recipe, base, out, *extra):
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", f"recipes/accelerate/{recipe}"]
    return run(
        [
            *accelerate,
            "--num_processes",
            "2",
            str(SCRIPT),
            "--base",
            str(base),
            "--output_dir",
            str(out),
            "--batch_size",
            "2",
            *extra,
        ],
        out,
    )


@pytest.mark.parametrize("recipe", ["zero2.yaml", "zero3.yaml", "fsdp2.yaml"])
def test_sharded_training_saving_and_resuming(recipe, base, reference, tmp_path):
    out = launch(recipe, base, tmp_path)
    initial = load_file(base / "model.safetensors")
    final = load_file(out / "final" / "model.safetensors")
    delta = load_file(out / "final_delta" / "ffn_delta.safetensors")
    held = json.loads((out / "optimizer.json").read_text())
    assert sorted(held["held"]) == sorted(held["trainable"]) == sorted(delta)  # the optimizer holds exactly these

    assert final.keys() == initial.keys()
    for name in initial:
        if name in delta:
            assert not torch.equal(final[name], initial[name]), f"{name} did not train"
        else:
            assert torch.equal(final[name], initial[name]), f"frozen {name} changed"

    single = load_file(reference / "final" / "model.safetensors")
    for name in delta:
        torch.testing.assert_close(final[name], single[name], atol=ATOL, rtol=0)
        assert torch.equal(delta[name], final[name])  # the gathered delta is the saved model's tensor

    # The sharded run's delta and the single-process delta describe the same tensors on the same base.
    zero_meta, single_meta = DeltaMetadata.read(out / "final_delta"), DeltaMetadata.read(reference / "final_delta")
    assert zero_meta.base_fingerprint == single_meta.base_fingerprint and zero_meta.tensors == single_meta.tensors
    single_delta = load_file(reference / "final_delta" / "ffn_delta.safetensors")
    for name in single_delta:
        torch.testing.assert_close(delta[name], single_delta[name], atol=ATOL, rtol=0)

    resumed = load_file(out / "resumed" / "model.safetensors")
    for name in final:
        assert torch.equal(resumed[name], final[name]), f"resumed run ended elsewhere at {name}"

    # The checkpoint's delta rebuilds the checkpoint from the base.
    from transformers import AutoModelForCausalLM

    checkpoint = out / "checkpoint-2"
    rebuilt = load_ffn_delta(AutoModelForCausalLM.from_pretrained(base), str(checkpoint / "ffn_delta")).state_dict()
    saved = load_file(checkpoint / "model.safetensors")
    assert all(torch.equal(rebuilt[name], saved[name]) for name in saved)


@pytest.mark.parametrize("recipe", ["fsdp2.yaml", "zero2.yaml"])
def test_slam_train_in_bf16_keeps_the_precision_policy_and_shares_auto_layers(recipe, base, tmp_path):
    """`accelerate launch --config_file recipes/accelerate/RECIPE slam train` on a bf16-loaded model with `--bf16 true`
    and `--slam_layers auto`: exactly the layers the main process chose train, their delta holds float32 values (FSDP2:
    accelerate's float32 shards; ZeRO-2: DeepSpeed's float32 master copies), and every other tensor is saved
    bfloat16 and bitwise the loaded one. The saved model holds the trained tensors in float32 under FSDP2 and rounded
    to DeepSpeed's bf16 working copy under ZeRO-2."""
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", f"recipes/accelerate/{recipe}"]
    cli = ["tests/distributed_scripts/slam_cli.py", "train", "--config", "recipes/slam_tiny_cpu.yaml"]
    run(
        [*accelerate, "--num_processes", "2", *cli, "--model_name_or_path", str(base), "--dtype", "bfloat16",
         "--bf16", "true", "--slam_layers", "auto", "--slam_num_layers", "2", "--slam_save_delta", "true",
         "--max_steps", "2", "--per_device_train_batch_size", "2", "--synthetic_problems", "4",
         "--output_dir", str(tmp_path)],
        tmp_path,
    )  # fmt: skip
    chosen = json.loads((tmp_path / "language_layers.json").read_text())["chosen_layers"]
    expected = {f"model.layers.{i}.mlp.{p}_proj.weight" for i in chosen for p in ("up", "down")}
    initial = load_file(base / "model.safetensors")
    final = load_file(tmp_path / "model.safetensors")
    delta = load_file(tmp_path / "ffn_delta" / "ffn_delta.safetensors")
    assert len(chosen) == 2 and set(delta) == expected
    saved_dtype = torch.float32 if recipe == "fsdp2.yaml" else torch.bfloat16
    for name in initial:
        if name in expected:
            assert delta[name].dtype == torch.float32 and final[name].dtype == saved_dtype, name
            assert torch.equal(final[name], delta[name].to(saved_dtype))
            assert not torch.equal(final[name].to(torch.bfloat16), initial[name].to(torch.bfloat16)), name
        else:
            assert final[name].dtype == torch.bfloat16, name
            assert torch.equal(final[name], initial[name].to(torch.bfloat16)), f"frozen {name} changed"


def tagged_base(base) -> dict:
    """The base's tensors after `add_language_tokens`, as the training script starts them."""
    from transformers import AutoModelForCausalLM

    from slam_trainer.l2.tags import add_language_tokens
    from slam_trainer.tiny import build_tiny_tokenizer

    model = AutoModelForCausalLM.from_pretrained(base)
    add_language_tokens(build_tiny_tokenizer(), model, ["en", "zh"])
    return model.state_dict()


def test_zero3_trains_only_the_tag_rows_and_the_delta_carries_them(base, tagged_reference, tmp_path):
    """L² tags under ZeRO-3: the small tag-row parameters are partitioned like any other; old rows stay bitwise, the
    saved model and the delta hold the trained rows, and resuming ends where the first run did."""
    out = launch("zero3.yaml", base, tmp_path, "--tags")
    initial = load_file(base / "model.safetensors")
    final = load_file(out / "final" / "model.safetensors")
    held = json.loads((out / "optimizer.json").read_text())
    assert sorted(held["held"]) == sorted(held["trainable"])
    assert sorted(n for n in held["trainable"] if n.endswith(".slam_tag_rows")) == [
        "lm_head.slam_tag_rows",
        "model.embed_tokens.slam_tag_rows",
    ]
    assert final.keys() == initial.keys()  # the tag-row parameters are not saved as weights of their own
    tags = [260, 261]
    started = tagged_base(base)
    for name in initial:
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            assert torch.equal(final[name][:260], initial[name]), f"an old row of {name} moved"
            assert not torch.equal(final[name][tags], started[name][tags]), f"the tag rows of {name} did not train"
        elif name in held["delta"]:
            assert not torch.equal(final[name], initial[name]), f"{name} did not train"
        else:
            assert torch.equal(final[name], initial[name]), f"frozen {name} changed"
    single = load_file(tagged_reference / "final" / "model.safetensors")
    for name in final:
        torch.testing.assert_close(final[name], single[name], atol=ATOL, rtol=0)

    delta = load_file(out / "final_delta" / "ffn_delta.safetensors")
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        assert torch.equal(delta[name + ":tag_rows"], final[name][tags])
    assert DeltaMetadata.read(out / "final_delta").added_tokens == {"<|en|>": 260, "<|zh|>": 261}
    resumed = load_file(out / "resumed" / "model.safetensors")
    for name in final:
        assert torch.equal(resumed[name], final[name]), f"resumed run ended elsewhere at {name}"
