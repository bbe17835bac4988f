"""Model cards and Hub pushes for SLAM runs: the full model (as `Trainer` pushes it) or only the FFN delta.

The card says what a reader needs to trust and reuse the weights: the base model, the method (SLAM, and L² when
its collator built the data), the layers and projections trained and their share of the parameters, the
layer-identification report when `slam_layers="auto"` chose them, the dataset ids, and how to load. A delta repo
holds `ffn_delta.safetensors`, `slam_delta.json`, the tokenizer and the card; the card's three lines rebuild the
model from the base.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import HfApi, ModelCard, ModelCardData

from slam_trainer.delta import DELTA_DIR_NAME, save_ffn_delta
from slam_trainer.offline_models import OFFLINE_MODELS


SLAM_TAGS = ["slam", "trl", "sft"]
DELTA_TAGS = ["ffn-delta"]

SLAM_CITATION = """\
@inproceedings{fan2025slam,
    title     = {{SLAM: Towards Efficient Multilingual Reasoning via Selected Language Alignment}},
    author    = {Yuchun Fan and Yongyu Mu and Yilin Wang and Lei Huang and Junhao Ruan and Bei Li and Tong Xiao and
                 Shujian Huang and Xiaocheng Feng and Jingbo Zhu},
    booktitle = {Proceedings of the 31st International Conference on Computational Linguistics (COLING 2025)},
    year      = 2025,
    eprint    = {arXiv:2501.03681}
}"""


def _datasets(dataset_name) -> list[str] | None:
    if dataset_name is None:
        return None
    return [dataset_name] if isinstance(dataset_name, str) else list(dataset_name)


def method_line(trainer) -> str:
    uses_l2 = type(trainer.data_collator).__name__ == "L2DataCollator"
    return "SLAM (selective language alignment, arXiv:2501.03681)" + (
        " on L² multilingual unification data (arXiv:2506.18341), built by `L2DataCollator`" if uses_l2 else ""
    )


def trained_section(report, layers_chosen_automatically: bool) -> str:
    """What SLAM trained: layers (and how they were chosen), projections, share, extra tensors, L² tag rows."""
    how = "chosen by language-layer identification (`slam_layers='auto'`)" if layers_chosen_automatically else "given"
    lines = [
        "## SLAM: selective FFN training",
        "",
        f"- Trained layers ({how}): {report.layers}",
        f"- Trained FFN projections: {', '.join(report.projections)}" + (" (LoRA adapters)" if report.peft else ""),
        f"- Trainable parameters: {report.trainable_params:,} of {report.total_params:,} ({100 * report.share:.2f}%)",
    ]
    if report.extra_names:
        lines.append(f"- Also trained: {', '.join(report.extra_names)}")
    for name, ids in report.tag_rows.items():
        lines.append(f"- L² tag rows trained: {len(ids)} rows of `{name}` (token ids {ids[0]}..{ids[-1]})")
    return "\n".join(lines)


def card_section(trainer, dataset_name=None) -> str:
    """The SLAM part of a card: method, what trained, how the layers were chosen, datasets."""
    automatic = trainer.slam_layer_report is not None
    lines = [trained_section(trainer.slam_freeze_report, automatic), f"- Method: {method_line(trainer)}"]
    if dataset_name is not None:
        lines.append(f"- Datasets: {', '.join(_datasets(dataset_name))}")
    if trainer.slam_layer_report is not None:
        lines += ["", "### Layer identification", "", "```", str(trainer.slam_layer_report), "```"]
    return "\n".join(lines)


IMPORT_RESOLVE = "\nfrom slam_trainer.offline_models import resolve_model_path"


def delta_card(trainer, metadata, repo_id: str, dataset_name=None) -> ModelCard:
    """The card of a delta repo, with the three lines that rebuild the model from the base."""
    base = metadata.base_model or "<base model id or path>"
    revision = f', revision="{metadata.base_revision}"' if metadata.base_revision else ""
    short = metadata.base_model in OFFLINE_MODELS  # not a Hub id: its weights are the package's dequantized GGUF
    data = ModelCardData(
        base_model=None if short or not metadata.base_model or os.path.isdir(metadata.base_model) else base,
        datasets=_datasets(dataset_name),
        library_name="slam-trainer",
        tags=[*SLAM_TAGS, *DELTA_TAGS],
    )
    content = f"""---
{data.to_yaml()}
---

# {repo_id.split("/")[-1]}

An FFN delta: only the feed-forward tensors that SLAM trained on top of `{base}` ({len(metadata.tensors)} tensors),
with the metadata that puts them back on the right base (`slam_delta.json`). The tokenizer is included.

## How to load

```python
{_load_lines(base, revision, repo_id, metadata)}
```

`load_ffn_delta` refuses a base whose weights differ from the one the delta was trained on. To write a normal model
directory (for `from_pretrained` or vLLM): `slam merge {base} {repo_id} merged/`.

{card_section(trainer, dataset_name)}
"""
    return ModelCard(content)


def _load_lines(base: str, revision: str, repo_id: str, metadata) -> str:
    """The lines that rebuild the model; a delta with L² tags adds them to the base's tokenizer as well."""
    short = base in OFFLINE_MODELS  # not a Hub id: the package resolves it to its converted folder
    resolve = IMPORT_RESOLVE if short else ""
    source = f'resolve_model_path("{base}")' if short else f'"{base}"'
    if not metadata.added_tokens:
        return f"""from transformers import AutoModelForCausalLM
from slam_trainer import load_ffn_delta{resolve}
model = load_ffn_delta(AutoModelForCausalLM.from_pretrained({source}{revision}), "{repo_id}")"""
    return f"""from transformers import AutoModelForCausalLM, AutoTokenizer
from slam_trainer import load_ffn_delta{resolve}
tokenizer = AutoTokenizer.from_pretrained({source}{revision})  # gets the L² tags {" ".join(metadata.added_tokens)}
model = load_ffn_delta(AutoModelForCausalLM.from_pretrained({source}{revision}), "{repo_id}", tokenizer=tokenizer)"""


def push_ffn_delta(
    trainer,
    commit_message="End of training",
    blocking=True,
    token=None,
    revision=None,
    private=None,
    dataset_name=None,
):
    """Save the delta under `output_dir/ffn_delta/` (all ranks: ZeRO-3 gathers), then upload that folder with
    huggingface_hub: the repo is `hub_model_id` (default: the output folder's name), created if needed."""
    args = trainer.args
    folder = os.path.join(args.output_dir, DELTA_DIR_NAME)
    metadata = save_ffn_delta(trainer, folder)
    if not trainer.is_world_process_zero():
        return None
    api = HfApi(token=token if token is not None else args.hub_token)
    repo_id = api.create_repo(
        args.hub_model_id or Path(args.output_dir).absolute().name,
        private=private if private is not None else args.hub_private_repo,
        exist_ok=True,
    ).repo_id
    if trainer.processing_class is not None:
        trainer.processing_class.save_pretrained(folder)
    delta_card(trainer, metadata, repo_id, dataset_name).save(os.path.join(folder, "README.md"))
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        commit_message=commit_message,
        run_as_future=not blocking,
        revision=revision if revision is not None else args.hub_revision,
    )
