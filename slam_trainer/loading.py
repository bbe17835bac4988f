"""The one model loader: every sub-command, the trainer, the demo and the benchmarks load a model through it.

`load_model_and_tokenizer(model, model_init_kwargs, ...)` takes any of

- a Hub id or a local model folder,
- an offline short name such as `smollm2-135m-instruct` (`slam_trainer.offline_models`: converted once, cached),
- `tiny:<architecture>` (`slam_trainer.tiny`: a random tiny model and the byte-level tokenizer, built in-process),
- a local PEFT adapter folder (its `adapter_config.json` names the base, which is loaded the same way),

optionally with an FFN delta (`slam_trainer.delta`) applied on top. `model_init_kwargs` are TRL's
(`SFTConfig.model_init_kwargs`): they go to `from_pretrained`, with TRL's defaults, which are the package's:

- `dtype`: `"float32"` unless given; `"auto"` is the checkpoint's stored dtype; a name or a `torch.dtype`.
- `device_map`: none on a CPU or MPS machine and in a DDP/DeepSpeed process (the trainer places the model), else
  `"auto"`; with a `quantization_config`, this process's device (k-bit weights are placed when loaded).
- `trust_remote_code`: false; `revision` also selects the tokenizer's revision.
- the class is the checkpoint's declared architecture (remote code: the most specific auto class its `auto_map`
  declares; causal LM otherwise), as TRL's `SFTTrainer` picks it.

The seed, when given, is set before the weights load (weights a checkpoint lacks and PEFT adapters are drawn at
random). `read_model_config` reads a model's config without its weights, for checks made before loading.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

from slam_trainer.errors import ConfigError, ModelError
from slam_trainer.offline_models import OFFLINE_MODELS


TORCH_DTYPES = ("bfloat16", "float16", "float32")
ADAPTER_CONFIG = "adapter_config.json"


def is_adapter(model: str) -> bool:
    """Whether `model` is a local PEFT adapter folder."""
    return (Path(model) / ADAPTER_CONFIG).is_file()


def adapter_base(model: str) -> str:
    """The base model named in a PEFT adapter's config."""
    from peft import PeftConfig

    return PeftConfig.from_pretrained(model).base_model_name_or_path


def model_source(model: str) -> str:
    """The local folder or Hub id whose config describes `model` (the base model of a PEFT adapter)."""
    from slam_trainer.offline_models import resolve_model_path

    return resolve_model_path(adapter_base(model) if is_adapter(model) else model)


def read_model_config(model: str, revision: str | None = None, trust_remote_code: bool = False):
    """The config of `model` (read without loading weights); a name that is no model is a `ModelError`."""
    from transformers import AutoConfig

    if model.startswith("tiny:"):
        from slam_trainer.tiny import tiny_config

        return tiny_config(model.removeprefix("tiny:"))
    source = model_source(model)
    try:
        return AutoConfig.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
    except OSError as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ModelError(
            f"`model` {model}: not a model directory or Hub id ({reason}); offline short names: "
            f"{', '.join(OFFLINE_MODELS)}; or tiny:<architecture>."
        ) from None
    except ValueError as error:
        raise _remote_code_refusal(error, model) from None


def _remote_code_refusal(error: ValueError, model: str) -> Exception:
    """transformers' refusal of custom modelling code, as advice every `slam` command can follow (its flag), not the
    `trust_remote_code=True` argument of a Python call; any other `ValueError` unchanged."""
    if "trust_remote_code" not in str(error):
        return error
    return ModelError(
        f"`model` {model} comes with its own modelling code (an `auto_map` in its config), which runs only with "
        "--trust_remote_code (`trust_remote_code=True`); it is off by default because that code can do anything. "
        "Read the code first."
    )


