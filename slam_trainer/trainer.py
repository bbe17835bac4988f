"""`SelectiveFFNTrainer`: `trl.SFTTrainer` that trains only the chosen layers' FFN sub-layers (SLAM)."""

from __future__ import annotations

import dataclasses
import os

from transformers import AutoTokenizer
from transformers.utils import logging
from trl import SFTConfig, SFTTrainer
from trl.trainer.utils import create_model_from_path

from slam_trainer.architectures import get_architecture_map
from slam_trainer.callback import SelectiveFFNCallback
from slam_trainer.config import SelectiveFFNConfig
from slam_trainer.delta import FFNDeltaCallback
from slam_trainer.hub import card_section, push_ffn_delta
from slam_trainer.l2.collator import L2EpochCallback
from slam_trainer.offline_models import resolve_model_path


logger = logging.get_logger(__name__)

SLAM_CITATION = """\
@inproceedings{fan2025slam,
    title     = {{SLAM: Towards Efficient Multilingual Reasoning via Selected Language Alignment}},
    author    = {Yuchun Fan and Yongyu Mu and Yilin Wang and Lei Huang and Junhao Ruan and Bei Li and Tong Xiao and
                 Shujian Huang and Xiaocheng Feng and Jingbo Zhu},
    booktitle = {Proceedings of the 31st International Conference on Computational Linguistics (COLING 2025)},
    year      = 2025,
    eprint    = {arXiv:2501.03681}
}"""


