"""`SelectiveFFNCallback`: SLAM's freezing for any `transformers.Trainer` or `trl.SFTTrainer`."""

from __future__ import annotations

from collections.abc import Sequence

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from slam_trainer.architectures import validate_layers, validate_projections
from slam_trainer.distributed import uses_fsdp
from slam_trainer.errors import ConfigError, ResumeError
from slam_trainer.freezing import (
    FreezeReport,
    apply_freeze,
    make_inputs_require_grad,
    masked_tensor_names,
    plan_freeze,
)
from slam_trainer.l2.tag_rows import (
    TAG_ROWS,
    check_tag_logits_used,
    installed_tag_rows,
    remove_tag_rows,
    sync_tag_rows,
)
from slam_trainer.precision import apply_precision_policy, check_trainable_dtype


def optimizer_param_groups(optimizer) -> list[tuple[list, dict]]:
    """`(model parameters, group settings)` per param group of an optimizer, through accelerate's and DeepSpeed's
    wrappers (whose `bit16_groups` / `fp16_groups` follow the order of the wrapped optimizer's `param_groups`)."""
    while not hasattr(optimizer, "bit16_groups") and not hasattr(optimizer, "fp16_groups"):
        inner = getattr(optimizer, "optimizer", None)
        if inner is None or inner is optimizer:
            break
        optimizer = inner
    for attr in ("bit16_groups", "fp16_groups"):
        if hasattr(optimizer, attr):
            return [(list(params), group) for params, group in zip(getattr(optimizer, attr), optimizer.param_groups)]
    return [(list(group["params"]), group) for group in optimizer.param_groups]


def optimizer_parameters(optimizer) -> list:
    """The model parameters an optimizer updates, through accelerate's and DeepSpeed's wrappers.

    ZeRO-1/2 keep the original (16-bit) parameters in `bit16_groups`, ZeRO-3 in `fp16_groups`; their
    `param_groups` hold flat fp32 partitions instead, which cannot be compared with the model's parameters.
    """
    return [param for params, _ in optimizer_param_groups(optimizer) for param in params]


def checkpoint_trained_layers(state_callbacks: dict | None) -> list[int] | None:
    """The layers a checkpoint's `SelectiveFFNCallback` trained, from `trainer_state.json`'s `stateful_callbacks`."""
    stored = (state_callbacks or {}).get("SelectiveFFNCallback")
    stored = stored[0] if isinstance(stored, list) else stored
    return ((stored or {}).get("attributes") or {}).get("trained_layers")


def check_resumed_layers(stored_layers: list[int] | None, layers: list[int]) -> None:
    """Refuse to resume a checkpoint that trained other layers: its optimizer state belongs to other tensors."""
    if stored_layers is not None and list(stored_layers) != list(layers):
        raise ResumeError(
            f"The checkpoint being resumed trained layers {stored_layers}, but this run trains {layers}. Resume "
            "with the same `slam_layers` (or layers=...) as the original run."
        )


