"""FFN-delta checkpoints: only the tensors SLAM trained, plus what is needed to put them back on the right base.

SLAM trains a few layers' FFN projections (6.5-8% of a 7B/13B model), so the trained model is the base model plus
those tensors. A delta directory holds:

- `ffn_delta.safetensors`: the trained tensors, whole, under their `model.named_parameters()` names. A fused tensor
  of which only one half trained (Phi-3's `gate_up_proj` when only `up` trains) is stored whole: simplest and exact.
- `slam_delta.json`: base model id and revision, architecture, layers, projections, tensor shapes and dtype, a
  SHA-256 checksum of every tensor (dtype, shape and bytes), the package version, and a fingerprint of the base
  weights the delta applies to.

A model that learnt L² language tags (`add_language_tokens`) also needs its tags back: the delta then carries the
tag rows of the input embedding and of an untied output layer (`<matrix name>:tag_rows`, one row per tag, in token-id
order), the tags with their ids (`added_tokens`) and the trained vocabulary size (`vocab_size`); it is format v3.
`load_ffn_delta(base, path, tokenizer=...)` adds the tags to the base's tokenizer (checking they get the recorded
ids), resizes the base's embeddings to `vocab_size` and writes the rows, so that the result equals the trained model
tensor for tensor. A delta without tags stays v2.

Integrity (ours): both files are written under temporary names and renamed into place, the weights first and
`slam_delta.json` last, so a kill never leaves a delta that looks complete: either the old delta stays whole, or the
weights no longer match the checksums the JSON records and loading refuses them. `load_ffn_delta` checks everything
before it writes the first tensor into the base: names (both ways), shapes, dtypes, checksums, finiteness, then the
base's architecture, shapes and fingerprint. A delta is applied whole or not at all.

The base fingerprint (our choice; the papers have no such thing) is a SHA-256 over (a) the name and shape of every
parameter of the model and (b) the values, rounded to bfloat16, of the parameters of the input embeddings and of the
first and last decoder layers that the delta does *not* hold. (a) catches another architecture or size; (b) catches
another checkpoint of the same shape (an instruct vs. a base model, another fine-tune) without reading all of a 70B
model. Rounding to bfloat16 makes the fingerprint the same whether the base is loaded in float32 or bfloat16 (a fp32
checkpoint loaded with `dtype=torch.bfloat16` rounds the same way); a float16 load rounds differently and is not
recognised (load the base in its stored dtype, apply the delta, then cast, as `slam merge --dtype` does). A base
that differs only in layers outside (b), or only below bfloat16 precision there, is not detected.

Under DeepSpeed ZeRO-3 the parameters are partitioned: saving and fingerprinting gather one tensor at a time with
`deepspeed.zero.GatheredParameters` (under FSDP2: `DTensor.full_tensor()`), which is collective, so every rank must
call `save_ffn_delta`; only the main process writes. A PEFT (SLAM + LoRA) model is out of scope: its adapter already
is the small artefact (`model.save_pretrained`).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import TrainerCallback
from transformers.utils import logging

from slam_trainer.architectures import ROLES, get_architecture_map
from slam_trainer.distributed import (
    deepspeed_master,
    full_shape,
    full_tensor,
    gathered,
    is_main_process,
    model_class_name,
)
from slam_trainer.errors import ConfigError, ModelError
from slam_trainer.l2.tag_rows import (
    TAG_ROWS,
    installed_tag_rows,
    record_tag_tokens,
    tag_tokens,
    vocabulary_matrices,
)
from slam_trainer.version import __version__


logger = logging.get_logger(__name__)

DELTA_WEIGHTS_NAME = "ffn_delta.safetensors"
DELTA_CONFIG_NAME = "slam_delta.json"
DELTA_DIR_NAME = "ffn_delta"  # sub-directory of a checkpoint or output_dir holding a delta
DELTA_FORMAT = "slam-ffn-delta"
DELTA_FORMAT_VERSION = 3  # 2: per-tensor checksums and the bfloat16-rounded base fingerprint; 3: L² tag rows
_TAG_FIELDS = ("added_tokens", "vocab_size")  # what v3 adds to v2
TAG_ROWS_KEY = ":tag_rows"  # suffix of a matrix name: the tensor holding that matrix's tag rows
FINGERPRINT_PREFIX = "sha256-bf16:"
_LAYER_INDEX = re.compile(r"\.(\d+)\.")  # a decoder layer's index in a parameter name: `model.layers.3.mlp...`
_HASH_CHUNK = 1 << 24  # about this many elements per hashed block: bounds the copy of a large embedding


@dataclass
class DeltaMetadata:
    """What `slam_delta.json` records; see the module docstring for the fingerprint and the checksums."""

    base_model: str | None
    base_revision: str | None
    architecture: str
    model_type: str | None
    layers: list[int]
    projections: list[str]
    dtype: str
    base_fingerprint: str
    tensors: dict[str, list[int]] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)
    slam_trainer_version: str = ""
    format: str = DELTA_FORMAT
    format_version: int = DELTA_FORMAT_VERSION
    added_tokens: dict[str, int] | None = None
    vocab_size: int | None = None

    @classmethod
    def read(cls, directory: str) -> DeltaMetadata:
        """The metadata of the delta in `directory`; a clear error when it is missing, damaged or of another format."""
        path = os.path.join(directory, DELTA_CONFIG_NAME)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{directory!r} is not an FFN delta: it has no {DELTA_CONFIG_NAME}. Pass the directory written by "
                "`save_ffn_delta` (or a Hub repo id holding one)."
            )
        try:
            with open(path, encoding="utf-8") as handle:
                values = json.load(handle)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ModelError(f"{path} is not valid JSON ({error}): the delta is damaged; save it again.") from None
        if not isinstance(values, dict) or values.get("format") != DELTA_FORMAT:
            raise ModelError(f"{path} is not the metadata of an FFN delta (no `format: {DELTA_FORMAT}`).")
        version = values.get("format_version")
        if not isinstance(version, int) or version > DELTA_FORMAT_VERSION:
            raise ModelError(
                f"{path} is {DELTA_FORMAT!r} v{version}; this slam-trainer reads v{DELTA_FORMAT_VERSION}. Upgrade "
                "slam-trainer."
            )
        if version < 2:
            raise ModelError(
                f"{path} is {DELTA_FORMAT!r} v{version}, written by an older slam-trainer without tensor checksums; "
                f"save the delta again with this version (v{DELTA_FORMAT_VERSION})."
            )
        expected = {item.name for item in fields(cls)} - (set(_TAG_FIELDS) if version == 2 else set())
        if set(values) != expected:
            wrong = sorted(set(values) ^ expected)
            raise ModelError(f"{path}: unexpected or missing field(s) {', '.join(wrong)}: the delta is damaged.")
        metadata = cls(**values)
        shapes_ok = isinstance(metadata.tensors, dict) and all(
            isinstance(shape, list) and all(isinstance(size, int) for size in shape)
            for shape in metadata.tensors.values()
        )
        if (
            not shapes_ok
            or not isinstance(metadata.checksums, dict)
            or set(metadata.checksums) != set(metadata.tensors)
        ):
            raise ModelError(f"{path}: `tensors` and `checksums` must name the same tensors: the delta is damaged.")
        if version == 3 and not _tags_are_valid(metadata):
            raise ModelError(
                f"{path}: `added_tokens` and `vocab_size` do not describe a vocabulary: the delta is damaged."
            )
        metadata._check_layers_listed(path)
        return metadata

    @property
    def tag_ids(self) -> list[int]:
        """Token ids of the tags the delta carries, ascending (empty without tags)."""
        return sorted((self.added_tokens or {}).values())

    def _check_layers_listed(self, path: str) -> None:
        """`layers` and `projections` must be lists of the right kind, and `layers` the layer indices the tensor names
        hold (the first `.N.` of each; an edited list would make `slam merge` report layers it did not change)."""
        if not isinstance(self.layers, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in self.layers
        ):
            raise ModelError(f"{path}: `layers` must be a list of layer indices, got {self.layers!r}: it was edited.")
        if not isinstance(self.projections, list) or not all(role in ROLES for role in self.projections):
            raise ModelError(
                f"{path}: `projections` must list roles among {', '.join(ROLES)}, got {self.projections!r}: it was "
                "edited."
            )
        named = sorted({int(match.group(1)) for name in self.tensors if (match := _LAYER_INDEX.search(name))})
        if named != sorted(self.layers):
            raise ModelError(
                f"{path} lists layers {sorted(self.layers)} but its tensors are in layers {named}: the file was "
                "edited or comes from another save; save the delta again."
            )

    def check_against(self, model: nn.Module, path) -> None:
        """`layers` and `projections` must be what the tensors are in `model`'s architecture map."""
        layers, roles = _layers_and_roles(model, list(self.tensors))
        if layers != sorted(self.layers) or roles != [role for role in ROLES if role in self.projections]:
            raise ModelError(
                f"The delta at {path!r} lists layers {sorted(self.layers)} and projections {self.projections}, but "
                f"its tensors are layers {layers} and projections {roles} of this architecture: {DELTA_CONFIG_NAME} "
                "was edited or comes from another save; save the delta again."
            )

    def write(self, path: str) -> None:
        """Write the metadata as JSON to the file `path` (a delta without tags as v2, which older readers take)."""
        values = asdict(self)
        if self.format_version == 2:
            values = {key: value for key, value in values.items() if key not in _TAG_FIELDS}
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(values, handle, indent=2)
            handle.write("\n")


