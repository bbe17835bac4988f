"""`SelectiveFFNTrainer` with `slam_layers="auto"`: the probe chooses, the freezing follows, the files are written."""

import json

from slam_trainer.probe.report import JSON_NAME, PNG_NAME
from slam_trainer.trainer import SelectiveFFNTrainer
from tests.ground_truth import ground_truth_model, ground_truth_texts


def test_trainer_auto_mode_trains_the_identified_layer(tokenizer, arithmetic_dataset, cpu_args, tmp_path, capsys):
    probe_file = tmp_path / "probe.jsonl"
    rows = [
        {"id": i, "lang": lang, "text": t} for lang, texts in ground_truth_texts().items() for i, t in enumerate(texts)
    ]
    probe_file.write_text("\n".join(json.dumps(row) for row in rows))
    args = cpu_args(slam_layers="auto", slam_num_layers=1, slam_probe_dataset=str(probe_file))
    trainer = SelectiveFFNTrainer(
        model=ground_truth_model(tokenizer), args=args, train_dataset=arithmetic_dataset, processing_class=tokenizer
    )
    # Layers 1 and 4 hold the language-specific neurons; auto mode looks in the lower half (0-2) by default.
    assert trainer.slam_layer_report.chosen_layers == [1] == trainer.slam_freeze_report.layers
    trainable = {name for name, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("model.layers.1.mlp.") for name in trainable)
    assert json.loads((tmp_path / "out" / JSON_NAME).read_text())["chosen_layers"] == [1]
    assert (tmp_path / "out" / PNG_NAME).exists()
    # What a script shows without any logging set up: the probe's size and progress before the wait, then the
    # choice with its stability, where the report went, and what trains.
    shown = capsys.readouterr()
    items = len(next(iter(ground_truth_texts().values())))
    assert f"on {items} parallel items in {len(ground_truth_texts())} languages: " in shown.err
    assert "Probing FFN neurons" in shown.err and "tok" in shown.err  # the bar counts tokens
    layers = trainer.model.config.num_hidden_layers
    assert (
        f"slam_layers='auto' on a model of {layers} layers: Chosen by `lape` among the lower half: [1]." in shown.out
    )
    assert str(tmp_path / "out" / JSON_NAME) in shown.out
    assert str(trainer.slam_freeze_report) in shown.out and "SLAM: training up+down of layers [1]" in shown.out