def model_init_defaults(model_init_kwargs: dict | None) -> dict:
    """`model_init_kwargs` with the defaults above filled in and `dtype` as a `torch.dtype` (or `"auto"`)."""
    import torch
    from accelerate import PartialState

    kwargs = dict(model_init_kwargs or {})
    state = PartialState()
    if "device_map" not in kwargs:
        if kwargs.get("quantization_config") is not None:
            kwargs["device_map"] = {"": state.local_process_index}
        elif state.device.type in ("cpu", "mps") or state.distributed_type in ("MULTI_GPU", "DEEPSPEED"):
            kwargs["device_map"] = None
        else:
            kwargs["device_map"] = "auto"
    kwargs.setdefault("trust_remote_code", False)
    dtype = kwargs.setdefault("dtype", "float32")
    if dtype in TORCH_DTYPES:
        kwargs["dtype"] = getattr(torch, dtype)
    elif not (dtype in ("auto", None) or isinstance(dtype, torch.dtype)):
        raise ConfigError(
            f"`dtype` must be 'auto', {', '.join(map(repr, TORCH_DTYPES))} or a torch.dtype, got {dtype!r}."
        )
    return kwargs


def _model_class(config):
    """The checkpoint's declared architecture, as TRL's `SFTTrainer` picks it."""
    import transformers
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    architecture = getattr(transformers, (config.architectures or [""])[0], None)
    if architecture is not None:
        return architecture
    auto_map = getattr(config, "auto_map", None) or {}  # remote code: the most specific auto class it declares
    return AutoModelForImageTextToText if "AutoModelForImageTextToText" in auto_map else AutoModelForCausalLM


def tokenizer_source(model: str, tokenizer: str | None = None) -> str:
    """Where the tokenizer of `model` loads from: `tokenizer` when given, else the model (an adapter saved without
    a tokenizer: its base)."""
    from slam_trainer.offline_models import resolve_model_path

    if tokenizer is not None:
        return resolve_model_path(tokenizer)
    if is_adapter(model):
        return model if (Path(model) / "tokenizer_config.json").exists() else model_source(model)
    return resolve_model_path(model)


def load_tokenizer(
    model: str,
    tokenizer: str | None = None,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
    processor: bool = False,
):
    """The tokenizer of `model` (see `tokenizer_source`); `processor=True` loads it with `AutoProcessor`."""
    from transformers import AutoProcessor, AutoTokenizer

    if model.startswith("tiny:") and tokenizer is None:
        from slam_trainer.tiny import build_tiny_tokenizer

        return build_tiny_tokenizer()
    source = tokenizer_source(model, tokenizer)
    auto_class = AutoProcessor if processor else AutoTokenizer
    try:
        return auto_class.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
    except OSError:
        argument = "tokenizer" if tokenizer else "model"
        raise ModelError(
            f"`{argument}` {source}: no tokenizer there; pass a local model folder or a Hub id (downloaded ones only "
            "when offline)."
        ) from None
    except ValueError as error:
        raise _remote_code_refusal(error, tokenizer or model) from None


def load_model(
    model: str,
    model_init_kwargs: dict | None = None,
    *,
    delta: str | None = None,
    seed: int | None = None,
    merge_adapter: bool = True,
    tiny_overrides: dict | None = None,
    tokenizer=None,
):
    """The model alone (see `load_model_and_tokenizer`), for callers that bring their own tokenizer or need none.
    A `delta` with L² tags needs that `tokenizer` (loaded): the tags are added to it (`load_ffn_delta`)."""
    from transformers import set_seed

    if not isinstance(model, str) or not model:
        raise ConfigError(
            "`model_name_or_path` is required: a Hub id, a local folder, an offline short name such as "
            "'smollm2-135m-instruct', or 'tiny:llama'."
        )
    if seed is not None:
        set_seed(seed)
    if model.startswith("tiny:"):
        from slam_trainer.tiny import build_tiny_model

        loaded = build_tiny_model(model.removeprefix("tiny:"), **(tiny_overrides or {}))
    else:
        if delta is not None and is_adapter(model):
            raise ConfigError("`delta` applies to a full base model, not to a PEFT adapter given as the model.")
        loaded = _load_weights(model, model_init_defaults(model_init_kwargs), merge_adapter)
    if delta is not None:
        from slam_trainer.delta import load_ffn_delta

        load_ffn_delta(loaded, delta, tokenizer=tokenizer)
    return loaded