def _tags_are_valid(metadata: DeltaMetadata) -> bool:
    tokens, size = metadata.added_tokens, metadata.vocab_size
    return (
        isinstance(tokens, dict)
        and bool(tokens)
        and isinstance(size, int)
        and all(isinstance(index, int) and 0 <= index < size for index in tokens.values())
        and len(set(tokens.values())) == len(tokens)
    )


def _refuse_peft(model: nn.Module) -> None:
    if hasattr(model, "peft_config"):
        raise ModelError(
            f"{type(model).__name__} is a PEFT model: its adapter already is the small artefact of a SLAM + LoRA "
            "run. Save it with `model.save_pretrained(path)` (or merge it with `model.merge_and_unload()`) instead "
            "of `save_ffn_delta` / `load_ffn_delta`."
        )


def base_fingerprint(model: nn.Module, delta_names, tag_ids=()) -> str:
    """SHA-256 of the base weights a delta with tensors `delta_names` applies to (see the module docstring).

    With `tag_ids` (a delta with L² tags) the vocabulary matrices count without their tag rows, in shape and values:
    the trained model (tags appended) and the base it came from (no tags yet) then give the same fingerprint.
    """
    delta_names = set(delta_names)
    params = {name: param for name, param in model.named_parameters() if not name.endswith(TAG_ROWS)}
    tagged = set(vocabulary_matrices(model)) if tag_ids else set()
    digest = hashlib.sha256()
    for name in sorted(params):
        shape = list(full_shape(params[name]))
        if name in tagged:
            shape[0] -= sum(index < shape[0] for index in tag_ids)
        digest.update(f"{name}:{shape};".encode())
    architecture = get_architecture_map(model)
    layer_prefixes = (f"{architecture.layers_path}.0.", f"{architecture.layers_path}.{architecture.num_layers - 1}.")
    embeddings = {id(p) for p in model.get_input_embeddings().parameters()}
    hashed = [
        name
        for name, param in params.items()
        if name not in delta_names and (id(param) in embeddings or name.startswith(layer_prefixes))
    ]
    for name in hashed:
        param = params[name]
        with gathered(param):
            value = full_tensor(param).detach()
            rows = value.reshape(value.shape[0] if value.dim() else 1, -1)
            kept = torch.ones(rows.shape[0], dtype=torch.bool, device=rows.device)
            if name in tagged:  # the rows that are not tags, in order: the bytes the base had before tags were added
                kept[[index for index in tag_ids if index < rows.shape[0]]] = False
            step = max(1, _HASH_CHUNK // max(1, rows.shape[1]))
            for start in range(0, rows.shape[0], step):
                block = rows[start : start + step][kept[start : start + step]]
                digest.update(block.to("cpu", torch.bfloat16).contiguous().view(torch.int16).numpy().tobytes())
    return FINGERPRINT_PREFIX + digest.hexdigest()


def _dtype_name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def tensor_checksum(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and bytes, as recorded in `slam_delta.json` at saving."""
    digest = hashlib.sha256(f"{_dtype_name(tensor)}{list(tensor.shape)};".encode())
    digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy())
    return "sha256:" + digest.hexdigest()


def _trained_names(model: nn.Module) -> list[str]:
    names = [name for name, param in model.named_parameters() if param.requires_grad and not name.endswith(TAG_ROWS)]
    if not names or len(names) == len(list(model.parameters())):
        raise ModelError(
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
            trainer, whose `slam_freeze_report` names the trained tensors. Under ZeRO-3 and FSDP2 every rank must call
            this.
        path (`str` or `os.PathLike`):
            Output directory; created if needed. Only the main process writes, atomically (see the module docstring).
        base_model (`str`, *optional*):
            Hub id (or path) of the base model, recorded for `slam merge` and the model card; defaults to the
            model's `config.name_or_path` (an offline model's short name when it was loaded by one).
        base_revision (`str`, *optional*):
            Revision of the base model (a Hub commit or tag); recorded only when given.

    Returns:
        `DeltaMetadata`: what was written to `slam_delta.json`.
    """
    report = getattr(model_or_trainer, "slam_freeze_report", None)
    model = model_or_trainer.model if hasattr(model_or_trainer, "slam_freeze_report") else model_or_trainer
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"`model_or_trainer` must be a model or a `SelectiveFFNTrainer`, got {type(model_or_trainer).__name__}."
        )
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"`path` must be a directory path, got {type(path).__name__}.")
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(f"`path` {path!r} is a file; `save_ffn_delta` writes a directory there.")
    _refuse_peft(model)
    names = report.trainable_names if report is not None else _trained_names(model)
    params = dict(model.named_parameters())
    tensors, dtypes = _trained_values(params, names)
    tags = tag_tokens(model)
    tag_rows, tag_dtypes, tag_shapes = _tag_rows(model, names)
    tensors.update(tag_rows)
    dtypes |= tag_dtypes
    shapes = {name: list(full_shape(params[name])) for name in names} | tag_shapes
    fingerprint = base_fingerprint(model, names, sorted(tags.values()))
    layers, roles = (report.layers, report.projections) if report is not None else _layers_and_roles(model, names)
    config = model.config
    metadata = DeltaMetadata(
        base_model=base_model or _base_model_name(config.name_or_path),
        base_revision=base_revision,
        architecture=model_class_name(model),
        model_type=getattr(config, "model_type", None),
        layers=list(layers),
        projections=list(roles),
        dtype=",".join(sorted(dtypes)),
        base_fingerprint=fingerprint,
        tensors=shapes,
        slam_trainer_version=__version__,
        format_version=3 if tags else 2,
        added_tokens=tags or None,
        vocab_size=full_shape(model.get_input_embeddings().weight)[0] if tags else None,
    )
    if is_main_process():
        if any(not torch.isfinite(tensor).all() for tensor in tensors.values()):
            logger.warning(
                f"The delta saved to {path} holds NaN or infinite values (a diverged run?); loading refuses it."
            )
        metadata.checksums = {name: tensor_checksum(tensor) for name, tensor in tensors.items()}
        _write_delta(path, tensors, metadata)
    return metadata


