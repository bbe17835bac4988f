"""`SelectiveFFNCallback`: SLAM's freezing for any `transformers.Trainer` or `trl.SFTTrainer`."""

from __future__ import annotations

from collections.abc import Sequence

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState
from transformers.utils import logging

from slam_trainer.architectures import ROLES
from slam_trainer.freezing import FreezeReport, freeze_except_ffn


logger = logging.get_logger(__name__)


def optimizer_parameters(optimizer) -> list:
    """The model parameters an optimizer updates, through accelerate's and DeepSpeed's wrappers.

    ZeRO-1/2 keep the original (16-bit) parameters in `bit16_groups`, ZeRO-3 in `fp16_groups`; their
    `param_groups` hold flat fp32 partitions instead, which cannot be compared with the model's parameters.
    """
    while not hasattr(optimizer, "bit16_groups") and not hasattr(optimizer, "fp16_groups"):
        inner = getattr(optimizer, "optimizer", None)
        if inner is None or inner is optimizer:
            break
        optimizer = inner
    for attr in ("bit16_groups", "fp16_groups"):
        if hasattr(optimizer, attr):
            return [param for group in getattr(optimizer, attr) for param in group]
    return [param for group in optimizer.param_groups for param in group["params"]]


class SelectiveFFNCallback(TrainerCallback, ExportableState):
    """Freeze all but the chosen layers' FFN projections when the trainer is built, and check the optimizer.

    The freezing runs at `on_init_end`: after `Trainer.__init__` (so after any `resize_token_embeddings` and PEFT
    wrapping done before it) and before the optimizer is created at the start of `train()`, which is the last
    moment at which freezing still shrinks the optimizer. At `on_train_begin` the optimizer must hold exactly the
    trainable parameters, else training stops with an error. The trained layers are stored in
    `trainer_state.json` (`stateful_callbacks`), and a resumed run must train the same ones.

    Parameters:
        layers (`Sequence[int]`):
            Decoder layers to train; negatives count from the top.
        projections (`str` or `Sequence[str]`, *optional*, defaults to `("up", "down")`):
            FFN roles to train (`"gate"`, `"up"`, `"down"`, `"router"`, or `"all"`); the default follows the
            official SLAM code.
        extra (`str` or `Sequence[str]`, *optional*):
            More tensors to train, e.g. `["embeddings", "lm_head"]` (see `freeze_except_ffn`).
        modules (`dict[str, str]`, *optional*):
            Explicit projection names relative to a decoder layer, for architectures not found structurally.

    Example:
        ```python
        trainer = Trainer(model=model, args=args, train_dataset=ds,
                          callbacks=[SelectiveFFNCallback(layers=[0, 1, 2, 3, 4, 5])])
        ```
    """

    def __init__(
        self,
        layers: Sequence[int],
        projections: str | Sequence[str] = ("up", "down"),
        extra: str | Sequence[str] = (),
        modules: dict[str, str] | None = None,
    ):
        layers = [layers] if isinstance(layers, int) else list(layers)
        if not layers:
            raise ValueError("`layers` is empty: name at least one decoder layer to train, e.g. `layers=[0, 1]`.")
        if projections != "all":
            projections = [projections] if isinstance(projections, str) else list(projections)
            unknown = [role for role in projections if role not in ROLES]
            if unknown:
                raise ValueError(f"`projections` has unknown role(s) {unknown}; valid: {', '.join(ROLES)}, or 'all'.")
        self.layers = layers
        self.projections = projections
        self.extra = extra if isinstance(extra, str) else list(extra)
        self.modules = modules
        self.report: FreezeReport | None = None

    def state(self) -> dict:
        report = self.report.to_dict() if self.report is not None else {}
        return {
            "args": {
                "layers": self.layers,
                "projections": self.projections,
                "extra": self.extra,
                "modules": self.modules,
            },
            "attributes": {
                "trained_layers": report.get("layers"),
                "trainable_params": report.get("trainable_params"),
                "trainable_share": report.get("share"),
            },
        }

    def on_init_end(self, args, state, control, model=None, **kwargs):
        self.report = freeze_except_ffn(model, self.layers, self.projections, self.extra, self.modules)
        if self.report.masked_names and args.weight_decay:
            raise ValueError(
                f"`weight_decay={args.weight_decay}` would move the frozen half of the fused tensor(s) "
                f"{', '.join(self.report.masked_names)} (only one of gate/up is trained). Set `weight_decay=0.0`, "
                "or train both halves (add 'gate' and 'up' to the projections)."
            )
        if state.is_world_process_zero:
            logger.info(str(self.report))

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        stored = (state.stateful_callbacks or {}).get(type(self).__name__)
        stored = stored[0] if isinstance(stored, list) else stored
        stored_layers = ((stored or {}).get("attributes") or {}).get("trained_layers")
        if stored_layers is not None and stored_layers != self.report.layers:
            raise ValueError(
                f"The checkpoint being resumed trained layers {stored_layers}, but this run trains "
                f"{self.report.layers}. Resume with the same `slam_layers` (or layers=...) as the original run."
            )
        if optimizer is None:
            return
        in_optimizer = {id(param) for param in optimizer_parameters(optimizer)}
        trainable = {id(param): name for name, param in model.named_parameters() if param.requires_grad}
        missing = sorted(name for pid, name in trainable.items() if pid not in in_optimizer)
        extra = len(in_optimizer - set(trainable))
        if missing or extra:
            raise ValueError(
                f"The optimizer does not hold exactly the SLAM-trainable parameters: {len(missing)} trainable "
                f"tensor(s) missing (e.g. {missing[:3]}) and {extra} frozen tensor(s) present. The optimizer was "
                "probably built before the freezing; pass SelectiveFFNCallback in `callbacks=` of the trainer's "
                "constructor (not `add_callback` after a custom optimizer was created)."
            )
