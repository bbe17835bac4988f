"""The shipped `evaluate` metric: where it lies, and a `compute_metrics` that feeds it from a `Trainer`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slam_trainer.errors import DataError


def metric_path() -> str:
    """Path of the `multilingual_math_accuracy` metric script, for `evaluate.load(metric_path())` (no hub needed)."""
    return str(Path(__file__).with_name("metric") / "multilingual_math_accuracy.py")


def build_compute_metrics(tokenizer, references: list[str], languages: list[str] | str):
    """A `compute_metrics` for `Trainer`/`SFTTrainer` that scores the eval set's answers per language.

    A causal-LM `Trainer` predicts under teacher forcing: the tokens scored are the argmax at every position whose
    label is not -100 (the response), which is a cheap proxy during training; `slam eval` is the real measure with
    free generation. Token-id predictions (2-D, e.g. from generation) are decoded whole. Pass
    `preprocess_logits_for_metrics=lambda logits, labels: logits.argmax(-1)` to keep memory low.

    Parameters:
        tokenizer (`PreTrainedTokenizerBase`):
            Decodes the predicted token ids.
        references (`list[str]`):
            The gold answers, in the order of the eval dataset.
        languages (`str` or `list[str]`):
            The question language of each eval example, or one code for all.
    """
    import evaluate

    metric = evaluate.load(metric_path())

    def compute_metrics(eval_prediction) -> dict:
        predictions, labels = eval_prediction.predictions, eval_prediction.label_ids
        predictions = predictions[0] if isinstance(predictions, tuple) else predictions
        if predictions.ndim == 3:
            predictions = predictions.argmax(-1)
        if len(predictions) != len(references):
            raise DataError(f"The eval set has {len(predictions)} examples but `references` has {len(references)}.")
        pad_id = -1 if tokenizer.pad_token_id is None else tokenizer.pad_token_id
        texts = []
        for row, label_row in zip(predictions, labels if labels is not None else [None] * len(predictions)):
            if label_row is not None and row.shape == label_row.shape:
                # Logits at position t predict token t + 1: keep the predictions for the labelled (response) tokens.
                row = row[:-1][label_row[1:] != -100]
            row = row[(row >= 0) & (row != pad_id)]
            texts.append(tokenizer.decode(np.asarray(row).tolist(), skip_special_tokens=True))
        return metric.compute(predictions=texts, references=references, languages=languages)

    return compute_metrics