def _base_model_name(name_or_path: str | None) -> str | None:
    """The base as the user named it: an offline model's short name rather than this machine's cache folder."""
    from slam_trainer.offline_models import short_name_of

    return short_name_of(name_or_path) or name_or_path or None


def _trained_values(params: dict[str, nn.Parameter], names: list[str]) -> tuple[dict[str, torch.Tensor], set[str]]:
    """The whole values of the trained tensors (on the main process; empty elsewhere) and their dtype names.

    Collective under ZeRO-3 and FSDP2. Under DeepSpeed with an optimizer, a tensor's value is DeepSpeed's float32
    master copy (what the optimizer trains; the model holds it rounded to 16 bits), so the delta keeps the trained
    precision as it does without DeepSpeed (see `slam_trainer.precision`).
    """
    tensors, dtypes = {}, set()
    for name in names:
        param = params[name]
        master = deepspeed_master(param)
        with gathered(param) if master is None else nullcontext():
            value = full_tensor(param) if master is None else master
            dtypes.add(_dtype_name(value))
            if is_main_process():
                tensors[name] = value.detach().to("cpu", copy=True).contiguous()
    return tensors, dtypes


def _tag_rows(model: nn.Module, names: list[str]) -> tuple[dict[str, torch.Tensor], set[str], dict[str, list[int]]]:
    """The L² tag rows to save, keyed `<matrix>:tag_rows` (values on the main process, empty elsewhere; dtype names;
    shapes): the small trained parameter where SLAM trained them alone (as the FFN tensors, DeepSpeed's float32
    master copy when there is one), else the matrix's rows; none for a matrix saved whole (in `names`). Collective
    under ZeRO-3."""
    ids = sorted(tag_tokens(model).values())
    values, dtypes, shapes = {}, set(), {}
    installed = installed_tag_rows(model) if ids else {}
    for name, modules in vocabulary_matrices(model).items() if ids else ():
        if name in names:
            continue
        key = name + TAG_ROWS_KEY
        shapes[key] = [len(ids), full_shape(modules[0].weight)[1]]
        if name in installed:
            trained, trained_dtypes = _trained_values({key: installed[name]}, [key])
            values.update(trained)
            dtypes |= trained_dtypes
            continue
        with gathered(modules[0].weight):
            rows = full_tensor(modules[0].weight).detach()[ids]
            dtypes.add(_dtype_name(rows))
            if is_main_process():
                values[key] = rows.to("cpu", copy=True).contiguous()
    return values, dtypes, shapes


