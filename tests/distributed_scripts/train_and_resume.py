"""Train a tiny saved model with SelectiveFFNTrainer for a few steps, then resume from the mid-run checkpoint.

Run alone (single-process reference) or under a launcher; tests/test_distributed.py compares the outputs:

    python tests/distributed_scripts/train_and_resume.py --base BASE --output_dir OUT --batch_size 4
    accelerate launch --config_file recipes/accelerate/zero3.yaml --num_processes 2 \\
        tests/distributed_scripts/train_and_resume.py --base BASE --output_dir OUT --batch_size 2

Writes OUT/final (the full model, `save_model`), OUT/final_delta (`save_ffn_delta`), OUT/checkpoint-N (with
`ffn_delta/`), OUT/resumed (the model of a second run resumed from checkpoint-{steps/2}) and OUT/optimizer.json (the
parameter names the DeepSpeed/accelerate optimizer holds, as `optimizer_parameters` unwraps them). With `--tags`,
L² language tags are added first and the data writes them: only their rows of the embeddings train besides the FFN.
"""

import argparse
import json
import os

import cpu_deepspeed  # noqa: F401  (first: see its docstring)
import cpu_fsdp  # noqa: F401  (likewise)
import torch
from datasets import Dataset
from exit_without_teardown import exit_without_teardown
from transformers import AutoModelForCausalLM

from slam_trainer.callback import optimizer_parameters
from slam_trainer.config import SelectiveFFNConfig
from slam_trainer.delta import save_ffn_delta
from slam_trainer.l2.tags import add_language_tokens
from slam_trainer.tiny import build_tiny_tokenizer
from slam_trainer.trainer import SelectiveFFNTrainer


LAYERS = [0, 2]
# Four examples of identical length: one global batch is the whole set, so every step sees the same examples on one
# rank or two, and the mean loss does not depend on how they are split.
DATASET = {"prompt": ["1+2=", "3+4=", "2+2=", "4+1="], "completion": [" 3", " 7", " 4", " 5"]}
TAGGED = {"prompt": DATASET["prompt"], "completion": ["<|en|> 3", "<|zh|> 7", "<|en|> 4", "<|zh|> 5"]}


def make_trainer(base: str, output_dir: str, batch_size: int, steps: int, tags: bool) -> SelectiveFFNTrainer:
    args = SelectiveFFNConfig(
        output_dir=output_dir,
        slam_layers=LAYERS,
        slam_save_delta=True,
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=1e-3,
        bf16=False,
        activation_checkpointing=True,  # with frozen embeddings: the pitfall the issue names
        save_strategy="steps",
        save_steps=steps // 2,
        report_to="none",
        logging_steps=1,
        disable_tqdm=True,
        seed=0,
        data_seed=0,
        dataloader_num_workers=0,
    )
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    tokenizer = build_tiny_tokenizer()
    if tags:
        add_language_tokens(tokenizer, model, ["en", "zh"])
    dataset = Dataset.from_dict(TAGGED if tags else DATASET)
    return SelectiveFFNTrainer(model, args=args, train_dataset=dataset, processing_class=tokenizer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--batch_size", type=int, required=True)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--tags", action="store_true", help="add L² tags: their rows train too")
    cli = parser.parse_args()

    trainer = make_trainer(cli.base, cli.output_dir, cli.batch_size, cli.steps, cli.tags)
    # before training ends and merges the tag rows away, and after FSDP2 replaced the parameters by sharded ones
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    trainer.train()
    names.update({id(p): n for n, p in trainer.model.named_parameters()})
    held = sorted(names[id(p)] for p in optimizer_parameters(trainer.optimizer) if id(p) in names)
    trainer.save_model(os.path.join(cli.output_dir, "final"))
    save_ffn_delta(trainer, os.path.join(cli.output_dir, "final_delta"))
    if trainer.is_world_process_zero():
        with open(os.path.join(cli.output_dir, "optimizer.json"), "w") as handle:
            json.dump(
                {"held": held, "trainable": trainable, "delta": trainer.slam_freeze_report.trainable_names}, handle
            )

    resumed = make_trainer(cli.base, os.path.join(cli.output_dir, "resumed_run"), cli.batch_size, cli.steps, cli.tags)
    resumed.train(resume_from_checkpoint=os.path.join(cli.output_dir, f"checkpoint-{cli.steps // 2}"))
    resumed.save_model(os.path.join(cli.output_dir, "resumed"))
    resumed.accelerator.end_training()  # a live process group can abort a rank in teardown


if __name__ == "__main__":
    main()
    exit_without_teardown(0)
