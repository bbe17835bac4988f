"""An ordinary TRL SFT script, as users write them; tests/test_drop_in.py swaps its trainer class and runs it."""

import sys

from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from slam_trainer.tiny import build_tiny_model, build_tiny_tokenizer


def main(output_dir: str) -> None:
    model = build_tiny_model("qwen2", num_layers=12, seed=0)
    tokenizer = build_tiny_tokenizer()
    dataset = Dataset.from_dict(
        {
            "prompt": [f"{a}+{b}=" for a in range(8) for b in range(4)],
            "completion": [f" {a + b}" for a in range(8) for b in range(4)],
        }
    )
    args = SFTConfig(
        output_dir=output_dir,
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        report_to="none",
        save_strategy="no",
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    trainer.save_model(output_dir)


if __name__ == "__main__":
    main(sys.argv[1])