def load_model_and_tokenizer(
    model: str,
    model_init_kwargs: dict | None = None,
    *,
    tokenizer: str | None = None,
    delta: str | None = None,
    seed: int | None = None,
    processor: bool = False,
    merge_adapter: bool = True,
    tiny_overrides: dict | None = None,
):
    """(model, tokenizer) for `model`; see the module docstring for what `model` may name and the defaults.

    Parameters:
        model (`str`):
            Hub id, local folder, offline short name, `tiny:<architecture>` or local PEFT adapter folder.
        model_init_kwargs (`dict`, *optional*):
            Keyword arguments of `from_pretrained` (TRL's `model_init_kwargs`): `dtype`, `device_map`, `revision`,
            `trust_remote_code`, `attn_implementation`, `quantization_config`, ...
        tokenizer (`str`, *optional*):
            Load the tokenizer from here instead (default: the model's; an adapter saved without one: its base's).
        delta (`str`, *optional*):
            A saved FFN delta folder, applied in place on top of the loaded model (checked against it first); a
            delta with L² tags adds them to the tokenizer.
        seed (`int`, *optional*):
            Set before the weights load (`transformers.set_seed`).
        processor (`bool`, defaults to `False`):
            Load the processing class with `AutoProcessor` (as `SFTTrainer` does) instead of `AutoTokenizer`.
        merge_adapter (`bool`, defaults to `True`):
            Merge a PEFT adapter into its base (faster generation); `False` keeps the `PeftModel`.
        tiny_overrides (`dict`, *optional*):
            Config overrides of a `tiny:` model (e.g. `num_layers`, `hidden_size`) and its `seed` (default 0, so that
            a `tiny:` name is the same model whatever the training seed).
    """
    kwargs = dict(model_init_kwargs or {})
    # the revision names the model's (for an adapter: its base's) files, not those of another tokenizer source
    revision = kwargs.get("revision") if tokenizer is None and not is_adapter(model) else None
    remote = kwargs.get("trust_remote_code", False)

    def load_the_tokenizer():
        return load_tokenizer(model, tokenizer, revision=revision, trust_remote_code=remote, processor=processor)

    loaded_tokenizer = load_the_tokenizer() if delta is not None else None  # gets the delta's L² tags, if any
    loaded = load_model(
        model,
        model_init_kwargs,
        delta=delta,
        seed=seed,
        merge_adapter=merge_adapter,
        tiny_overrides=tiny_overrides,
        tokenizer=loaded_tokenizer,
    )
    return loaded, loaded_tokenizer if loaded_tokenizer is not None else load_the_tokenizer()


def refused_global(error: Exception) -> str:
    """The object torch's `weights_only` unpickler refused (e.g. `posix.system`), from its message, for one line."""
    match = re.search(r"GLOBAL (\S+)", str(error))
    return f"it refused {match.group(1)}" if match else "not weights only"


def _load_weights(model: str, kwargs: dict, merge_adapter: bool):
    """The model's weights, with its declared class; a PEFT adapter on its base (merged unless told not to)."""
    adapter = model if is_adapter(model) else None
    base = adapter_base(adapter) if adapter else model
    config = read_model_config(base, kwargs.get("revision"), kwargs["trust_remote_code"])  # fails before weights
    try:
        loaded = _model_class(config).from_pretrained(model_source(base), **kwargs)
    except pickle.UnpicklingError as error:  # torch's weights_only loader refused a pickled weights file
        raise ModelError(
            f"`model` {base}: a weights file holds code or objects other than tensors, which torch refuses to load "
            f"({refused_global(error)}); it is damaged or not from a source you trust. Use its safetensors weights."
        ) from None
    if adapter is None:
        return loaded
    from peft import PeftModel

    loaded = PeftModel.from_pretrained(loaded, adapter)
    return loaded.merge_and_unload() if merge_adapter else loaded
