"""FFN-delta checkpoints: only the tensors SLAM trained, plus what is needed to put them back on the right base.

SLAM trains a few layers' FFN projections (6.5-8% of a 7B/13B model), so the trained model is the base model plus
those tensors. A delta directory holds:

- `ffn_delta.safetensors`: the trained tensors, whole, under their `model.named_parameters()` names. A fused tensor
  of which only one half trained (Phi-3's `gate_up_proj` when only `up` trains) is stored whole: simplest and exact.
- `slam_delta.json`: base model id and revision, architecture, layers, projections, tensor shapes and dtype, the
  package version, and a fingerprint of the base weights the delta applies to.

The base fingerprint (our choice; the papers have no such thing) is a SHA-256 over (a) the name and shape of every
parameter of the model and (b) the values, cast to float32, of the parameters of the input embeddings and of the
first and last decoder layers that the delta does *not* hold. (a) catches another architecture or size; (b) catches
another checkpoint of the same shape (an instruct vs. a base model, another fine-tune) without reading all of a 70B
model. Values are hashed as float32 so that a bf16 checkpoint loaded in fp32 (or the reverse) has the same
fingerprint; a base that differs only in layers outside (b) is not detected.

Under DeepSpeed ZeRO-3 the parameters are partitioned: saving and fingerprinting gather one tensor at a time with
`deepspeed.zero.GatheredParameters`, which is collective, so every rank must call `save_ffn_delta`; only the main
process writes. A PEFT (SLAM + LoRA) model is out of scope: its adapter already is the small artefact
(`model.save_pretrained`).
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import TrainerCallback

from slam_trainer.architectures import ROLES, full_shape, get_architecture_map


DELTA_WEIGHTS_NAME = "ffn_delta.safetensors"
DELTA_CONFIG_NAME = "slam_delta.json"
DELTA_DIR_NAME = "ffn_delta"  # sub-directory of a checkpoint or output_dir holding a delta
DELTA_FORMAT = "slam-ffn-delta"
DELTA_FORMAT_VERSION = 1
_HASH_CHUNK = 1 << 24  # elements per hashed chunk: bounds the float32 copy of a large embedding


@dataclass
class DeltaMetadata:
    """What `slam_delta.json` records; see the module docstring for the fingerprint."""

    base_model: str | None
    base_revision: str | None
    architecture: str
    model_type: str | None
    layers: list[int]
    projections: list[str]
    dtype: str
    base_fingerprint: str
    tensors: dict[str, list[int]] = field(default_factory=dict)
    slam_trainer_version: str = ""
    format: str = DELTA_FORMAT
    format_version: int = DELTA_FORMAT_VERSION

    @classmethod
    def read(cls, directory: str) -> DeltaMetadata:
        path = os.path.join(directory, DELTA_CONFIG_NAME)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{directory!r} is not an FFN delta: it has no {DELTA_CONFIG_NAME}. Pass the directory written by "
                "`save_ffn_delta` (or a Hub repo id holding one)."
            )
        with open(path, encoding="utf-8") as handle:
            values = json.load(handle)
        if values.get("format") != DELTA_FORMAT or values.get("format_version", 0) > DELTA_FORMAT_VERSION:
            raise ValueError(
                f"{path} is format {values.get('format')!r} v{values.get('format_version')}; this slam-trainer reads "
                f"{DELTA_FORMAT!r} up to v{DELTA_FORMAT_VERSION}. Upgrade slam-trainer."
            )
        return cls(**values)

    def write(self, directory: str) -> None:
        with open(os.path.join(directory, DELTA_CONFIG_NAME), "w", encoding="utf-8") as handle:
            json.dump(asdict(self), handle, indent=2)
            handle.write("\n")


def _is_main_process() -> bool:
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or (
        torch.distributed.get_rank() == 0
    )


@contextmanager
def gathered(param: nn.Parameter, modifier_rank: int | None = None):
    """Make a ZeRO-3-partitioned parameter whole for the block (collective); a no-op for ordinary parameters."""
    if not hasattr(param, "ds_id"):
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters([param], modifier_rank=modifier_rank):
        yield


def _refuse_peft(model: nn.Module) -> None:
    if hasattr(model, "peft_config"):
        raise TypeError(
            f"{type(model).__name__} is a PEFT model: its adapter already is the small artefact of a SLAM + LoRA "
            "run. Save it with `model.save_pretrained(path)` (or merge it with `model.merge_and_unload()`) instead "
            "of `save_ffn_delta` / `load_ffn_delta`."
        )


def base_fingerprint(model: nn.Module, delta_names) -> str:
    """SHA-256 of the base weights a delta with tensors `delta_names` applies to (see the module docstring)."""
    delta_names = set(delta_names)
    params = dict(model.named_parameters())
    digest = hashlib.sha256()
    for name in sorted(params):
        digest.update(f"{name}:{list(full_shape(params[name]))};".encode())
    amap = get_architecture_map(model)
    layer_prefixes = (f"{amap.layers_path}.0.", f"{amap.layers_path}.{amap.num_layers - 1}.")
    embeddings = {id(p) for p in model.get_input_embeddings().parameters()}
    hashed = [
        name
        for name, param in params.items()
        if name not in delta_names and (id(param) in embeddings or name.startswith(layer_prefixes))
    ]
    for name in hashed:
        param = params[name]
        with gathered(param):
            flat = param.detach().reshape(-1)
            for start in range(0, flat.numel(), _HASH_CHUNK):
                chunk = flat[start : start + _HASH_CHUNK].to("cpu", torch.float32).contiguous()
                digest.update(chunk.numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def _trained_names(model: nn.Module) -> list[str]:
    names = [name for name, param in model.named_parameters() if param.requires_grad]
    if not names or len(names) == len(list(model.parameters())):
        raise ValueError(
            f"{type(model).__name__} has {'no' if not names else 'only'} trainable parameters, so there is no delta "
            "to tell apart from the base. Freeze it first (`freeze_except_ffn(model, layers)`), or pass a "
            "`SelectiveFFNTrainer`."
        )
    return names


def _layers_and_roles(model: nn.Module, names: list[str]) -> tuple[list[int], list[str]]:
    """Layers and FFN roles the saved tensors belong to, read from the architecture map."""
    wanted = set(names)
    layers, roles = set(), set()
    for layer in get_architecture_map(model).layers:
        for tensor in layer.tensors:
            if tensor.name in wanted:
                layers.add(layer.index)
                roles.add(tensor.role)
    return sorted(layers), [role for role in ROLES if role in roles]


def save_ffn_delta(
    model_or_trainer,
    path: str,
    *,
    base_model: str | None = None,
    base_revision: str | None = None,
) -> DeltaMetadata:
    """Write only the trained tensors of a SLAM model (safetensors) and their metadata to directory `path`.

    Parameters:
        model_or_trainer (`PreTrainedModel` or `SelectiveFFNTrainer`):
            A model whose frozen parameters have `requires_grad=False` (as `freeze_except_ffn` leaves them), or a
            trainer, whose `slam_report` names the trained tensors. Under ZeRO-3 every rank must call this.
        path (`str`):
            Output directory; created if needed. Only the main process writes.
        base_model (`str`, *optional*):
            Hub id (or path) of the base model, recorded for `slam merge` and the model card; defaults to the
            model's `config._name_or_path`.
        base_revision (`str`, *optional*):
            Revision of the base model; defaults to the config's `_commit_hash` when the model came from the Hub.

    Returns:
        `DeltaMetadata`: what was written to `slam_delta.json`.
    """
    report = getattr(model_or_trainer, "slam_report", None)
    model = model_or_trainer.model if hasattr(model_or_trainer, "slam_report") else model_or_trainer
    _refuse_peft(model)
    names = report.trainable_names if report is not None else _trained_names(model)
    params = dict(model.named_parameters())
    tensors = {}
    for name in names:
        with gathered(params[name]):
            if _is_main_process():
                tensors[name] = params[name].detach().to("cpu", copy=True).contiguous()
    fingerprint = base_fingerprint(model, names)
    layers, roles = (report.layers, report.projections) if report is not None else _layers_and_roles(model, names)
    config = model.config
    dtypes = sorted({str(params[name].dtype).removeprefix("torch.") for name in names})
    from slam_trainer import __version__

    metadata = DeltaMetadata(
        base_model=base_model or getattr(config, "_name_or_path", None) or None,
        base_revision=base_revision or getattr(config, "_commit_hash", None),
        architecture=type(model).__name__,
        model_type=getattr(config, "model_type", None),
        layers=list(layers),
        projections=list(roles),
        dtype=",".join(dtypes),
        base_fingerprint=fingerprint,
        tensors={name: list(full_shape(params[name])) for name in names},
        slam_trainer_version=__version__,
    )
    if _is_main_process():
        os.makedirs(path, exist_ok=True)
        save_file(tensors, os.path.join(path, DELTA_WEIGHTS_NAME), metadata={"format": "pt"})
        metadata.write(path)
    return metadata


def resolve_delta_directory(path: str, revision: str | None) -> str:
    """A local delta directory, or a Hub repo id downloaded (the delta files only) to the cache."""
    if os.path.isdir(path):
        return path
    from huggingface_hub import snapshot_download

    return snapshot_download(path, revision=revision, allow_patterns=[DELTA_WEIGHTS_NAME, DELTA_CONFIG_NAME])


def load_ffn_delta(base_model: nn.Module, path: str, *, revision: str | None = None, check_base: bool = True):
    """Apply a delta written by `save_ffn_delta` to `base_model` in place, and return the model.

    Parameters:
        base_model (`PreTrainedModel`):
            The base the delta was trained from (same architecture, size and weights); its dtype is kept, the delta
            tensors are cast to it.
        path (`str`):
            A delta directory, or a Hub repo id holding one.
        revision (`str`, *optional*):
            Revision of the Hub repo, when `path` is a repo id.
        check_base (`bool`, *optional*, defaults to `True`):
            Refuse a base whose fingerprint differs from the one recorded at saving. Turn off only when you know
            the base is right although its frozen weights differ (e.g. it was re-quantized).

    Raises:
        `ValueError`: the base is of another architecture, lacks a tensor of the delta, has another shape, or (with
        `check_base`) has other weights than the base the delta was trained on.
    """
    _refuse_peft(base_model)
    directory = resolve_delta_directory(path, revision)
    metadata = DeltaMetadata.read(directory)
    trained_on = metadata.base_model or "an unnamed model"
    if metadata.base_revision:
        trained_on += f" (revision {metadata.base_revision})"
    if metadata.architecture != type(base_model).__name__:
        raise ValueError(
            f"The delta at {path!r} was trained on a {metadata.architecture} ({trained_on}), but `base_model` is a "
            f"{type(base_model).__name__}. Load the base model it was trained from."
        )
    params = dict(base_model.named_parameters())
    for name, shape in metadata.tensors.items():
        if name not in params or list(full_shape(params[name])) != list(shape):
            found = list(full_shape(params[name])) if name in params else "no such parameter"
            raise ValueError(
                f"The delta at {path!r} holds `{name}` of shape {shape}, but `base_model` has {found}: it is not "
                f"the base the delta was trained on ({trained_on})."
            )
    if check_base:
        fingerprint = base_fingerprint(base_model, metadata.tensors)
        if fingerprint != metadata.base_fingerprint:
            raise ValueError(
                f"`base_model` has other weights than the base the delta at {path!r} was trained on ({trained_on}): "
                "the fingerprint of its embeddings and first and last layers differs. Load that base model (and "
                "revision); pass `check_base=False` only if you know the difference is harmless."
            )
    tensors = load_file(os.path.join(directory, DELTA_WEIGHTS_NAME))
    with torch.no_grad():
        for name in metadata.tensors:
            # Under ZeRO-3 each rank writes the gathered tensor; rank 0's copy is the one partitioned back.
            with gathered(params[name], modifier_rank=0):
                params[name].copy_(tensors[name])
    return base_model


class FFNDeltaCallback(TrainerCallback):
    """Write `checkpoint-N/ffn_delta/` next to every checkpoint the trainer saves (`slam_save_delta=True`).

    Runs on every rank, because gathering ZeRO-3 partitions is collective; only the main process writes.
    """

    def on_save(self, args, state, control, model=None, **kwargs):
        checkpoint = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        save_ffn_delta(model, os.path.join(checkpoint, DELTA_DIR_NAME))
