"""Which shipped language an output is written in: its script, and a real language identifier where scripts are shared.

The share of outputs written in the question's language is one of the evaluation's numbers: a model that answers a
Swahili question in English may still be right, but it did not reason in Swahili. The rule (ours):

- the script with the most letters decides first (the scripts come from `slam_trainer.languages`); Cyrillic, Thai,
  Bengali and Telugu letters each belong to one shipped language, which is then the answer;
- Latin-script text (en, es, fr, de, sw) and Han/kana text (zh, ja) go to a language identifier, `py3langid` (a
  naive Bayes model over byte n-grams trained on 97 languages, shipped inside the package: offline, BSD-3-Clause),
  and the most likely shipped language of that script wins;
- a text without a word of two or more letters (e.g. "11", "A. 1/2 B. 1/4") has no language, and so is not counted as
  written in the question's language.

`benchmarks/bench_language_id.py` measures the rule on MGSM's own texts against their language labels, beside the
function-word heuristic it replaced (results in docs/evaluation.md).
"""

from __future__ import annotations

import functools
import unicodedata

from slam_trainer.languages import LANGUAGES, get_language


# Scripts that several shipped languages share; an identifier tells those languages apart.
_SHARED_SCRIPTS = {"Latin": ("en", "es", "fr", "de", "sw"), "Han/kana": ("zh", "ja")}


@functools.cache
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE)


def _letters_per_script(text: str) -> dict[str, int]:
    """Letters of each script in `text` (Han and kana count together: Japanese writes both)."""
    counts: dict[str, int] = {}
    for code, language in LANGUAGES.items():
        script = "Han/kana" if code in _SHARED_SCRIPTS["Han/kana"] else language.script
        if script == "Latin" and script in counts:
            continue  # the Latin-script languages share one pattern: count it once
        counts[script] = counts.get(script, 0) + len(language.script_pattern.findall(text))
    return counts


def _has_word(text: str) -> bool:
    """Whether `text` has two letters in a row (combining vowel signs count: Indic and Thai syllables carry them)."""
    run = 0
    for char in text:
        category = unicodedata.category(char)
        run = run + 1 if category[0] == "L" or (run and category[0] == "M") else 0
        if run >= 2:
            return True
    return False


def detect_language(text: str) -> str | None:
    """The shipped language `text` is written in, or None when its letters do not tell."""
    if not _has_word(text):
        return None
    counts = _letters_per_script(text)
    script = max(counts, key=counts.get)
    if counts[script] == 0:
        return None
    if script not in _SHARED_SCRIPTS:
        return next(code for code, language in LANGUAGES.items() if language.script == script)
    candidates = _SHARED_SCRIPTS[script]
    # Restricting naive Bayes to some classes keeps their order: the best of them in the full ranking wins.
    return next(code for code, _ in _identifier().rank(text) if code in candidates)


def is_in_language(text: str, lang: str) -> bool:
    """Whether `text` is written in `lang` (see `detect_language`)."""
    get_language(lang)
    return detect_language(text) == lang