def _fsync(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_delta(path: str, tensors: dict[str, torch.Tensor], metadata: DeltaMetadata) -> None:
    """Write both files under temporary names, then rename them into place: the weights first, the JSON last."""
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(glob.escape(path), ".*.tmp-*")):  # left by a save that was killed
        os.remove(stale)
    weights = os.path.join(path, f".{DELTA_WEIGHTS_NAME}.tmp-{os.getpid()}")
    config = os.path.join(path, f".{DELTA_CONFIG_NAME}.tmp-{os.getpid()}")
    save_file(tensors, weights, metadata={"format": "pt"})
    metadata.write(config)
    for temporary in (weights, config):
        _fsync(temporary)
    os.replace(weights, os.path.join(path, DELTA_WEIGHTS_NAME))  # an older JSON no longer matches: refused
    os.replace(config, os.path.join(path, DELTA_CONFIG_NAME))  # now complete
    _fsync(path)


def _looks_like_a_path(path: str) -> bool:
    """Whether `path` cannot be a Hub repo id, so that a missing one is reported as a missing local path."""
    from huggingface_hub.utils import validate_repo_id

    if path.startswith((".", "/", "~")) or path.endswith((".safetensors", ".json")) or path.count("/") > 1:
        return True
    try:
        validate_repo_id(path)
    except ValueError:
        return True
    return False


