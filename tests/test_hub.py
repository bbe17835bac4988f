"""`push_to_hub`: the exact files a push uploads (captured at huggingface_hub's commit) and the card it writes."""

import pytest
import torch
from huggingface_hub import HfApi, ModelCard, RepoUrl

from slam_trainer.delta import DELTA_CONFIG_NAME, DELTA_WEIGHTS_NAME
from slam_trainer.tiny import build_tiny_model
from slam_trainer.trainer import SelectiveFFNTrainer


@pytest.fixture
def hub_commits(monkeypatch):
    """Record the operations of every commit instead of sending them; everything above the commit call is real.

    Two more calls reach the network before the commit and are stubbed: `create_repo`, and the server-side check of
    the card's YAML, which is replaced by parsing it back into `ModelCardData` (the tests then check its fields).
    """
    import huggingface_hub._upload_pipeline as pipeline

    commits = []

    def validate_yaml(self, content, **kwargs):
        data = ModelCard(content).data
        assert isinstance(data.tags, list) and all(isinstance(tag, str) for tag in data.tags)

    monkeypatch.setattr(HfApi, "_validate_yaml", validate_yaml)
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: RepoUrl(f"https://huggingface.co/{repo_id}"))

    def create_commit(self, repo_id, operations, **kwargs):
        commits.append(sorted(op.path_in_repo for op in operations))

    def pipelined_upload(
        api, *, add_operations, delete_operations, **kwargs
    ):  # the path taken when hf_xet is installed
        commits.append(sorted(op.path_in_repo for op in [*delete_operations, *add_operations]))

    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    monkeypatch.setattr(pipeline, "pipelined_upload", pipelined_upload)
    return commits


def make_trainer(cpu_args, tokenizer, dataset, **overrides):
    model = build_tiny_model("llama")
    model.config.name_or_path = "org/tiny-llama"  # as if loaded from the Hub
    args = cpu_args(hub_model_id="user/tiny-slam", max_steps=1, **overrides)
    return SelectiveFFNTrainer(model, args=args, train_dataset=dataset, processing_class=tokenizer)


def test_delta_push_uploads_the_delta_tokenizer_and_card(hub_commits, cpu_args, tokenizer, arithmetic_dataset):
    trainer = make_trainer(cpu_args, tokenizer, arithmetic_dataset, slam_push="delta")
    trainer.train()
    trainer.push_to_hub(dataset_name="org/arithmetic")
    assert hub_commits == [
        sorted(
            [
                "README.md",
                DELTA_WEIGHTS_NAME,
                DELTA_CONFIG_NAME,
                "tokenizer.json",
                "tokenizer_config.json",
                "chat_template.jinja",
            ]
        )
    ]
    card = ModelCard.load(f"{trainer.args.output_dir}/ffn_delta/README.md")
    assert card.data.base_model == "org/tiny-llama"
    assert card.data.datasets == ["org/arithmetic"]
    assert {"slam", "trl", "sft"} <= set(card.data.tags)
    assert "Trained layers (given): [0, 3]" in card.text and "Method: SLAM" in card.text
    assert f"({100 * trainer.slam_freeze_report.share:.2f}%)" in card.text
    # The card's loading lines, pointed at the local folders, rebuild the trained model.
    code = card.text.split("```python\n")[1].split("```")[0]
    assert len(code.strip().splitlines()) == 3
    base_dir = f"{trainer.args.output_dir}/base"
    build_tiny_model("llama").save_pretrained(base_dir)
    namespace = {}
    exec(
        code.replace('"org/tiny-llama"', repr(base_dir)).replace(
            '"user/tiny-slam"', repr(f"{trainer.args.output_dir}/ffn_delta")
        ),
        namespace,
    )
    for name, param in trainer.model.state_dict().items():
        assert torch.equal(namespace["model"].state_dict()[name], param), name


