"""Which checkpoint to resume from: the newest *complete* one, so that a run killed while saving still resumes.

`Trainer.train(resume_from_checkpoint=True)` takes the highest `checkpoint-N` folder, even one that a kill cut short
(its `trainer_state.json` missing), and then fails with `FileNotFoundError`. `Trainer` writes a checkpoint's
`trainer_state.json` last, after the weights, optimizer, scheduler and RNG states, so a checkpoint is complete when
that file reads as JSON (our rule). `resolve_resume_checkpoint` skips incomplete checkpoints, says which it skipped,
and accepts the words TRL's command-line parser reads as booleans (`true`/`false`, `yes`/`no`, `1`/`0`, ...), since
`--resume_from_checkpoint` is a string option.
"""

from __future__ import annotations

import json
import os
import re

from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import logging

from slam_trainer.errors import ResumeError


logger = logging.get_logger(__name__)

TRUE_WORDS = ("yes", "true", "t", "y", "1")  # as `transformers.hf_argparser.string_to_bool`, which TRL's parser uses
FALSE_WORDS = ("no", "false", "f", "n", "0")
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def incomplete_reason(checkpoint: str) -> str | None:
    """Why `checkpoint` cannot be resumed from (None when it can): no folder, or no readable trainer state."""
    if not os.path.isdir(checkpoint):
        return "no such directory"
    state = os.path.join(checkpoint, TRAINER_STATE_NAME)
    try:
        with open(state, encoding="utf-8") as handle:
            json.load(handle)
    except FileNotFoundError:
        return f"no {TRAINER_STATE_NAME}: its save was interrupted"
    except (OSError, ValueError):
        return f"{TRAINER_STATE_NAME} is unreadable: its save was interrupted"
    return None


def resolve_resume_checkpoint(value, output_dir: str) -> str | None:
    """The checkpoint folder to pass to `Trainer.train(resume_from_checkpoint=...)`, or None to start afresh.

    Parameters:
        value (`bool`, `str` or `None`):
            `True` (or a true word such as "true"): the newest complete `checkpoint-N` under `output_dir`, skipping
            (with a warning) any a kill left incomplete; `False`, a false word or `None`: no resuming; any other
            string: that checkpoint folder, which must be complete.
        output_dir (`str`):
            The run's output directory, where `checkpoint-N` folders are written.

    Raises:
        `ValueError`: resuming was asked for but there is no complete checkpoint to resume from.
    """
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS + FALSE_WORDS:
        value = value.strip().lower() in TRUE_WORDS
    if value is None or value is False:
        return None
    if isinstance(value, (str, os.PathLike)):
        reason = incomplete_reason(os.fspath(value))
        if reason is not None:
            raise ResumeError(f"`resume_from_checkpoint` {os.fspath(value)!r} cannot be resumed from: {reason}.")
        return os.fspath(value)
    if value is not True:
        raise ResumeError(f"`resume_from_checkpoint` must be a bool or a checkpoint path, got {value!r}.")
    found = []
    if os.path.isdir(output_dir):
        found = [(int(match.group(1)), name) for name in os.listdir(output_dir) if (match := _CHECKPOINT.match(name))]
    skipped = []
    for _, name in sorted(found, reverse=True):
        checkpoint = os.path.join(output_dir, name)
        reason = incomplete_reason(checkpoint)
        if reason is None:
            for skipped_name, skipped_reason in skipped:
                logger.warning(f"Skipping {skipped_name} ({skipped_reason}); resuming from {name} instead.")
            return checkpoint
        skipped.append((name, reason))
    detail = f" (skipped: {'; '.join(f'{name}: {reason}' for name, reason in skipped)})" if skipped else ""
    raise ResumeError(
        f"`resume_from_checkpoint` is true, but {output_dir!r} holds no complete checkpoint to resume from{detail}. "
        "Start without it, or point it at a checkpoint folder."
    )
