"""Base model + FFN delta -> a normal model folder (loads with `from_pretrained`, and in vLLM): what `slam merge`
and the demo's last step do.

The base is loaded in the dtype it is stored in, so that the fingerprint check sees the weights the delta was trained
on; the delta is checked and applied, and only then is the model cast to `dtype` and saved.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from slam_trainer.errors import ConfigError, ModelError


@dataclass(frozen=True)
class MergeResult:
    """What `merge_ffn_delta` wrote."""

    out: str
    tensors: int
    layers: list[int]
    dtype: str
    tokenizer_saved: bool
    tags: tuple[str, ...] = ()

    def describe(self, base: str) -> str:
        """What `slam merge` prints (and the demo's merge step)."""
        tags = f", L² tags {' '.join(self.tags)}" if self.tags else ""
        line = f"slam merge: {base} + {self.tensors} delta tensors (layers {self.layers}{tags}) -> {self.out}"
        line += f" ({self.dtype})"
        if self.tokenizer_saved:
            return line
        return f"slam merge: no tokenizer found with the base {base!r}; wrote the model only.\n{line}"


def check_merge_output(out: str) -> None:
    """The output folder must be new or empty: a merge never mixes its files with an earlier model's."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"`out` {out!r} is a file; choose a new directory.")
    if os.path.isdir(out) and os.listdir(out):
        raise ConfigError(f"`out` {out!r} exists and is not empty; choose a new directory.")


def merge_ffn_delta(
    base: str,
    delta: str,
    out: str,
    *,
    revision: str | None = None,
    delta_revision: str | None = None,
    dtype: str = "auto",
    trust_remote_code: bool = False,
) -> MergeResult:
    """Apply the FFN delta `delta` (a folder, one of its files, or a Hub repo id) to `base` and save the result (and
    the base's tokenizer, when it has one) to `out`. A delta with L² tags adds them to the tokenizer, which it then
    needs.

    Parameters:
        base (`str`): The base model (Hub id, folder or offline short name) the delta was trained on.
        delta (`str`): The delta (`slam_trainer.delta.save_ffn_delta`'s folder, one of its files, or a Hub repo).
        out (`str`): A new or empty folder.
        revision (`str`, *optional*): Revision of the base (default: the one the delta records).
        delta_revision (`str`, *optional*): Revision of the delta, when it is a Hub repo.
        dtype (`str`, defaults to `"auto"`): dtype to save in (`auto`: the base's stored dtype).
        trust_remote_code (`bool`, defaults to `False`): Allow custom modelling code of the base.
    """
    import torch

    from slam_trainer.delta import resolve_delta_directory, verify_ffn_delta
    from slam_trainer.loading import load_model, load_tokenizer

    check_merge_output(out)
    if base.startswith((".", "/")) and not os.path.isdir(base):
        raise ConfigError(f"`base` {base!r}: no such model directory.")
    delta_dir = resolve_delta_directory(delta, delta_revision)
    metadata = verify_ffn_delta(delta_dir)  # a missing, damaged or incomplete delta fails before the base loads
    revision = revision or metadata.base_revision
    check_base_config(base, metadata, revision, trust_remote_code)  # config.json: architecture and depth
    try:
        tokenizer = load_tokenizer(base, revision=revision, trust_remote_code=trust_remote_code)
    except (ModelError, ValueError):
        tokenizer = None
    tags = tuple(metadata.added_tokens or ())
    if tokenizer is None and tags:
        raise ModelError(
            f"The delta adds the L² tags {', '.join(tags)}, but the base {base!r} has no tokenizer to add them to; "
            "merge onto a base folder that holds its tokenizer."
        )
    model_init_kwargs = dict(revision=revision, dtype="auto", trust_remote_code=trust_remote_code, device_map=None)
    model = load_model(base, model_init_kwargs, delta=delta_dir, tokenizer=tokenizer)  # tags go into the tokenizer
    if dtype != "auto":
        model.to(getattr(torch, dtype))
    with _writing(out) as folder:  # whole or not at all: a kill leaves no half model at `out`
        model.save_pretrained(folder)
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)
    saved_dtype = str(model.dtype).removeprefix("torch.")
    return MergeResult(out, len(metadata.tensors), list(metadata.layers), saved_dtype, tokenizer is not None, tags)


def check_base_config(base: str, metadata, revision: str | None, trust_remote_code: bool) -> None:
    """The base's config (no weights) must declare the delta's architecture and hold its layers."""
    import transformers

    from slam_trainer.loading import read_model_config

    config = read_model_config(base, revision, trust_remote_code)
    declared = (getattr(config, "architectures", None) or [""])[0]
    if hasattr(transformers, declared) and declared != metadata.architecture:  # the class `load_model` would pick
        raise ModelError(
            f"The delta was trained on a {metadata.architecture} ({metadata.base_model or 'an unnamed model'}), but "
            f"`base` {base} is a {declared} (its config.json); pass the base the delta was trained on."
        )
    total = getattr(config.get_text_config(), "num_hidden_layers", None)
    if isinstance(total, int) and metadata.layers and max(metadata.layers) >= total:
        raise ModelError(
            f"The delta holds layer {max(metadata.layers)} but `base` {base} has {total} decoder layers; pass the "
            "base the delta was trained on."
        )


@contextmanager
def _writing(out: str) -> Iterator[str]:
    """A hidden folder beside `out` to write into, renamed to `out` when the block ends without an error; one left by
    a killed run is removed first (it is ours by its name)."""
    parent, name = os.path.split(os.path.abspath(out))
    partial = os.path.join(parent, f".{name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    try:
        yield partial
        if os.path.isdir(out):
            os.rmdir(out)  # empty: `check_merge_output` said so
        os.replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
