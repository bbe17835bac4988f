"""`slam_layers="auto"`: identify the language layers once per run, before freezing, and agree on them everywhere.

The trainer calls `resolve_auto_layers` before the optimizer exists. Only the main process runs the probe (every
rank holds the same weights, so one pass suffices); under `accelerate launch`/DeepSpeed, where
`torch.distributed` is initialised, the report is broadcast so every rank freezes the same layers. A failure on the
main process is broadcast too, so the other ranks raise instead of waiting forever, and every rank raises the same
type: the package error for a user's mistake, a `RuntimeError` for anything else.
"""

from __future__ import annotations

import sys

from transformers.utils import logging

from slam_trainer import errors
from slam_trainer.distributed import broadcast_from_main, is_main_process, is_partitioned
from slam_trainer.probe.default_texts import default_probe_texts
from slam_trainer.probe.identify import identify_language_layers
from slam_trainer.probe.report import LayerReport
from slam_trainer.probe.settings import DEFAULTS


logger = logging.get_logger(__name__)


def _check_full_weights(model) -> None:
    """Under ZeRO-3 loading each rank holds an empty shard; a forward pass outside the engine cannot run."""
    if is_partitioned(model):
        raise errors.ModelError(
            "`slam_layers='auto'` needs the full model weights, but they are partitioned by DeepSpeed ZeRO-3. Run "
            "`slam identify` on the model first and pass the chosen layers as `slam_layers`."
        )


def _same_on_every_rank(name: str, message: str) -> Exception:
    """The error every rank raises for a failure of the main process's probe: the same package error (a user's
    mistake, e.g. too few layers in the region), else a `RuntimeError` naming the original (whose traceback the main
    process keeps as the cause)."""
    error_class = getattr(errors, name, None)
    if isinstance(error_class, type) and issubclass(error_class, errors.SlamTrainerError):
        return error_class(message)
    return RuntimeError(f"Language-layer identification failed on the main process: {name}: {message}")


def resolve_auto_layers(
    model,
    tokenizer,
    probe_data=None,
    num_layers: int = DEFAULTS["num_layers"],
    output_dir: str | None = None,
    region: str = DEFAULTS["region"],
    train_dataset=None,
    **probe_kwargs,
) -> tuple[list[int], LayerReport]:
    """Choose the layers for `slam_layers="auto"`: probe on the main process, share the result with every rank.

    Parameters:
        model (`PreTrainedModel`):
            The model to be trained, before freezing and before `accelerator.prepare`/DeepSpeed initialisation.
        tokenizer (`PreTrainedTokenizerBase`):
            Its tokenizer (the trainer's `processing_class`).
        probe_data (`dict`, `datasets.Dataset`, `list[dict]` or `str`, *optional*):
            Parallel texts as `identify_language_layers` takes them (`slam_probe_dataset`); defaults to the parallel
            questions of `train_dataset`, else the built-in corpus (`slam_trainer.probe.default_texts`).
        num_layers (`int`, *optional*, defaults to `6`):
            Layers to choose (`slam_num_layers`).
        output_dir (`str`, *optional*):
            Where the main process writes `language_layers.json` and `language_layers.png` (`args.output_dir`).
        region (`str`, *optional*, defaults to `"lower_half"`):
            Where the layers may be chosen (`slam_probe_region`): `"lower_half"` (SLAM's claim) or `"all"` (LAPE's
            view); the same default as `identify_language_layers` and `slam identify`.
        train_dataset (`datasets.Dataset`, *optional*):
            The training rows: without `probe_data`, their parallel questions are probed when they have some.
        probe_kwargs:
            Passed on to `identify_language_layers` (`score`, `pivot`, `top_rate`, `batch_size`, `resamples`, ...),
            whose defaults apply otherwise.

    Returns:
        `tuple[list[int], LayerReport]`: the chosen layers (ascending) and the full report, identical on every rank.
    """
    _check_full_weights(model)
    is_main = is_main_process()
    payload = None
    if is_main:
        try:
            data, source = default_probe_texts(probe_data, train_dataset)
            print(f"slam_layers='auto': probing {source} to choose the layers before training.", file=sys.stderr)
            report = identify_language_layers(
                model, tokenizer, data, num_layers=num_layers, region=region, **{"progress": True, **probe_kwargs}
            )
            payload = {"report": report.to_dict()}
        except Exception as error:
            broadcast_from_main({"error": type(error).__name__, "message": str(error)})
            shared = _same_on_every_rank(type(error).__name__, str(error))
            if type(shared) is type(error):
                raise
            raise shared from error
    payload = broadcast_from_main(payload)
    if "error" in payload:
        raise _same_on_every_rank(payload["error"], payload["message"])
    report = LayerReport.from_dict(payload["report"])
    if is_main:
        # printed, not logged at INFO: a script shows no INFO, and this decides what trains
        print(f"slam_layers='auto' on a model of {report.num_layers} layers: {report.describe_choice()}")
        logger.info("Probe tokens per language: %s.", ", ".join(f"{lang} {n}" for lang, n in report.tokens.items()))
        if output_dir is not None:
            json_path, png_path = report.save(output_dir)
            print(f"Language-layer report: {json_path}, {png_path} (trainer.slam_layer_report holds it).")
    return report.chosen_layers, report