class SelectiveFFNCallback(TrainerCallback, ExportableState):
    """Freeze all but the chosen layers' FFN projections when the trainer is built, and check the optimizer.

    The freezing runs at `on_init_end`: after `Trainer.__init__` (so after any `resize_token_embeddings` and PEFT
    wrapping done before it) and before the optimizer is created at the start of `train()`, which is the last
    moment at which freezing still shrinks the optimizer. At `on_train_begin` the optimizer must hold exactly the
    trainable parameters, and no param group holding a half-trained fused tensor may decay weights; else training
    stops with an error. A callback added after the trainer was built (`trainer.add_callback`) missed
    `on_init_end`: it refuses to start rather than let the whole model train. The trained layers are stored in
    `trainer_state.json` (`stateful_callbacks`), and a resumed run must train the same ones (with
    `restore_callback_states_from_checkpoint=True` the callback is rebuilt from the checkpoint and adopts the
    freezing already in place when it is the same).

    Parameters:
        layers (`Sequence[int]`):
            Decoder layers to train; negatives count from the top.
        projections (`str` or `Sequence[str]`, *optional*, defaults to `("up", "down")`):
            FFN roles to train (`"gate"`, `"up"`, `"down"`, `"router"`, or `"all"`); the default follows the
            official SLAM code.
        extra (`str` or `Sequence[str]`, *optional*):
            More tensors to train, e.g. `["embeddings", "lm_head"]` (see `freeze_except_ffn` for the matching).
        modules (`dict[str, str]`, *optional*):
            Explicit projection names relative to a decoder layer, for architectures not found structurally.
        allow_large_extra (`bool`, *optional*, defaults to `False`):
            Let names or regexes in `extra` select more parameters than the chosen FFN tensors hold (see
            `freeze_except_ffn`).
        trainable_dtype (`str`, *optional*, defaults to `"float32"`):
            The precision policy (see `slam_trainer.precision`): `"float32"` upcasts the trained tensors (so the
            optimizer keeps float32 state) and leaves the frozen ones as loaded; `"model"` keeps the loaded dtype. A
            half-precision model then needs the Trainer's `bf16=True`; a combination that cannot run fails here,
            when the Trainer is built.
        print_report (`bool`, *optional*, defaults to `True`):
            Print what trains (the layers, tensors and trainable share; `callback.slam_freeze_report`) on the main
            process when the trainer is built. Printed rather than logged, since a script shows no INFO logs.

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
        allow_large_extra: bool = False,
        trainable_dtype: str = "float32",
        print_report: bool = True,
    ):
        self.layers = validate_layers(layers)
        self.projections = validate_projections(projections)
        self.extra = extra if isinstance(extra, str) else list(extra)
        self.modules = modules
        self.allow_large_extra = allow_large_extra
        self.trainable_dtype = check_trainable_dtype(trainable_dtype, "trainable_dtype")
        self.print_report = print_report
        self.slam_freeze_report: FreezeReport | None = None

    def state(self) -> dict:
        report = self.slam_freeze_report.to_dict() if self.slam_freeze_report is not None else {}
        return {
            "args": {
                "layers": self.layers,
                "projections": self.projections,
                "extra": self.extra,
                "modules": self.modules,
                "allow_large_extra": self.allow_large_extra,
                "trainable_dtype": self.trainable_dtype,
            },
            "attributes": {
                "trained_layers": report.get("layers"),
                "trainable_params": report.get("trainable_params"),
                "trainable_share": report.get("share"),
            },
        }

    def _plan(self, model):
        return plan_freeze(
            model, self.layers, self.projections, self.extra, self.modules, allow_large_extra=self.allow_large_extra
        )

    def on_init_end(self, args, state, control, model=None, **kwargs):
        plan = self._plan(model)
        _refuse_weight_decay(plan.report.masked_names, args.weight_decay, "")
        if plan.report.masked_names and uses_fsdp(args):
            raise ConfigError(
                f"FSDP cannot train half of the fused tensor(s) {', '.join(plan.report.masked_names)}: `fully_shard` "
                "replaces the parameters, dropping the gradient mask that keeps the other half frozen. Train both "
                "roles (add 'gate' and 'up' to the projections), or use DeepSpeed (recipes/accelerate/zero2.yaml)."
            )
        if plan.report.tag_rows and uses_fsdp(args):
            raise ConfigError(
                "SLAM does not train L² tag rows alone under FSDP: `fully_shard` replaces the parameters their hooks "
                "use (not tested). Use DeepSpeed (recipes/accelerate/zero3.yaml), or train the embeddings whole "
                "(`slam_extra_trainable=['embeddings', 'lm_head']`)."
            )
        apply_precision_policy(model, plan.to_train, self.trainable_dtype, args)
        apply_freeze(model, plan)
        apply_precision_policy(model, installed_tag_rows(model), self.trainable_dtype, args)  # made by apply_freeze
        self.slam_freeze_report = plan.report
        if args.activation_checkpointing:
            make_inputs_require_grad(model)
        if state.is_world_process_zero and self.print_report:  # printed: a script shows no INFO logs
            print(self.slam_freeze_report)

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if self.slam_freeze_report is None:
            self.slam_freeze_report = self._adopt_freezing(model)
        if set(installed_tag_rows(model)) != set(self.slam_freeze_report.tag_rows):
            raise ConfigError(
                "The L² tag rows were merged into the embeddings when the previous `train()` ended, so this one would "
                "not train them; build a new trainer (resume with `resume_from_checkpoint` to continue a run)."
            )
        check_resumed_layers(checkpoint_trained_layers(state.stateful_callbacks), self.slam_freeze_report.layers)
        if optimizer is None:
            return
        groups = optimizer_param_groups(optimizer)
        in_optimizer = {id(param) for params, _ in groups for param in params}
        trainable = {id(param): name for name, param in model.named_parameters() if param.requires_grad}
        missing = sorted(name for pid, name in trainable.items() if pid not in in_optimizer)
        extra = len(in_optimizer - set(trainable))
        if missing or extra:
            raise ConfigError(
                f"The optimizer does not hold exactly the SLAM-trainable parameters: {len(missing)} trainable "
                f"tensor(s) missing (e.g. {missing[:3]}) and {extra} frozen tensor(s) present. The optimizer was "
                "probably built before the freezing; pass SelectiveFFNCallback in `callbacks=` of the trainer's "
                "constructor (not `add_callback` after a custom optimizer was created)."
            )
        masked_names = self.slam_freeze_report.masked_names
        masked = {id(param) for name, param in model.named_parameters() if name in masked_names}
        for params, group in groups:
            if masked & {id(param) for param in params}:
                _refuse_weight_decay(masked_names, group.get("weight_decay", 0.0), " (a param group of the optimizer)")

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        check_tag_logits_used(model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if control.should_save:  # the checkpoint's weights hold the trained tag rows (ZeRO-3 skips `state_dict()`)
            sync_tag_rows(model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        remove_tag_rows(
            model
        )  # the trained rows go into the matrices: a plain model again, saved as one by ZeRO-3 too

    def _adopt_freezing(self, model) -> FreezeReport:
        """`on_init_end` never ran for this instance: accept the model only if it is frozen exactly as this callback
        would freeze it (a callback rebuilt from a checkpoint's state, replacing the one that froze the model)."""
        plan = self._plan(model)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad and not n.endswith(TAG_ROWS)}
        same_tag_rows = set(installed_tag_rows(model)) == set(plan.report.tag_rows)
        if trainable != set(plan.to_train) or not same_tag_rows or not set(plan.masks) <= masked_tensor_names(model):
            raise ConfigError(
                f"SelectiveFFNCallback(layers={self.layers}) did not freeze this model: it joined the trainer after "
                f"`Trainer.__init__` (`trainer.add_callback`), when freezing can no longer shrink the optimizer, so "
                f"{len(trainable)} tensors would train instead of the {len(plan.to_train)} chosen ones. Pass it in "
                "`callbacks=[...]` of the trainer's constructor (or, when resuming with "
                "`restore_callback_states_from_checkpoint=True`, keep the layers of the checkpoint)."
            )
        return plan.report


def _refuse_weight_decay(masked_names: list[str], weight_decay: float, where: str) -> None:
    if masked_names and weight_decay:
        raise ConfigError(
            f"`weight_decay={weight_decay}`{where} would move the frozen part of the fused tensor(s) "
            f"{', '.join(masked_names)} (only one of gate/up is trained): weight decay shrinks every weight it "
            "holds, gradient or not. Set `weight_decay=0.0` (for a custom optimizer: on the param groups holding "
            "these tensors), or train both roles (add 'gate' and 'up' to the projections)."
        )