def test_full_push_uploads_the_model_with_the_slam_card(hub_commits, cpu_args, tokenizer, arithmetic_dataset):
    trainer = make_trainer(cpu_args, tokenizer, arithmetic_dataset)
    trainer.train()
    trainer.push_to_hub(dataset_name="org/arithmetic")
    assert len(hub_commits) == 1
    assert {"README.md", "model.safetensors", "config.json", "tokenizer.json"} <= set(hub_commits[0])
    assert DELTA_WEIGHTS_NAME not in hub_commits[0]
    card = ModelCard.load(f"{trainer.args.output_dir}/README.md")
    assert {"slam", "trl", "sft"} <= set(card.data.tags) and card.data.base_model == "org/tiny-llama"
    assert "## SLAM: selective FFN training" in card.text and "Datasets: org/arithmetic" in card.text


def test_delta_options_with_peft_are_refused(cpu_args, tokenizer, arithmetic_dataset):
    from peft import LoraConfig

    with pytest.raises(ValueError, match="LoRA adapter already is the small artefact"):
        SelectiveFFNTrainer(
            build_tiny_model("llama"),
            args=cpu_args(slam_push="delta"),
            train_dataset=arithmetic_dataset,
            processing_class=tokenizer,
            peft_config=LoraConfig(),
        )


def test_a_delta_card_of_a_short_name_base_loads_it_through_the_package(cpu_args, tokenizer, arithmetic_dataset):
    """A short name is no Hub id (its weights are the package's dequantized GGUF): the card does not claim one, and
    its loading lines resolve the name as every command does."""
    import ast
    import dataclasses

    from slam_trainer.delta import save_ffn_delta
    from slam_trainer.hub import delta_card

    trainer = make_trainer(cpu_args, tokenizer, arithmetic_dataset)
    metadata = dataclasses.replace(
        save_ffn_delta(trainer, f"{trainer.args.output_dir}/d"), base_model="smollm2-135m-instruct"
    )
    card = delta_card(trainer, metadata, "user/tiny-slam")
    assert card.data.base_model is None
    code = card.text.split("```python\n")[1].split("```")[0]
    ast.parse(code)
    assert 'from_pretrained(resolve_model_path("smollm2-135m-instruct"))' in code
    assert "from slam_trainer.offline_models import resolve_model_path" in code


def test_a_delta_push_during_training_never_uploads_the_whole_model(
    hub_commits, cpu_args, tokenizer, arithmetic_dataset
):
    """`push_to_hub=True` with `Trainer`'s default `hub_strategy="every_save"` uploads each checkpoint's model: with
    `slam_push="delta"` saves push nothing, and `save_model` pushes the delta alone."""
    trainer = make_trainer(
        cpu_args,
        tokenizer,
        arithmetic_dataset,
        slam_push="delta",
        push_to_hub=True,
        save_strategy="steps",
        save_steps=1,
    )
    assert trainer.args.hub_strategy == "end"
    trainer.train()
    trainer.save_model()
    assert len(hub_commits) == 1, hub_commits
    assert DELTA_WEIGHTS_NAME in hub_commits[0] and "model.safetensors" not in hub_commits[0]


@pytest.mark.parametrize("strategy", ["checkpoint", "all_checkpoints"])
def test_a_delta_push_refuses_checkpoint_uploads(cpu_args, strategy):
    from slam_trainer.errors import ConfigError

    with pytest.raises(ConfigError, match="uploads whole checkpoints.*hub_strategy='end'"):
        cpu_args(slam_push="delta", push_to_hub=True, hub_strategy=strategy, hub_model_id="user/tiny-slam")


def test_the_delta_push_holds_when_the_hub_is_set_after_the_config(
    hub_commits, cpu_args, tokenizer, arithmetic_dataset
):
    """transformers' `set_push_to_hub` (strategy "every_save" by default) and a field set by hand are checked too."""
    args = cpu_args(slam_push="delta").set_push_to_hub("user/tiny-slam")
    assert args.push_to_hub and args.hub_strategy == "end"

    args = cpu_args(slam_push="delta", hub_model_id="user/tiny-slam")
    args.push_to_hub = True  # after init: the trainer checks again
    model = build_tiny_model("llama")
    SelectiveFFNTrainer(model, args=args, train_dataset=arithmetic_dataset, processing_class=tokenizer)
    assert args.hub_strategy == "end"