class SelectiveFFNTrainer(SFTTrainer):
    """`SFTTrainer` for SLAM: everything but the FFN sub-layers of `args.slam_layers` is frozen.

    Takes the same arguments as `trl.SFTTrainer`; the SLAM choices come from `SelectiveFFNConfig` (a plain
    `SFTConfig` is converted, with SLAM's defaults). The freezing itself is a `SelectiveFFNCallback` installed first
    in the callback list, so it runs before the optimizer exists. With a `peft_config`, the adapters are put on the
    chosen layers' chosen projections only ("SLAM + LoRA"): the config's `target_modules` is replaced by those.

    After construction, `trainer.slam_report` (a `FreezeReport`) says what trains; the model card and
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
        if isinstance(model, str):
            model_id = resolve_model_path(model)
            model_init_kwargs = dict(args.model_init_kwargs or {})
            if quantization_config is not None:
                model_init_kwargs["quantization_config"] = quantization_config
            if args.distributed_state.distributed_type in ["MULTI_GPU", "DEEPSPEED"]:
                model_init_kwargs["device_map"] = None
            model_init_kwargs.setdefault("trust_remote_code", args.trust_remote_code)
            # Loaded here rather than by SFTTrainer, because auto mode and LoRA targeting need the modules first.
            model = create_model_from_path(model_id, **model_init_kwargs)
            if processing_class is None:
                processing_class = AutoTokenizer.from_pretrained(
                    model_id, revision=model_init_kwargs.get("revision"), trust_remote_code=args.trust_remote_code
                )

        self.slam_layer_report = None
        layers = args.slam_layers
        if layers == "auto":
            layers = self._identify_layers(model, processing_class, args)
        amap = get_architecture_map(model, args.slam_ffn_modules)
        chosen = amap.tensors(layers, args.slam_projection_roles)  # validates layers and roles before any work

        callbacks = list(callbacks or [])
        if getattr(data_collator, "requires_raw_dataset", False):
            # The L² collator builds sequences from the raw examples: SFTTrainer must neither tokenize the dataset
            # nor drop its columns (the collator names the settings), and each epoch draws a new mixture.
            data_collator.configure_sft_args(args)
            if not any(isinstance(c, L2EpochCallback) for c in callbacks):
                callbacks.append(L2EpochCallback(data_collator))

        if peft_config is not None and (args.slam_save_delta or args.slam_push == "delta"):
            raise ValueError(
                "`slam_save_delta` / `slam_push='delta'` save the trained FFN tensors of a full model; with a "
                "`peft_config` the LoRA adapter already is the small artefact. Unset them (checkpoints and "
                "`push_to_hub` then hold the adapter)."
            )
        if peft_config is not None:
            self._target_chosen_projections(peft_config, chosen)

        self.slam_callback = SelectiveFFNCallback(
            layers, args.slam_projection_roles, args.slam_extra_trainable or (), args.slam_ffn_modules
        )
        slam_callbacks = [self.slam_callback] + ([FFNDeltaCallback()] if args.slam_save_delta else [])
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            compute_loss_func=compute_loss_func,
            compute_metrics=compute_metrics,
            callbacks=[*slam_callbacks, *callbacks],
            optimizers=optimizers,
            optimizer_cls_and_kwargs=optimizer_cls_and_kwargs,
            preprocess_logits_for_metrics=preprocess_logits_for_metrics,
            quantization_config=quantization_config,
            peft_config=peft_config,
            formatting_func=formatting_func,
        )
        self.slam_report = self.slam_callback.report
        self._slam_logged = False

    @staticmethod
    def _as_selective_config(model, args) -> SelectiveFFNConfig:
        if args is None:
            name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "") or "model"
            return SelectiveFFNConfig(f"{name.split('/')[-1]}-SLAM")
        if isinstance(args, SelectiveFFNConfig):
            return args
        # Field values as set, not `to_dict()`, which masks every `*_token` field (`eos_token` -> "<EOS_TOKEN>").
        dict_args = {f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.init}
        logger.warning("SelectiveFFNTrainer got a plain %s; converting it with SLAM defaults.", type(args).__name__)
        return SelectiveFFNConfig(**dict_args)

    def _identify_layers(self, model, tokenizer, args) -> list[int]:
        """Auto mode: measure language-specific FFN layers on parallel text (once, shared with every rank)."""
        from slam_trainer.probe.auto import resolve_auto_layers

        if tokenizer is None:
            raise ValueError("`slam_layers='auto'` needs the tokenizer to probe the model: pass `processing_class`.")
        layers, self.slam_layer_report = resolve_auto_layers(
            model, tokenizer, args.slam_probe_dataset, args.slam_num_layers, args.output_dir, args.slam_probe_region
        )
        return layers

    @staticmethod
    def _target_chosen_projections(peft_config, chosen) -> None:
        """Point LoRA at exactly the chosen projections: modules for Linear/Conv1D, parameters for expert banks."""
        modules = sorted({t.module for t in chosen if t.is_module_weight})
        parameters = sorted({t.name for t in chosen if not t.is_module_weight})
        if getattr(peft_config, "target_modules", None) not in (None, modules):
            logger.warning(
                "SelectiveFFNTrainer replaces the PEFT `target_modules` %s by the chosen FFN projections.",
                peft_config.target_modules,
            )
        peft_config.target_modules = modules
        if parameters:
            peft_config.target_parameters = parameters

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        """Add the SLAM summary (trained layers' count and share) to the first log record."""
        if not self._slam_logged and self.slam_report is not None:
            logs = {
                **logs,
                "slam/trainable_params": self.slam_report.trainable_params,
                "slam/trainable_share": round(self.slam_report.share, 6),
            }
            self._slam_logged = True
        super().log(logs, *args, **kwargs)

    def create_model_card(self, model_name=None, dataset_name=None, tags=None):
        """TRL's card, plus a section saying which layers and projections SLAM trained, how, and on what."""
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        if not self.is_world_process_zero() or self.slam_report is None:
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

    def slam_card_section(self) -> str:
        report = self.slam_report
        how = "chosen by language-layer identification (`slam_layers='auto'`)" if self.slam_layer_report else "given"
        lines = [
            "## SLAM: selective FFN training",
            "",
            f"- Trained layers ({how}): {report.layers}",
            f"- Trained FFN projections: {', '.join(report.projections)}"
            + (" (LoRA adapters)" if report.peft else ""),
            f"- Trainable parameters: {report.trainable_params:,} of {report.total_params:,} "
            f"({100 * report.share:.2f}%)",
        ]
        if report.extra_names:
            lines.append(f"- Also trained: {', '.join(report.extra_names)}")
        return "\n".join(lines)
