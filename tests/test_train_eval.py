"""`slam train --eval_strategy steps` as in TRL's `sft.py`: parallel and synthetic data hold out a share of their
problem ids (never of their rows) and the run logs `eval_loss` on them."""

import math

import pytest

from slam_trainer.cli.train import make_parser, run
from slam_trainer.data.synthetic import synthetic_rows


def parse(*argv):
    parser = make_parser()
    parser.prog = "slam train"
    return parser.parse_args_and_config(list(argv))


def test_held_out_ids_are_disjoint_from_training_ids_with_every_language_of_a_problem():
    from datasets import Dataset

    from slam_trainer.pipelines.training import split_eval_rows

    languages = ["en", "zh", "ru"]
    rows = Dataset.from_list(synthetic_rows(20, languages=languages))
    flags = ("--use_cpu", "true", "--bf16", "false", "--eval_strategy", "steps", "--eval_share", "0.25")
    script_args, training_args, _ = parse("--output_dir", "unused", *flags)
    train, held_out = split_eval_rows(rows, "parallel", script_args, training_args)
    train_ids, eval_ids = set(train["id"]), set(held_out["id"])
    assert train_ids.isdisjoint(eval_ids) and train_ids | eval_ids == set(rows["id"])
    assert len(eval_ids) == 5 and len(held_out) == 5 * len(languages)  # whole problems, in every language
    again = split_eval_rows(rows, "parallel", script_args, training_args)[1]
    assert set(again["id"]) == eval_ids  # the same seed holds out the same problems


@pytest.mark.parametrize(("recipe", "held_out"), [("slam_tiny_cpu", 6), ("l2_tiny_cpu", 4)])  # 0.25 of 24 or 16
def test_slam_train_with_eval_strategy_steps_logs_eval_loss_on_held_out_problems(recipe, held_out, tmp_path):
    """SLAM rows and L² examples alike: the held-out problems are built as the training ones are, and evaluated."""
    argv = ["--config", f"recipes/{recipe}.yaml", "--output_dir", str(tmp_path), "--max_steps", "2"]
    parsed = parse(*argv, "--eval_strategy", "steps", "--eval_steps", "1", "--eval_share", "0.25")
    trainer = run(*parsed)
    losses = [log["eval_loss"] for log in trainer.state.log_history if "eval_loss" in log]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    assert set(trainer.train_dataset["id"]).isdisjoint(trainer.eval_dataset["id"])
    assert len(set(trainer.eval_dataset["id"])) == held_out
