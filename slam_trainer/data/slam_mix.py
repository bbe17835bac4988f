"""SLAM's one-stage training set: question alignment (X → English) merged with multilingual answers.

The official SLAM code trains on one merged set: a question-translation task (a question in language X, answered
with the same question in English) and an answer task over GSM8K-derived data in every language (MGSM8KInstruct
style), in Alpaca form, loss on the response only, prompted as `Human: {instruction}\\nAssistant: {output}</s>`
(`slam_trainer.prompts.SLAM_TEMPLATE`, whose `{question}` holds the instruction). This builds that set from parallel
rows (`id`, `lang`, `question`, `answer`, and `cot` or `steps` where present).
"""

from __future__ import annotations

from collections import defaultdict

from datasets import Dataset

from slam_trainer.data.loaders import check_unique_rows
from slam_trainer.errors import ConfigError, DataError
from slam_trainer.l2.segmentation import join_steps
from slam_trainer.languages import get_language
from slam_trainer.prompts import SLAM_TEMPLATE, check_template, user_turn


# Ours: the official code's translation instruction is not public; this wording names the target language.
TRANSLATE_INSTRUCTION = "Translate the following question into English.\n{question}"
TASKS = ("translate", "answer")


def build_slam_training_set(
    rows,
    *,
    pivot: str = "en",
    tasks=TASKS,
    answer_language: str = "same",
    prompt_template: str | None = SLAM_TEMPLATE,
) -> Dataset:
    """Prompt/completion rows for SLAM's merged question-alignment and answer tasks.

    Parameters:
        rows (iterable of `dict`):
            Parallel rows with `id`, `lang`, `question`, `answer` and, for the answer task, `cot` (the worked
            solution); rows with the same `id` are translations of each other.
        pivot (`str`, *optional*, defaults to `"en"`):
            The language questions are aligned to (the paper: English).
        tasks (`tuple[str]`, *optional*, defaults to `("translate", "answer")`):
            `"translate"`: X question → pivot question, for every non-pivot language; `"answer"`: question →
            worked solution, for every language.
        answer_language (`str`, *optional*, defaults to `"same"`):
            `"same"`: the solution in the question's language (MGSM8KInstruct); `"pivot"`: always the pivot's.
        prompt_template (`str` or `None`, *optional*, defaults to `"Human: {question}\\nAssistant:"`):
            Wraps each instruction (the translation request or the question) as `{question}`; the default is the
            official code's. `None` writes chat rows instead (a user turn and an assistant turn), which TRL renders
            through the tokenizer's chat template.

    Returns:
        `datasets.Dataset` with `prompt`, `completion`, `task`, `lang`, `id` columns, ready for `SFTTrainer`.
    """
    get_language(pivot)
    if prompt_template is not None:
        check_template("prompt_template", prompt_template)
    unknown = [task for task in tasks if task not in TASKS]
    if unknown or not tasks:
        raise ConfigError(f"`tasks` must be a non-empty subset of {TASKS}, got {list(tasks)}.")
    if answer_language not in ("same", "pivot"):
        raise ConfigError(f"`answer_language` must be 'same' or 'pivot', got {answer_language!r}.")
    by_id: dict = defaultdict(dict)
    rows = list(rows)
    for number, row in enumerate(rows, start=1):
        missing = [key for key in ("id", "lang", "question") if key not in row]
        if missing:
            raise DataError(f"Row {number} lacks {', '.join(missing)}; rows need id, lang, question (and cot).")
        by_id[row["id"]][row["lang"]] = row
    check_unique_rows(rows, "The training data")
    examples = []
    for example_id, by_lang in by_id.items():
        pivot_row = by_lang.get(pivot)
        for lang, row in by_lang.items():
            if "translate" in tasks and lang != pivot and pivot_row is not None:
                instruction = TRANSLATE_INSTRUCTION.format(question=row["question"])
                examples.append(
                    _example(example_id, lang, "translate", instruction, pivot_row["question"], prompt_template)
                )
            if "answer" in tasks:
                source = row if answer_language == "same" else pivot_row
                solution = worked_solution(source) if source is not None else None
                if not solution:
                    raise DataError(
                        f"Example {example_id!r} ({lang}) has no `cot` (or a blank one) and no `steps` in language "
                        f"{lang if answer_language == 'same' else pivot!r} for the answer task; add worked "
                        "solutions or drop 'answer' from `tasks`."
                    )
                examples.append(_example(example_id, lang, "answer", row["question"], solution, prompt_template))
    if not examples:
        raise DataError(f"No training example could be built: no id has both `{pivot}` and another language.")
    return Dataset.from_list(examples)


def worked_solution(row: dict) -> str | None:
    """A row's worked solution as text: its `cot`, else its `steps` joined (rows of both kinds may share a file, as
    `slam l2-build` accepts them, and a column absent from some rows reads as None there)."""
    cot, steps = row.get("cot"), row.get("steps")
    if isinstance(cot, str) and cot.strip():
        return cot
    if isinstance(steps, list) and any(isinstance(step, str) and step.strip() for step in steps):
        return join_steps(steps, row["lang"])
    return None


def _example(example_id, lang, task, instruction, output, prompt_template) -> dict:
    if prompt_template is None:
        prompt = user_turn(instruction)
        completion = [{"role": "assistant", "content": output}]
    else:
        # The space starts the completion, so that BPE tokenizers (which fold a leading space into the next word)
        # tokenize prompt + completion as the prompt's tokens followed by the completion's.
        prompt, completion = prompt_template.format(question=instruction), " " + output
    return {"id": str(example_id), "lang": lang, "task": task, "prompt": prompt, "completion": completion}