def resolve_delta_directory(path, revision: str | None = None) -> str:
    """The local directory of a delta: `path` itself, the directory of one of its two files, or a Hub repo id
    downloaded (the delta files only) to the cache. Says what is wrong when `path` is none of these."""
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"`path` of an FFN delta must be a string or path, got {type(path).__name__}.")
    path = os.fspath(path)
    if os.path.isdir(path):
        nested = os.path.join(path, DELTA_DIR_NAME)
        if not os.path.isfile(os.path.join(path, DELTA_CONFIG_NAME)) and os.path.isfile(
            os.path.join(nested, DELTA_CONFIG_NAME)
        ):
            raise FileNotFoundError(f"{path!r} is not an FFN delta itself, but it holds one: pass {nested!r}.")
        return path
    if os.path.isfile(path):
        directory = os.path.dirname(os.path.abspath(path))
        if os.path.basename(path) in (DELTA_WEIGHTS_NAME, DELTA_CONFIG_NAME) and os.path.isfile(
            os.path.join(directory, DELTA_CONFIG_NAME)
        ):
            return directory  # one file of a delta given: its directory is the delta
        raise ModelError(
            f"{path!r} is a file, but an FFN delta is a directory holding {DELTA_WEIGHTS_NAME} and "
            f"{DELTA_CONFIG_NAME} (written by `save_ffn_delta`): pass that directory."
        )
    if _looks_like_a_path(path):
        raise FileNotFoundError(f"No FFN delta at {path!r}: no such file or directory.")
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(path, revision=revision, allow_patterns=[DELTA_WEIGHTS_NAME, DELTA_CONFIG_NAME])
    except (OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise FileNotFoundError(
            f"No FFN delta at {path!r}: it is not a local directory, and the Hub repo of that name could not be "
            f"downloaded ({reason})."
        ) from None


def _read_checked_tensors(directory: str, metadata: DeltaMetadata) -> dict[str, torch.Tensor]:
    """The delta's tensors after checking them against `slam_delta.json`: names both ways, shapes, dtypes, checksums,
    finiteness. Any mismatch raises before the base is touched."""
    path = os.path.join(directory, DELTA_WEIGHTS_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing: the delta in {directory!r} is incomplete; save it again.")
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError) as error:
        raise ModelError(
            f"{path} cannot be read ({error}): it is damaged or cut short; save the delta again."
        ) from None
    listed, found = set(metadata.tensors), set(tensors)
    if listed != found:
        missing, extra = sorted(listed - found), sorted(found - listed)
        raise ModelError(
            f"{path} does not hold the tensors {DELTA_CONFIG_NAME} lists (missing: {missing or 'none'}; not listed: "
            f"{extra or 'none'}): the two files come from different saves; save the delta again."
        )
    dtypes = set(metadata.dtype.split(","))
    for name in sorted(listed):
        tensor = tensors[name]
        if list(tensor.shape) != list(metadata.tensors[name]):
            raise ModelError(
                f"{path}: `{name}` has shape {list(tensor.shape)}, but {DELTA_CONFIG_NAME} records "
                f"{metadata.tensors[name]}: the delta is damaged; save it again."
            )
        if not tensor.is_floating_point() or _dtype_name(tensor) not in dtypes:
            raise ModelError(
                f"{path}: `{name}` is {_dtype_name(tensor)}, but {DELTA_CONFIG_NAME} records {metadata.dtype}: the "
                "delta is damaged; save it again."
            )
        if tensor_checksum(tensor) != metadata.checksums[name]:
            raise ModelError(
                f"{path}: `{name}` does not match the checksum recorded when the delta was saved: the file is "
                "damaged, or the two files come from different saves (a save killed between them); save it again."
            )
        if not torch.isfinite(tensor).all():
            raise ModelError(f"{path}: `{name}` holds NaN or infinite values (a diverged run?); refusing to apply it.")
    return tensors


def verify_ffn_delta(path, revision: str | None = None) -> DeltaMetadata:
    """Check a delta on its own (metadata, then every tensor: names, shapes, dtypes, checksums, finiteness) and return
    its metadata; `slam merge` calls it before loading the base, so that a damaged delta fails in seconds."""
    directory = resolve_delta_directory(path, revision)
    metadata = DeltaMetadata.read(directory)
    _read_checked_tensors(directory, metadata)
    return metadata


def load_ffn_delta(
    base_model: nn.Module, path, *, tokenizer=None, revision: str | None = None, check_base: bool = True
):
    """Apply a delta written by `save_ffn_delta` to `base_model` in place, and return the model.

    Every check runs before the first tensor is written, so a refused delta leaves the base as it was.

    Parameters:
        base_model (`PreTrainedModel`):
            The base the delta was trained from (same architecture, size and weights); its dtype is kept, the delta
            tensors are cast to it.
        path (`str` or `os.PathLike`):
            A delta directory (or one of its two files), or a Hub repo id holding one.
        tokenizer (`PreTrainedTokenizerBase`, *optional*):
            The base's tokenizer; required when the delta carries L² tags, which are added to it (with the ids the
            trained model gave them) before the base's embeddings are resized and the tag rows written.
        revision (`str`, *optional*):
            Revision of the Hub repo, when `path` is a repo id.
        check_base (`bool`, *optional*, defaults to `True`):
            Refuse a base whose fingerprint differs from the one recorded at saving. Turn off only when you know
            the base is right although its frozen weights differ (e.g. it was re-quantized).

    Raises:
        `FileNotFoundError`: no delta at `path`. `ValueError`: the delta is damaged or incomplete (names, shapes,
        dtypes, checksums, NaN/inf), or the base is of another architecture, lacks a tensor of the delta, has another
        shape, another vocabulary, or (with `check_base`) has other weights than the base the delta was trained on;
        or the delta has tags and `tokenizer` is missing or would give them other ids.
    """
    if not isinstance(base_model, nn.Module):
        raise ConfigError(f"`base_model` must be a model (`torch.nn.Module`), got {type(base_model).__name__}.")
    if not isinstance(check_base, bool):
        raise ConfigError(f"`check_base` must be True or False, got {check_base!r}.")
    _refuse_peft(base_model)
    directory = resolve_delta_directory(path, revision)
    metadata = DeltaMetadata.read(directory)
    trained_on = metadata.base_model or "an unnamed model"
    if metadata.base_revision:
        trained_on += f" (revision {metadata.base_revision})"
    if metadata.architecture != type(base_model).__name__:
        raise ModelError(
            f"The delta at {path!r} was trained on a {metadata.architecture} ({trained_on}), but `base_model` is a "
            f"{type(base_model).__name__}. Load the base model it was trained from."
        )
    new_tags = _tags_to_add(base_model, tokenizer, metadata, f"The delta at {path!r}", trained_on)
    _check_shapes(base_model, metadata, f"The delta at {path!r}", trained_on)
    metadata.check_against(base_model, path)
    tensors = _read_checked_tensors(directory, metadata)
    if check_base and base_fingerprint(base_model, metadata.tensors, metadata.tag_ids) != metadata.base_fingerprint:
        raise ModelError(
            f"`base_model` has other weights than the base the delta at {path!r} was trained on ({trained_on}): "
            "the fingerprint of its embeddings and first and last layers differs. Load that base model (and "
            "revision) in float32 or bfloat16 (a float16 load rounds differently: load it in its stored dtype, apply "
            "the delta, then cast); pass `check_base=False` only if you know the difference is harmless."
        )
    if metadata.added_tokens:
        _add_tags(base_model, tokenizer, metadata, new_tags)
    params = dict(base_model.named_parameters())
    with torch.no_grad():
        for name, tensor in tensors.items():
            # Under ZeRO-3 each rank writes the gathered tensor; rank 0's copy is the one partitioned back.
            matrix = name.removesuffix(TAG_ROWS_KEY)
            with gathered(params[matrix], modifier_rank=0):
                if matrix == name:
                    params[name].copy_(tensor)
                else:
                    ids = torch.tensor(metadata.tag_ids, device=params[matrix].device)
                    params[matrix].index_copy_(0, ids, tensor.to(params[matrix]))
    return base_model


def add_delta_tags(tokenizer, path, revision: str | None = None) -> DeltaMetadata:
    """Give `tokenizer` the L² tags of the delta at `path`, with the ids the trained model gave them (a no-op for a
    delta without tags), and return the delta's metadata. `slam eval --delta` calls it before the model loads, so
    that the prompts and the decoding intervention see the tags; `load_ffn_delta` then finds them in place."""
    metadata = DeltaMetadata.read(resolve_delta_directory(path, revision))
    if metadata.added_tokens:
        trained_on = metadata.base_model or "an unnamed model"
        tokenizer.add_tokens(
            _tags_missing(tokenizer, metadata, f"The delta at {path!r}", trained_on), special_tokens=True
        )
    return metadata


def _tags_to_add(model: nn.Module, tokenizer, metadata: DeltaMetadata, delta: str, trained_on: str) -> list[str]:
    """The tags `tokenizer` still lacks, after checking that the base's vocabulary and the tokenizer fit the delta:
    the base has no rows beyond the trained vocabulary but its tags, and the tokenizer gives each tag its id."""
    if not metadata.added_tokens:
        return []
    tags = list(metadata.added_tokens)
    if tokenizer is None:
        raise ConfigError(
            f"{delta} was trained with the L² tags {', '.join(tags)} added to the vocabulary: pass the base's "
            "tokenizer (`tokenizer=`), so that the tags are added to it too."
        )
    rows, size = full_shape(model.get_input_embeddings().weight)[0], metadata.vocab_size
    if rows > size or not set(range(rows, size)) <= set(metadata.tag_ids):
        raise ModelError(
            f"{delta} was trained with a vocabulary of {size} rows ({len(tags)} of them its L² tags), but "
            f"`base_model` has {rows}: it is not the base the delta was trained on ({trained_on})."
        )
    return _tags_missing(tokenizer, metadata, delta, trained_on)


def _tags_missing(tokenizer, metadata: DeltaMetadata, delta: str, trained_on: str) -> list[str]:
    """The delta's tags that `tokenizer` lacks, after checking that it gives (or, added now, would give) each tag the
    id it had in training."""
    tags = sorted(metadata.added_tokens, key=metadata.added_tokens.get)  # added in id order
    vocabulary = tokenizer.get_vocab()
    missing = [tag for tag in tags if tag not in vocabulary]
    given = {tag: vocabulary[tag] for tag in tags if tag in vocabulary}
    given.update({tag: len(tokenizer) + index for index, tag in enumerate(missing)})
    wrong = {tag: index for tag, index in given.items() if index != metadata.added_tokens[tag]}
    if wrong:
        tag, index = next(iter(wrong.items()))
        raise ModelError(
            f"{delta} gave the L² tag {tag!r} the token id {metadata.added_tokens[tag]}, but `tokenizer` "
            f"({len(tokenizer)} tokens) would give it {index}: pass the tokenizer of the base ({trained_on})."
        )
    return missing


def _check_shapes(model: nn.Module, metadata: DeltaMetadata, delta: str, trained_on: str) -> None:
    """Every tensor of the delta fits the base: FFN tensors by shape, a vocabulary matrix after the tags are
    appended, tag rows by width."""
    params = {name: param for name, param in model.named_parameters() if not name.endswith(TAG_ROWS)}
    matrices = vocabulary_matrices(model)
    for name, shape in metadata.tensors.items():
        matrix = name.removesuffix(TAG_ROWS_KEY)
        found = list(full_shape(params[matrix])) if matrix in params else None
        expected = found
        if found is not None and matrix != name:  # tag rows: one per tag, as wide as the matrix
            expected = [len(metadata.tag_ids), found[1]] if matrix in matrices else None
        elif found is not None and matrix in matrices and metadata.added_tokens:  # trained whole, tags appended
            expected = [metadata.vocab_size, *found[1:]]
        if expected is not None and list(shape) == expected:
            continue
        grown = found is not None and shape[1:] == found[1:] and shape[0] > found[0]
        if name in matrices and grown and not metadata.added_tokens:
            raise ModelError(
                f"{delta} holds `{name}` with {shape[0]} rows, but `base_model` has {found[0]}: the delta was "
                "trained with tokens added to the vocabulary, which it does not record (an older slam-trainer). "
                "Add the same tokens to the base and resize its embeddings first, or save the delta again."
            )
        raise ModelError(
            f"{delta} holds `{name}` of shape {shape}, but `base_model` has {found or 'no such parameter'}: it is "
            f"not the base the delta was trained on ({trained_on})."
        )


def _add_tags(model: nn.Module, tokenizer, metadata: DeltaMetadata, new_tags: list[str]) -> None:
    """Add the delta's tags to `tokenizer` and resize `model`'s vocabulary matrices to the trained size; the tag
    rows are written with the other tensors."""
    tokenizer.add_tokens(new_tags, special_tokens=True)
    if full_shape(model.get_input_embeddings().weight)[0] < metadata.vocab_size:
        model.resize_token_embeddings(metadata.vocab_size, mean_resizing=False)  # every new row is a tag row
    record_tag_tokens(model, metadata.added_tokens)


class FFNDeltaCallback(TrainerCallback):
    """Write the FFN delta of a run (`slam_save_delta=True`): `checkpoint-N/ffn_delta/` beside every checkpoint the
    trainer saves, and `output_dir/ffn_delta/` with the final weights when training ends, so that a run with
    `save_strategy="no"` gets its delta too.

    Runs on every rank, because gathering ZeRO-3 partitions is collective; only the main process writes.
    """

    def on_save(self, args, state, control, model=None, **kwargs):
        checkpoint = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        save_ffn_delta(model, os.path.join(checkpoint, DELTA_DIR_NAME))

    def on_train_end(self, args, state, control, model=None, **kwargs):
        path = os.path.join(args.output_dir, DELTA_DIR_NAME)
        metadata = save_ffn_delta(model, path)
        if state.is_world_process_zero:  # printed: a script shows no INFO logs, and this is the run's artefact
            print(f"Wrote the FFN delta of the final weights ({len(metadata.tensors)} tensors) to {path}.")
