"""The built-in probe corpus: 24 everyday sentences, hand-translated into ten languages.

Used when no probe data is given (`slam_layers="auto"` without `slam_probe_dataset`, `slam identify` without
`--data`). Written for this package: en, es, fr, de, ru, zh, ja, th, sw and bn, the ten MSVAMP languages, so Latin,
Cyrillic, Han, Japanese, Thai and Bengali scripts are all present. Small on purpose: a few thousand tokens per
language are enough for activation frequencies of a layer's neurons, and the pass takes seconds. For a paper-grade
analysis pass a larger parallel corpus (MGSM, MSVAMP, FLORES).
"""

from __future__ import annotations

import json
from importlib import resources

from slam_trainer.languages import validate_languages


CORPUS_FILE = "corpus.jsonl"


def load_probe_corpus(languages: list[str] | None = None) -> dict[str, dict[int, str]]:
    """The built-in corpus as `{lang: {id: text}}`, optionally only `languages` (codes of the language registry).

    Parameters:
        languages (`list[str]`, *optional*): keep these languages, in this order; at least two. Defaults to all ten.
    """
    text = resources.files("slam_trainer.probe").joinpath(CORPUS_FILE).read_text(encoding="utf-8")
    corpus: dict[str, dict[int, str]] = {}
    for line in text.splitlines():
        row = json.loads(line)
        corpus.setdefault(row["lang"], {})[row["id"]] = row["text"]
    if languages is None:
        return corpus
    languages = validate_languages(languages, argument="languages", min_count=2)
    absent = [lang for lang in languages if lang not in corpus]
    if absent:
        raise ValueError(f"The built-in probe corpus has no {absent}; it holds {', '.join(corpus)}.")
    return {lang: corpus[lang] for lang in languages}
