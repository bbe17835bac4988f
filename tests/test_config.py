"""`SelectiveFFNConfig`: SLAM's fields normalised and checked, and reachable from the `slam train` command line."""

import pytest

from slam_trainer.tiny import build_tiny_model
from slam_trainer.trainer import SelectiveFFNTrainer


@pytest.mark.parametrize(
    "overrides, field, expected",
    [
        ({"slam_layers": "0-2,5"}, "slam_layers", [0, 1, 2, 5]),
        ({"slam_layers": "[0, -1]"}, "slam_layers", [0, -1]),
        ({"slam_layers": 3}, "slam_layers", [3]),
        ({"slam_projections": "all"}, "slam_projections", ["all"]),
        ({"slam_projections": ["up", "gate", "up"]}, "slam_projections", ["up", "gate"]),
        # PEFT's forms: a list of names, or a string regex; one list item is that string (TRL's convention).
        ({"slam_extra_trainable": ["embeddings", "lm_head"]}, "slam_extra_trainable", ["embeddings", "lm_head"]),
        ({"slam_extra_trainable": ["model\\.norm"]}, "slam_extra_trainable", "model\\.norm"),
        ({"slam_extra_trainable": "model\\.norm"}, "slam_extra_trainable", "model\\.norm"),
        ({"slam_layers": "zero"}, None, "`slam_layers` must be 'auto' or layer indices"),
        ({"slam_layers": []}, None, "`slam_layers` is empty"),
        ({"slam_layers": [0, 1.5]}, None, r"`slam_layers` must hold integers, got 1\.5"),
        ({"slam_projections": []}, None, "`slam_projections` is empty"),
        ({"slam_projections": ["up", "ffn"]}, None, r"`slam_projections` has unknown role\(s\) \['ffn'\]"),
        ({"slam_num_layers": 0}, None, "`slam_num_layers` must be a positive integer"),
    ],
)
def test_slam_fields_are_normalised_or_refused(overrides, field, expected, cpu_args):
    if field is None:
        with pytest.raises(ValueError, match=expected):
            cpu_args(**overrides)
    else:
        assert getattr(cpu_args(**overrides), field) == expected


def test_extra_trainable_options_come_from_the_command_line(tmp_path):
    from slam_trainer.cli.train import make_parser

    def parse(*flags):
        flags = ["--output_dir", str(tmp_path), "--use_cpu", "true", "--bf16", "false", *flags]
        _, config, _ = make_parser().parse_args_and_config(flags)
        return config

    assert parse("--slam_extra_trainable", "model\\.layers\\.[0-2]\\..*norm").slam_extra_trainable == (
        "model\\.layers\\.[0-2]\\..*norm"
    )
    both = parse("--slam_extra_trainable", "embeddings", "lm_head", "--slam_allow_large_extra", "true")
    assert both.slam_extra_trainable == ["embeddings", "lm_head"] and both.slam_allow_large_extra


def test_a_loose_extra_pattern_trains_only_when_allowed(tokenizer, arithmetic_dataset, cpu_args):
    def make(**overrides):
        args = cpu_args(slam_layers=[0], slam_extra_trainable=["mlp", "final_norm"], **overrides)
        return SelectiveFFNTrainer(
            build_tiny_model("llama"), args=args, train_dataset=arithmetic_dataset, processing_class=tokenizer
        )

    with pytest.raises(ValueError, match="more than the chosen FFN tensors themselves"):
        make()
    report = make(slam_allow_large_extra=True).slam_freeze_report
    assert {n for n in report.trainable_names if ".mlp." in n} == {
        f"model.layers.{i}.mlp.{p}_proj.weight" for i in range(4) for p in ("gate", "up", "down")
    }
