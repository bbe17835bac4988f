"""The built-in probe corpus: 120 everyday items (one or two sentences each), written in eleven languages.

Used when no probe data is given (`slam_layers="auto"` without `slam_probe_dataset`, `slam identify` without
`--data`). Written for this package and licensed with it (Apache-2.0), not taken from any benchmark: en, es, fr,
de, ru, zh, ja, th, sw, bn and te, MGSM's eleven languages, so Latin, Cyrillic, Han, Japanese, Thai, Bengali and
Telugu scripts are all present. Items 0-23 are single sentences; items 24-119 are two-sentence passages with
numbers, places and daily routines (about 2,000 English tokens in all, 90,000 tokens over the eleven languages with
SmolLM2's tokenizer). `docs/layer_identification.md` reports how stable the layer choice is on it and on MGSM; for
a paper-grade analysis pass a larger parallel corpus (MGSM and MSVAMP files work as they are).
"""

from __future__ import annotations

import json
from importlib import resources

from slam_trainer.languages import validate_languages


CORPUS_FILE = "corpus.jsonl"


def load_probe_corpus(languages: list[str] | None = None) -> dict[str, dict[int, str]]:
    """The built-in corpus as `{lang: {id: text}}`, optionally only `languages` (codes of the language registry).

    Parameters:
        languages (`list[str]`, *optional*): keep these languages, in this order; at least two. Defaults to all eleven.
    """
    text = resources.files("slam_trainer.probe").joinpath(CORPUS_FILE).read_text(encoding="utf-8")
    corpus: dict[str, dict[int, str]] = {}
    for line in text.splitlines():
        row = json.loads(line)
        corpus.setdefault(row["lang"], {})[row["id"]] = row["text"]
    if languages is None:
        return corpus
    languages = validate_languages(languages, argument="languages", min_count=2)  # the corpus holds every one
    return {lang: corpus[lang] for lang in languages}
