"""Auto mode (`resolve_auto_layers`) and the built-in probe corpus."""

import json
import os
import subprocess
import sys

import pytest

from slam_trainer.languages import LANGUAGES, get_language
from slam_trainer.probe.auto import resolve_auto_layers
from slam_trainer.probe.corpus import load_probe_corpus
from slam_trainer.probe.report import JSON_NAME, PNG_NAME
from slam_trainer.tiny import build_tiny_model, build_tiny_tokenizer
from tests.ground_truth import DESIGNED_LAYERS, ground_truth_model, ground_truth_texts


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_corpus_is_parallel_and_in_each_script():
    corpus = load_probe_corpus()
    assert list(corpus) == list(LANGUAGES)  # MGSM's eleven, Telugu included
    ids = set(corpus["en"])
    assert ids == set(range(120))
    for lang, texts in corpus.items():
        assert set(texts) == ids, lang
        script = get_language(lang).script_pattern
        assert all(script.search(text) for text in texts.values()), lang
    assert len({text for texts in corpus.values() for text in texts.values()}) == len(ids) * len(corpus)


def test_corpus_language_choice():
    assert list(load_probe_corpus(["th", "en"])) == ["th", "en"]
    with pytest.raises(ValueError, match="Unknown language code 'xx'"):
        load_probe_corpus(["en", "xx"])
    assert list(load_probe_corpus(["te", "bn"])) == ["te", "bn"]


def test_auto_finds_the_designed_layers_and_writes_the_report(tmp_path, capsys):
    tokenizer = build_tiny_tokenizer()
    model = ground_truth_model(tokenizer)
    layers, report = resolve_auto_layers(
        model,
        tokenizer,
        ground_truth_texts(),
        num_layers=2,
        output_dir=str(tmp_path),
        region="all",
        top_rate=0.05,
    )
    assert layers == DESIGNED_LAYERS == report.chosen_layers
    assert "Chosen by `lape` among all layers: [1, 4]. Stable" in capsys.readouterr().out  # printed, not logged
    with open(tmp_path / JSON_NAME) as handle:
        assert json.load(handle)["chosen_layers"] == DESIGNED_LAYERS
    assert (tmp_path / PNG_NAME).stat().st_size > 0


def test_auto_defaults_to_the_built_in_corpus_and_the_lower_half():
    model, tokenizer = build_tiny_model("llama"), build_tiny_tokenizer()
    layers, report = resolve_auto_layers(model, tokenizer, num_layers=2, resamples=0)
    assert layers == report.chosen_layers == [0, 1] and report.region == "lower_half"
    assert set(report.languages) == set(load_probe_corpus()) and report.settings["items"] >= 24
    with pytest.raises(ValueError, match="lower half"):
        resolve_auto_layers(build_tiny_model("llama"), build_tiny_tokenizer(), num_layers=3)


RANK_SCRIPT = """
import json, os, sys, torch.distributed as dist
from slam_trainer.probe.auto import resolve_auto_layers
from slam_trainer.tiny import build_tiny_model, build_tiny_tokenizer
from tests.ground_truth import ground_truth_model, ground_truth_texts

dist.init_process_group("gloo")
rank = dist.get_rank()
tokenizer = build_tiny_tokenizer()
# Rank 1 holds other weights: without the broadcast it would choose other layers.
model = ground_truth_model(tokenizer) if rank == 0 else build_tiny_model("llama", num_layers=6, seed=rank)
layers, report = resolve_auto_layers(
    model, tokenizer, ground_truth_texts(), num_layers=2, output_dir=f"{sys.argv[1]}/out{rank}", region="all",
    top_rate=0.05,
)
with open(f"{sys.argv[1]}/rank{rank}.json", "w") as handle:
    json.dump({"layers": layers, "report": report.to_dict()}, handle)
dist.barrier()
dist.destroy_process_group()
os._exit(0)  # the record is written; skip interpreter teardown, where gloo's threads abort ~1 run in 20 (torch 2.13)
"""


def run_on_two_ranks(script_text: str, tmp_path, port: int) -> list[dict]:
    """Run `script_text` under `torch.distributed.run` with 2 CPU ranks; each rank's JSON record, by rank."""
    script = tmp_path / "rank.py"
    script.write_text(script_text)
    env = {**os.environ, "PYTHONPATH": ROOT, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
    result = subprocess.run(
        command + [str(script), str(tmp_path)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]


@pytest.mark.distributed
def test_auto_agrees_on_every_rank(tmp_path):
    ranks = run_on_two_ranks(RANK_SCRIPT, tmp_path, 29517)
    assert ranks[0]["layers"] == ranks[1]["layers"] == DESIGNED_LAYERS
    assert ranks[0]["report"] == ranks[1]["report"]
    assert (tmp_path / "out0" / JSON_NAME).exists() and not (tmp_path / "out1").exists()


FAILING_RANK_SCRIPT = """
import json, os, sys, torch.distributed as dist
from slam_trainer.probe.auto import resolve_auto_layers
from slam_trainer.tiny import build_tiny_model, build_tiny_tokenizer

dist.init_process_group("gloo")
rank = dist.get_rank()
try:  # 3 layers asked of the lower half of a 4-layer model: the user's mistake, found on the main process only
    resolve_auto_layers(build_tiny_model("llama"), build_tiny_tokenizer(), num_layers=3)
except Exception as error:
    with open(f"{sys.argv[1]}/rank{rank}.json", "w") as handle:
        json.dump({"type": type(error).__name__, "message": str(error)}, handle)
dist.barrier()
dist.destroy_process_group()
os._exit(0)  # the record is written; skip interpreter teardown, where gloo's threads abort ~1 run in 20 (torch 2.13)
"""


@pytest.mark.distributed
def test_a_failed_probe_raises_the_same_error_on_every_rank(tmp_path):
    ranks = run_on_two_ranks(FAILING_RANK_SCRIPT, tmp_path, 29518)
    assert ranks[0] == ranks[1] and ranks[0]["type"] == "ConfigError" and "lower half" in ranks[0]["message"]
