"""The probe on the real models (SmolLM2-135M-Instruct, Gemma-3-270M) and MGSM questions, kept small: a few items."""

import json
import warnings

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from slam_trainer.cli.main import main
from slam_trainer.probe.batches import tokenize_parallel
from slam_trainer.probe.counting import count_activations
from slam_trainer.probe.parallel import load_parallel_texts
from slam_trainer.probe.report import JSON_NAME
from slam_trainer.trainer import SelectiveFFNTrainer
from tests.conftest import cpu_config
from tests.test_probe import probe_batches


pytestmark = [pytest.mark.slow, pytest.mark.real_model]


def mgsm_rows(shared_data, items: int, languages=None) -> list[dict]:
    """The first `items` MGSM problems, as the file's own rows (`id`, `lang`, `question`, `answer`)."""
    rows = [json.loads(line) for line in (shared_data / "mgsm" / "mgsm.jsonl").read_text().splitlines()]
    first = list(dict.fromkeys(row["id"] for row in rows))[:items]
    return [row for row in rows if row["id"] in first and (languages is None or row["lang"] in languages)]


def test_default_max_length_keeps_mgsm_parallel_with_smollm2(shared_data, smollm2_path):
    """Issue #15 item 8: at 256 tokens SmolLM2's tokenizer cuts 50/50 Telugu, 42/50 Bengali and 38/50 Thai MGSM
    questions. Nothing is cut now: over-long items would leave every language (here all 50 would), and the default
    limit keeps every one of them."""
    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    parallel = load_parallel_texts(mgsm_rows(shared_data, 50))
    with pytest.raises(ValueError, match=r"\(te 50, bn 42, th 38, ja 8, ru 6, zh 1\); raise `max_length`"):
        tokenize_parallel(tokenizer, parallel, max_length=256)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tokenized = tokenize_parallel(tokenizer, parallel, max_length=2048)
    assert len(tokenized.ids) == 50 and tokenized.over_length == {}
    assert max(len(row) for row in tokenized.input_ids["te"]) > 1000  # whole questions, not cut ones


@pytest.mark.parametrize("model_fixture", ["smollm2_path", "gemma3_path"])
def test_counted_neurons_are_the_positive_gates(request, model_fixture):
    """SiLU (SmolLM2) and GELU-tanh (Gemma): a neuron counts exactly when its gate pre-activation is > 0; Gemma's
    slightly negative outputs for negative gates do not count."""
    path = request.getfixturevalue(model_fixture)
    model, tokenizer = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    act_fn = model.model.layers[0].mlp.act_fn
    gates = []
    act_fn.register_forward_hook(lambda module, args, output: gates.append(args[0]) if args[0].dim() == 3 else None)
    texts = {"en": ["Janet has three ducks and sells their eggs."], "zh": ["珍妮特有三只鸭子，卖它们的蛋。"]}
    batches, languages = probe_batches(tokenizer, texts)
    counts = count_activations(model, batches, languages)
    for language, (batch, gate) in enumerate(zip(batches, gates)):
        counted = gate[batch.count_mask]
        assert torch.equal(counts.active[0][:, language], (counted > 0).sum(0))
        negative = counted[counted < 0]
        assert (act_fn(negative) < 0).float().mean() > 0.5  # most negative gates give a (small) negative output


@pytest.mark.filterwarnings("ignore:.*NOT STABLE")  # four items are too few for a stable choice; not the point here
def test_cli_and_auto_mode_choose_the_same_layers(shared_data, smollm2_path, arithmetic_dataset, tmp_path):
    """`slam identify` and `SelectiveFFNTrainer(slam_layers="auto")` with their defaults, on the same MGSM-format
    file (`id`, `lang`, `question`, `answer` as MGSM ships it), give the same report."""
    data = tmp_path / "mgsm_subset.jsonl"
    rows = mgsm_rows(shared_data, 4, languages=("en", "zh", "sw"))
    data.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in rows))
    assert main(["identify", "--model", smollm2_path, "--data", str(data), "--output_dir", str(tmp_path / "cli")]) == 0
    cli = json.loads((tmp_path / "cli" / JSON_NAME).read_text())

    model, tokenizer = AutoModelForCausalLM.from_pretrained(smollm2_path), AutoTokenizer.from_pretrained(smollm2_path)
    args = cpu_config(tmp_path / "auto", slam_layers="auto", slam_probe_dataset=str(data))
    trainer = SelectiveFFNTrainer(model=model, args=args, train_dataset=arithmetic_dataset, processing_class=tokenizer)
    auto = trainer.slam_layer_report.to_dict()

    assert auto["chosen_layers"] == cli["chosen_layers"] == trainer.slam_freeze_report.layers
    assert auto["region"] == cli["region"] == "lower_half" and max(cli["chosen_layers"]) < 15
    assert auto["scores"] == cli["scores"] and auto["stability"] == cli["stability"]
    assert cli["settings"]["items"] == 4 and cli["stability"]["units"] == 4
