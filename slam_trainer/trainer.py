"""`SelectiveFFNTrainer`: `trl.SFTTrainer` that trains only the chosen layers' FFN sub-layers (SLAM)."""

from __future__ import annotations

import dataclasses
import os

from transformers import Trainer
from transformers.utils import logging
from trl import SFTConfig, SFTTrainer

from slam_trainer.architectures import get_architecture_map
from slam_trainer.callback import SelectiveFFNCallback, check_resumed_layers, checkpoint_trained_layers
from slam_trainer.config import SelectiveFFNConfig
from slam_trainer.delta import FFNDeltaCallback
from slam_trainer.errors import ConfigError
from slam_trainer.hub import SLAM_CITATION, card_section, push_ffn_delta
from slam_trainer.l2.collator import collator_callbacks
from slam_trainer.l2.tag_rows import has_output_tag_rows, tag_tokens
from slam_trainer.loading import load_model, load_model_and_tokenizer


logger = logging.get_logger(__name__)


class SelectiveFFNTrainer(SFTTrainer):
    """`SFTTrainer` for SLAM: everything but the FFN sub-layers of `args.slam_layers` is frozen.

    Takes the same arguments as `trl.SFTTrainer`; the SLAM choices come from `SelectiveFFNConfig` (a plain
    `SFTConfig` is converted, with SLAM's defaults). The freezing itself is a `SelectiveFFNCallback` installed first
    in the callback list, so it runs before the optimizer exists. With a `peft_config`, the adapters are put on the
    chosen layers' chosen projections only ("SLAM + LoRA"): the config's `target_modules` is replaced by those.

    A model given by name is loaded here, as `SFTTrainer` would load it (`args.model_init_kwargs`, the seed, the
    processing class), because auto mode and LoRA targeting need its modules before `SFTTrainer.__init__`.

    After construction, `trainer.slam_freeze_report` (a `FreezeReport`) says what trains; the model card and
    `trainer_state.json` record the layers and the trainable share.
    """

    _tag_names = ["trl", "sft", "slam"]
    _name = "SLAM"
    _paper = {
        "title": "SLAM: Towards Efficient Multilingual Reasoning via Selected Language Alignment",
        "id": "2501.03681",
        "citation": SLAM_CITATION,
    }

    def __init__(
        self,
        model,
        args: SelectiveFFNConfig | SFTConfig | None = None,
        data_collator=None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        compute_loss_func=None,
        compute_metrics=None,
        callbacks=None,
        optimizers=(None, None),
        optimizer_cls_and_kwargs=None,
        preprocess_logits_for_metrics=None,
        quantization_config=None,
        peft_config=None,
        formatting_func=None,
    ):
        args = self._as_selective_config(model, args)
        args.check_delta_push()
        loaded_here = isinstance(model, str)
        if loaded_here:
            model, processing_class = load_model_and_processor(model, args, quantization_config, processing_class)

        self.slam_layer_report = None
        layers = args.slam_layers
        if layers == "auto":
            layers = self._identify_layers(model, processing_class, args, train_dataset)
        chosen = get_architecture_map(model, args.slam_ffn_modules).tensors(layers, args.slam_projection_roles)
        callbacks = self._slam_callbacks(layers, args, data_collator, peft_config, chosen) + list(callbacks or [])
        tags = sorted(tag_tokens(model).values())
        if tags and peft_config is not None and getattr(peft_config, "trainable_token_indices", "") is None:
            peft_config.trainable_token_indices = tags  # L² tags with LoRA: PEFT's own way to train only their rows

        # What was used to load the model is not passed on: SFTTrainer would log that it is ignored.
        model_init_kwargs = args.model_init_kwargs
        if loaded_here:
            args.model_init_kwargs, quantization_config = None, None
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            compute_loss_func=compute_loss_func,
            compute_metrics=compute_metrics,
            callbacks=callbacks,
            optimizers=optimizers,
            optimizer_cls_and_kwargs=optimizer_cls_and_kwargs,
            preprocess_logits_for_metrics=preprocess_logits_for_metrics,
            quantization_config=quantization_config,
            peft_config=peft_config,
            formatting_func=formatting_func,
        )
        self.args.model_init_kwargs = model_init_kwargs
        self.slam_freeze_report = self.slam_callback.slam_freeze_report
        self._slam_logged = False

    @staticmethod
    def _as_selective_config(model, args) -> SelectiveFFNConfig:
        if args is None:
            name = model if isinstance(model, str) else model.config.name_or_path or "model"
            return SelectiveFFNConfig(f"{name.split('/')[-1]}-SLAM")
        if isinstance(args, SelectiveFFNConfig):
            return args
        # Field values as set, not `to_dict()`, which masks every `*_token` field (`eos_token` -> "<EOS_TOKEN>").
        dict_args = {f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.init}
        logger.warning(
            "SelectiveFFNTrainer got a plain %s; converting it with SLAM defaults (slam_layers='auto': a probe of "
            "the model chooses %d layers before training).",
            type(args).__name__,
            SelectiveFFNConfig.slam_num_layers,
        )
        return SelectiveFFNConfig(**dict_args)

    def _identify_layers(self, model, tokenizer, args, train_dataset) -> list[int]:
        """Auto mode: measure language-specific FFN layers on parallel text (once, shared with every rank): the probe
        data, else the training rows' parallel questions, else the built-in corpus."""
        from slam_trainer.probe.auto import resolve_auto_layers

        if tokenizer is None:
            raise ConfigError("`slam_layers='auto'` needs the tokenizer to probe the model: pass `processing_class`.")
        layers, self.slam_layer_report = resolve_auto_layers(
            model,
            tokenizer,
            args.slam_probe_dataset,
            args.slam_num_layers,
            args.output_dir,
            args.slam_probe_region,
            train_dataset=train_dataset,
        )
        return layers

    def _slam_callbacks(self, layers, args, data_collator, peft_config, chosen) -> list:
        """The freezing callback (first, so that it runs before any other `on_init_end`), the delta checkpoints, and
        the L² collator's epoch callback; points LoRA at the chosen projections."""
        callbacks = collator_callbacks(data_collator, args)
        if peft_config is not None:
            if args.slam_save_delta or args.slam_push == "delta":
                raise ConfigError(
                    "`slam_save_delta` / `slam_push='delta'` save the trained FFN tensors of a full model; with a "
                    "`peft_config` the LoRA adapter already is the small artefact. Unset them (checkpoints and "
                    "`push_to_hub` then hold the adapter)."
                )
            self._target_chosen_projections(peft_config, chosen)
        self.slam_callback = SelectiveFFNCallback(
            layers,
            args.slam_projection_roles,
            args.slam_extra_trainable or (),
            args.slam_ffn_modules,
            allow_large_extra=args.slam_allow_large_extra,
            trainable_dtype=args.slam_trainable_dtype,
        )
        return [self.slam_callback] + ([FFNDeltaCallback()] if args.slam_save_delta else []) + callbacks

    @staticmethod
    def _target_chosen_projections(peft_config, chosen) -> None:
        """Point LoRA at exactly the chosen projections: modules for Linear/Conv1D, parameters for expert banks."""
        modules = sorted({t.module for t in chosen if t.is_module_weight})
        parameters = sorted({t.name for t in chosen if not t.is_module_weight and not t.name.endswith("_bias")})
        if getattr(peft_config, "target_modules", None) not in (None, modules):
            logger.warning(
                "SelectiveFFNTrainer replaces the PEFT `target_modules` %s by the chosen FFN projections.",
                peft_config.target_modules,
            )
        peft_config.target_modules = modules
        if parameters:
            peft_config.target_parameters = parameters

    def train(self, resume_from_checkpoint=None, trial=None, ignore_keys_for_eval=None, **kwargs):
        """`Trainer.train`, refusing first a checkpoint that trained other layers (its optimizer state would not
        fit: with another layer count torch fails inside `load_state_dict`, with the same count it would load
        another layer's state)."""
        from transformers import TrainerState
        from transformers.trainer_utils import get_last_checkpoint

        checkpoint = resume_from_checkpoint
        if checkpoint is True:
            checkpoint = get_last_checkpoint(self.args.output_dir)
        state_file = os.path.join(checkpoint, "trainer_state.json") if isinstance(checkpoint, str) else None
        if state_file is not None and os.path.isfile(state_file):
            stored = checkpoint_trained_layers(TrainerState.load_from_json(state_file).stateful_callbacks)
            check_resumed_layers(stored, self.slam_freeze_report.layers)
        return super().train(resume_from_checkpoint, trial, ignore_keys_for_eval, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """TRL's loss, unless the output layer has L² tag rows: TRL's fused LM head reads `lm_head.weight` directly,
        past the hook that puts the trained tag rows in place, so the loss then comes from the model's own forward
        (`Trainer.compute_loss`: full logits, and no entropy/accuracy metrics)."""
        if has_output_tag_rows(self.accelerator.unwrap_model(model)):
            return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        """Add the SLAM summary (trained layers' count and share) to the first log record."""
        if not self._slam_logged and self.slam_freeze_report is not None:
            logs = {
                **logs,
                "slam/trainable_params": self.slam_freeze_report.trainable_params,
                "slam/trainable_share": round(self.slam_freeze_report.share, 6),
            }
            self._slam_logged = True
        super().log(logs, *args, **kwargs)

    def create_model_card(self, model_name=None, dataset_name=None, tags=None):
        """TRL's card, plus a section saying which layers and projections SLAM trained, how, and on what."""
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        if not self.is_world_process_zero() or self.slam_freeze_report is None:
            return
        path = os.path.join(self.args.output_dir, "README.md")
        with open(path, "a", encoding="utf-8") as card:
            card.write("\n" + card_section(self, dataset_name) + "\n")

    def push_to_hub(
        self, commit_message="End of training", blocking=True, token=None, revision=None, private=None, **kwargs
    ):
        """`Trainer.push_to_hub`; with `slam_push="delta"` only the FFN delta, the tokenizer and a card that says
        how to rebuild the model from the base (`dataset_name=` in kwargs goes on the card either way)."""
        if self.args.slam_push == "delta":
            return push_ffn_delta(
                self, commit_message, blocking, token, revision, private, dataset_name=kwargs.get("dataset_name")
            )
        return super().push_to_hub(commit_message, blocking, token, revision, private, **kwargs)


def load_model_and_processor(model_id: str, args: SFTConfig, quantization_config=None, processing_class=None):
    """A model given by name loaded as `SFTTrainer` would load it, through `slam_trainer.loading`: `args.seed` first,
    `args.model_init_kwargs` (`trust_remote_code` defaulting to `args.trust_remote_code`), the trainer's
    `quantization_config`, and the processing class from `AutoProcessor` unless one is given."""
    kwargs = dict(args.model_init_kwargs or {})
    if quantization_config is not None:
        if "quantization_config" in kwargs:
            raise ConfigError(
                "You set `quantization_config` both as a trainer argument and in `args.model_init_kwargs`; set it in "
                "one place."
            )
        kwargs["quantization_config"] = quantization_config
    kwargs.setdefault("trust_remote_code", args.trust_remote_code)
    if processing_class is not None:
        return load_model(model_id, kwargs, seed=args.seed), processing_class
    return load_model_and_tokenizer(model_id, kwargs, seed=args.seed, processor=True)
