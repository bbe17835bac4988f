"""Which shipped language an output is written in, from its characters (and, for Latin script, its words).

The share of outputs written in the question's language is one of the evaluation's numbers: a model that answers a
Swahili question in English may still be right, but it did not reason in Swahili. The check is ours and cheap:

- the script with the most letters wins (the scripts come from `slam_trainer.languages`); Han text is Japanese when
  kana make up at least a tenth of its Han and kana letters, Chinese otherwise;
- Latin-script languages (en, es, fr, de, sw) are told apart by counting a few frequent function words of each; with
  no such word the text's language is unknown;
- text with no letters (e.g. only "11") has no language and so is not counted as written in the question's language.
"""

from __future__ import annotations

import re
from collections import Counter

from slam_trainer.languages import LANGUAGES, get_language


_HAN = LANGUAGES["zh"].script_pattern
_KANA = LANGUAGES["ja"].script_pattern
# Japanese outputs use many kanji; this share of kana among Han + kana letters marks Japanese (ours).
KANA_SHARE_FOR_JAPANESE = 0.1

# Frequent short words that the other Latin-script languages rarely use (ours; lower case).
FUNCTION_WORDS: dict[str, frozenset[str]] = {
    "en": frozenset("the and is are of to has have he she they was were with each how many so that".split()),
    "es": frozenset("el la los las es son de del y que tiene tienen con cada cuántos por una para".split()),
    "fr": frozenset("le la les est sont de des et que il elle a ont avec chaque combien une pour du".split()),
    "de": frozenset("der die das ist sind und von mit hat haben er sie jede wie viele ein eine für".split()),
    "sw": frozenset("na ni ya wa kwa za la katika ana kila mingapi jumla hivyo jibu".split()),
}
_WORD = re.compile(r"[^\W\d_]+")


def detect_language(text: str) -> str | None:
    """The shipped language `text` is written in, or None when its letters do not tell."""
    counts = Counter()
    scripts = {}  # one representative language per script pattern
    for code, language in LANGUAGES.items():
        scripts.setdefault(language.script_pattern.pattern, (code, language.script_pattern))
    for code, pattern in scripts.values():
        counts[code] = len(pattern.findall(text))
    counts["zh"] += counts.get("ja", 0)  # kana are part of Japanese text; decide between zh and ja below
    best, count = counts.most_common(1)[0]
    if count == 0:
        return None
    if best == "zh":
        return "ja" if counts["ja"] >= KANA_SHARE_FOR_JAPANESE * counts["zh"] else "zh"
    if LANGUAGES[best].script == "Latin":
        words = Counter(word for word in _WORD.findall(text.lower()))
        votes = {code: sum(words[w] for w in vocabulary) for code, vocabulary in FUNCTION_WORDS.items()}
        code, score = max(votes.items(), key=lambda item: item[1])
        return code if score > 0 else None
    return best


def is_in_language(text: str, lang: str) -> bool:
    """Whether `text` is written in `lang` (see `detect_language`)."""
    get_language(lang)
    return detect_language(text) == lang
