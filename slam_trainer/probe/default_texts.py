"""What `slam_layers="auto"` probes when it is given no probe data: the training questions where they are parallel.

The built-in corpus is everyday text, not the task: the layers it picks need not be the ones the task's language
handling uses (on SmolLM2-135M it and MGSM share 5 of the 7 layers either picks), and on SmolLM2 its choice is not
stable under the bootstrap (layers 6 and 10 in 75% and 79% of resamples). So auto mode first looks for parallel
questions in the training rows:

- rows with `id`, `lang` and `question` (the package's parallel format): the questions;
- SLAM's one-stage set (`build_slam_training_set`: `id`, `lang`, `task`, `prompt`): the questions of its answer
  task, read back from the prompt (a chat user turn, or the `Human: ...\\nAssistant:` template);

and keeps the first `TRAIN_PROBE_ITEMS` ids that every language has. Anything else (plain SFT rows, one language,
unreadable prompts) falls back to the built-in corpus. The choice is ours, as is the item count.
"""

from __future__ import annotations

from slam_trainer.probe.corpus import load_probe_corpus
from slam_trainer.prompts import SLAM_TEMPLATE


# Parallel training questions the default probe reads at most (ours: as many as about a minute of probing on one CPU
# core allows). More items estimate each layer's score better; they do not settle a near-tie: on SmolLM2-135M the
# evidence benchmark's first 40 and 100 questions gave a choice that is not stable, all 200 a stable one, while the
# demo world's 160 did not (docs/layer_identification.md).
TRAIN_PROBE_ITEMS = 200
_PREFIX, _SUFFIX = SLAM_TEMPLATE.split("{question}")


def _question(question, task, prompt) -> str | None:
    """The question of one row: its `question`, or the user turn / templated instruction of a SLAM answer row."""
    if question is not None or task != "answer":
        return question
    if isinstance(prompt, list):
        turns = [turn.get("content") for turn in prompt if isinstance(turn, dict) and turn.get("role") == "user"]
        return turns[0] if len(turns) == 1 else None
    if isinstance(prompt, str) and prompt.startswith(_PREFIX) and prompt.endswith(_SUFFIX):
        return prompt[len(_PREFIX) : len(prompt) - len(_SUFFIX)]
    return None


def training_questions(train_dataset, max_items: int = TRAIN_PROBE_ITEMS) -> dict[str, dict] | None:
    """`{lang: {id: question}}` of the first `max_items` ids present in every language of `train_dataset`, or None
    when the rows hold no parallel questions in at least two languages. Read by column (fast on large sets)."""
    columns = set(getattr(train_dataset, "column_names", None) or ())
    if not {"id", "lang"} <= columns or not ({"question"} & columns or {"task", "prompt"} <= columns):
        return None
    count = len(train_dataset)

    def column(name):
        return train_dataset[name] if name in columns else [None] * count

    by_lang: dict[str, dict] = {}
    order: dict = {}
    rows = zip(column("id"), column("lang"), column("question"), column("task"), column("prompt"), strict=True)
    for item, lang, question, task, prompt in rows:
        text = _question(question, task, prompt)
        if isinstance(text, str) and text.strip() and item not in by_lang.get(lang, {}):
            by_lang.setdefault(lang, {})[item] = text
            order.setdefault(item, None)
    common = [item for item in order if all(item in texts for texts in by_lang.values())][:max_items]
    if len(by_lang) < 2 or not common:
        return None
    return {lang: {item: texts[item] for item in common} for lang, texts in by_lang.items()}


def default_probe_texts(probe_data=None, train_dataset=None) -> tuple[object, str]:
    """The probe data auto mode uses and a phrase saying what it is: `probe_data` when given, else the parallel
    training questions, else the built-in corpus."""
    if probe_data is not None:
        return probe_data, "the given probe data"
    questions = training_questions(train_dataset)
    if questions is not None:
        items = len(next(iter(questions.values())))
        return questions, f"{items} parallel training questions in {len(questions)} languages"
    return load_probe_corpus(), "the built-in corpus (the training rows hold no parallel questions)"
