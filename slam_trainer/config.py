"""`SelectiveFFNConfig`: `trl.SFTConfig` plus the choices of SLAM's selective FFN training."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from transformers.trainer_utils import HubStrategy
from transformers.utils import logging
from trl import SFTConfig

from slam_trainer.architectures import validate_layers, validate_projections
from slam_trainer.errors import ConfigError
from slam_trainer.precision import TRAINABLE_DTYPES, check_trainable_dtype
from slam_trainer.probe.settings import DEFAULTS as PROBE_DEFAULTS
from slam_trainer.probe.settings import REGIONS


logger = logging.get_logger(__name__)


MAX_LAYER_INDEX = 100_000  # ours: far above any model's depth (a few hundred layers), far below a range's memory


def cpu_training_defaults() -> dict[str, Any]:
    """The training arguments of a short run on the CPU, shared by the demo, the evidence benchmark and the tests: a
    new dict to unpack into `SelectiveFFNConfig`, `SFTConfig` or `TrainingArguments` (to change one of its values,
    merge first: `{**cpu_training_defaults(), "save_strategy": "steps"}`).

    float32 (`bf16=False`: `SFTConfig` asks for bf16 by default, bf16 matmuls are slow on CPUs without AMX or
    AVX512-BF16, and float32 keeps results the same across CPUs), no activation
    checkpointing (recomputing costs time, and a CPU run has the memory), no checkpoints, no experiment trackers and no
    progress bars.
    """
    return {
        "use_cpu": True,
        "bf16": False,
        "activation_checkpointing": False,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
    }


def parse_layers(value: Any) -> list[int] | str:
    """Accept `"auto"`, a list of ints, or a string such as `"0,1,2"`, `"0-5"`, `"[0, 1, -1]"`."""
    if isinstance(value, str):
        text = value.strip()
        if text == "auto":
            return "auto"
        try:
            if text.startswith("["):
                value = json.loads(text)
            else:
                value = []
                for part in filter(None, (p.strip() for p in text.split(","))):
                    start, sep, stop = part.partition("-") if not part.startswith("-") else (part, "", "")
                    bounds = (int(start), int(stop)) if sep else (int(part),)
                    if any(abs(bound) > MAX_LAYER_INDEX for bound in bounds):
                        raise ConfigError(
                            f"`slam_layers` {part!r} names layer indices beyond {MAX_LAYER_INDEX:,}; no model has so "
                            "many layers. Give indices such as '0-5'."
                        )
                    value += list(range(bounds[0], bounds[-1] + 1))
        except ConfigError:
            raise
        except ValueError:
            raise ConfigError(
                f"`slam_layers` must be 'auto' or layer indices such as '0,1,2', '0-5' or '[0, -1]', got {text!r}."
            ) from None
    try:
        return validate_layers(value, "slam_layers")
    except TypeError as error:
        raise ConfigError(f"{error} Use 'auto' or layer indices such as [0, 1, 2].") from None


@dataclass
class SelectiveFFNConfig(SFTConfig):
    r"""
    Configuration for [`SelectiveFFNTrainer`]: everything of [`~trl.SFTConfig`], plus SLAM's choice of what to train.

    Parameters:
        slam_layers (`list[int]` or `str`, *optional*, defaults to `"auto"`):
            Decoder layers whose FFN sub-layers train (0-indexed; negatives count from the top; gaps allowed). The
            SLAM paper trains layers 0-5 of LLaMA-2-13B (its 7B script: 0-4). `"auto"` measures which layers'
            FFN neurons behave language-specifically on parallel text and trains the `slam_num_layers` best.
            On the command line: `auto`, `0,1,2`, or `0-5`.
        slam_num_layers (`int`, *optional*, defaults to `6`):
            How many layers auto mode chooses (the paper's "about 6 layers").
        slam_projections (`list[str]`, *optional*, defaults to `["up", "down"]`):
            FFN roles to train. The default is the official SLAM code's (`up_proj` and `down_proj`; `gate_proj`
            frozen); `all` adds the gate; `router` adds an MoE layer's router.
        slam_probe_dataset (`str`, *optional*):
            Parallel text for auto mode: a jsonl/json file of rows `id`, `lang`, `text` (or `question`). When
            absent, the training rows' parallel questions are probed (rows with `id`/`lang`/`question`, or SLAM's
            one-stage set; the first 200 ids), else a small parallel corpus built into the package.
        slam_probe_region (`str`, *optional*, defaults to `"lower_half"`):
            Where auto mode may choose layers: `"lower_half"` (the SLAM paper: language alignment happens in the
            lower layers) or `"all"` (LAPE finds language-specific neurons at the bottom and the top). The same
            default as `slam identify --region`.
        slam_extra_trainable (`list[str]` or `str`, *optional*):
            More tensors to train, matched as PEFT matches `target_modules`: a list holds the aliases `embeddings`,
            `lm_head`, `final_norm` or module/parameter names matched exactly or as a dotted suffix; a string is a
            regex that must match a whole name. As TRL's `lora_target_modules`, a list of one item becomes that
            string, so on the command line one value is a regex (`--slam_extra_trainable 'model\.norm'`) and two or
            more are names (`--slam_extra_trainable embeddings lm_head`). Needed e.g. after adding language tokens
            to the vocabulary. On a model whose `lm_head` is tied to its input embeddings, training one trains both
            (a warning says so).
        slam_allow_large_extra (`bool`, *optional*, defaults to `False`):
            Let names and regexes in `slam_extra_trainable` select more parameters than the chosen FFN tensors
            hold. Off by default (ours), so that a loose pattern such as `mlp` or `weight` fails instead of quietly
            training most of the model; the aliases are exempt.
        slam_ffn_modules (`dict[str, str]` or `str`, *optional*):
            Explicit FFN projection names relative to a decoder layer, for an architecture not found structurally,
            e.g. `{"up": "mlp.fc_in", "down": "mlp.fc_out"}` (a JSON string on the command line).
        slam_save_delta (`bool`, *optional*, defaults to `False`):
            Also write `checkpoint-N/ffn_delta/` (see `save_ffn_delta`) at every checkpoint: a few percent of the full
            weights, enough to rebuild the model from the base. Full checkpoints are still written, because resuming
            needs them; set `save_only_model=True` to drop the optimizer state from them.
        slam_trainable_dtype (`str`, *optional*, defaults to `"float32"`):
            The precision policy (ours; the papers train in full precision): `"float32"` holds the trained tensors
            (FFN projections and `slam_extra_trainable`) in float32, with their gradients and optimizer state, while
            every frozen tensor stays as loaded. Load the model in bfloat16 and set `bf16=True`: frozen weights take
            2 bytes each, forward and backward run under autocast, and updates are not rounded to bf16. `"model"`
            keeps the loaded dtype (pure bf16 training of a bf16 model). A combination that cannot run (bf16 frozen
            weights, float32 trained ones, autocast off) fails when the trainer is built. Under DeepSpeed the engine
            casts all weights to its 16-bit dtype and keeps float32 master weights of the trained ones itself.
        slam_push (`str`, *optional*, defaults to `"full"`):
            What `push_to_hub` uploads: `"full"` (the whole model, as `Trainer` does) or `"delta"` (only the trained
            FFN tensors, their metadata, the tokenizer and a card with the three lines that rebuild the model).
            With `push_to_hub=True`, `"delta"` turns `hub_strategy`'s default `"every_save"` into `"end"` (each save
            would upload the whole model) and refuses `"checkpoint"`/`"all_checkpoints"`.
    """

    _VALID_DICT_FIELDS = SFTConfig._VALID_DICT_FIELDS + ["slam_ffn_modules"]

    slam_layers: list[int] | str | None = field(
        default="auto",
        metadata={
            "help": "Decoder layers whose FFN sub-layers train: 'auto', or indices such as '0,1,2' or '0-5' "
            "(negatives count from the top)."
        },
    )
    slam_num_layers: int = field(
        default=6, metadata={"help": "How many layers `slam_layers='auto'` chooses (the paper's about 6)."}
    )
    slam_projections: list[str] = field(
        default_factory=lambda: ["up", "down"],
        metadata={
            "help": "FFN roles to train: up, down, gate, router, or all. Default up+down as in the official SLAM code."
        },
    )
    slam_probe_dataset: str | None = field(
        default=None,
        metadata={
            "help": "Parallel text (jsonl/json: id, lang, text) for auto mode; when absent, the training rows' "
            "parallel questions, else the built-in corpus."
        },
    )
    slam_probe_region: str = field(
        default=PROBE_DEFAULTS["region"],
        metadata={
            "help": "Where `slam_layers='auto'` may choose layers: lower_half (SLAM's claim) or all (LAPE finds "
            "language-specific neurons at the bottom and the top).",
            "choices": list(REGIONS),
        },
    )
    slam_extra_trainable: list[str] | None = field(
        default=None,
        metadata={
            "help": "More tensors to train: aliases embeddings, lm_head, final_norm, or module/parameter names "
            "(exact or dotted suffix); a single value is a full-match regex, as --lora_target_modules."
        },
    )
    slam_allow_large_extra: bool = field(
        default=False,
        metadata={
            "help": "Let names/regexes in slam_extra_trainable select more parameters than the chosen FFN tensors "
            "(refused by default, so that a loose pattern does not train most of the model)."
        },
    )
    slam_ffn_modules: dict[str, str] | str | None = field(
        default=None,
        metadata={"help": 'Explicit FFN module names relative to a layer, as JSON, e.g. \'{"up": "mlp.fc_in"}\'.'},
    )
    slam_save_delta: bool = field(
        default=False,
        metadata={"help": "Also write the trained FFN tensors as a small delta (ffn_delta/) in every checkpoint."},
    )
    slam_trainable_dtype: str = field(
        default="float32",
        metadata={
            "help": "Precision of the trained tensors (ours): float32 keeps them, their gradients and optimizer state "
            "in float32 while frozen weights stay as loaded (load in bf16, set --bf16 true); model keeps the loaded "
            "dtype.",
            "choices": list(TRAINABLE_DTYPES),
        },
    )
    slam_push: str = field(
        default="full",
        metadata={
            "help": "What `push_to_hub` uploads: the full model, or only the FFN delta with a card that says how to "
            "rebuild the model from the base.",
            "choices": ["full", "delta"],
        },
    )

    def __post_init__(self):
        if isinstance(self.slam_ffn_modules, str):  # before TrainingArguments parses it, to name the option
            try:
                self.slam_ffn_modules = json.loads(self.slam_ffn_modules)
            except json.JSONDecodeError as error:
                raise ConfigError(
                    f"`slam_ffn_modules` is not valid JSON ({error.msg} at character {error.pos}); give a mapping "
                    'of role to module name such as \'{"up": "mlp.fc_in", "down": "mlp.fc_out"}\'.'
                ) from None
        super().__post_init__()
        self.slam_layers = parse_layers(self.slam_layers)
        if (
            isinstance(self.slam_num_layers, bool)
            or not isinstance(self.slam_num_layers, int)
            or self.slam_num_layers < 1
        ):
            raise ConfigError(f"`slam_num_layers` must be a positive integer, got {self.slam_num_layers!r}.")
        projections = validate_projections(self.slam_projections, "slam_projections")
        self.slam_projections = ["all"] if projections == "all" else projections
        extra = self.slam_extra_trainable
        if isinstance(extra, (list, tuple)) and len(extra) == 1:  # TRL's convention for `lora_target_modules`
            self.slam_extra_trainable = extra[0]
        elif extra is not None and not isinstance(extra, str):
            self.slam_extra_trainable = list(extra)
        if isinstance(self.slam_extra_trainable, str):  # a regex: refused now, not after the model loads
            try:
                re.compile(self.slam_extra_trainable)
            except re.error as error:
                raise ConfigError(
                    f"`slam_extra_trainable` {self.slam_extra_trainable!r} is read as a regex (one value), and it is "
                    f"not a valid one ({error}); escape it, or give two or more names."
                ) from None
        if self.slam_push not in ("full", "delta"):
            raise ConfigError(f"`slam_push` must be 'full' or 'delta', got {self.slam_push!r}.")
        self.check_delta_push()
        check_trainable_dtype(self.slam_trainable_dtype)
        if self.slam_probe_region not in REGIONS:
            raise ConfigError(
                f"`slam_probe_region` must be one of {', '.join(REGIONS)}, got {self.slam_probe_region!r}."
            )
        if self.slam_ffn_modules is not None and not isinstance(self.slam_ffn_modules, dict):
            raise ConfigError(
                f"`slam_ffn_modules` must be a mapping of role to module name, got {self.slam_ffn_modules!r}."
            )

    def check_delta_push(self) -> None:
        """`Trainer` uploads each checkpoint's whole model at every save unless `hub_strategy="end"`: with
        `slam_push="delta"` only `save_model`/`push_to_hub` may push, and they push the delta. Run at init, by
        `set_push_to_hub` and by the trainer (the fields may be set after init)."""
        if self.slam_push != "delta" or not self.push_to_hub or self.hub_strategy == HubStrategy.END:
            return
        if self.hub_strategy != HubStrategy.EVERY_SAVE:
            raise ConfigError(
                f"`hub_strategy={self.hub_strategy.value!r}` uploads whole checkpoints (every weight of the model), "
                "but `slam_push='delta'` pushes only the trained FFN tensors; use `hub_strategy='end'` (the delta is "
                "pushed when you call `save_model` or `push_to_hub`), or `slam_push='full'`."
            )
        logger.info(
            "slam_push='delta': hub_strategy 'every_save' -> 'end', so that no save uploads the whole model; the "
            "delta is pushed when you call `save_model` or `push_to_hub`."
        )
        self.hub_strategy = HubStrategy.END

    def set_push_to_hub(self, model_id: str, *args, **kwargs):
        """`TrainingArguments.set_push_to_hub`, then `check_delta_push` (its default strategy is `"every_save"`)."""
        result = super().set_push_to_hub(model_id, *args, **kwargs)
        self.check_delta_push()
        return result

    @property
    def slam_projection_roles(self) -> str | list[str]:
        """`slam_projections` in the form `freeze_except_ffn` takes (`"all"` stays a string)."""
        return "all" if self.slam_projections == ["all"] else self.slam_projections
