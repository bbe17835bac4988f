"""Cut a chain of thought into steps: sentences or paragraphs for short CoTs, reflection fragments for long ones.

L² cuts long English CoTs into *reflection fragments* at cues such as "Wait" or "Hmm" and translates fragments
independently; the paper does not publish its cue list or its sentence rules. Ours are below (per language, for the
eleven shipped languages) and are configurable.

Every step is a slice of the input text, in order, with the whitespace between steps removed at the cut points
(`keep_whitespace=True` keeps it attached to the preceding step, so that `"".join(steps) == text` exactly).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from slam_trainer.errors import ConfigError
from slam_trainer.languages import get_language


# Our defaults (the paper names "Wait" and "Hmm" only): words that open a new line of reasoning.
REFLECTION_CUES: dict[str, tuple[str, ...]] = {
    "en": ("Wait", "Hmm", "Alternatively", "But", "However", "Let me double-check", "Let me check", "Actually"),
    "es": ("Espera", "Hmm", "Alternativamente", "Pero", "Sin embargo", "Déjame comprobar", "En realidad"),
    "fr": ("Attends", "Attendez", "Hmm", "Sinon", "Mais", "Cependant", "Vérifions", "En fait"),
    "de": ("Warte", "Moment", "Hmm", "Alternativ", "Aber", "Jedoch", "Prüfen wir", "Eigentlich"),
    "ru": ("Подожди", "Постой", "Хм", "Или же", "Но", "Однако", "Проверим", "На самом деле"),
    "zh": ("等等", "等一下", "嗯", "或者", "但是", "不过", "然而", "让我检查", "其实"),
    "ja": ("待って", "ちょっと待って", "うーん", "あるいは", "しかし", "でも", "確認しよう", "実は"),
    "th": ("เดี๋ยวก่อน", "รอก่อน", "อืม", "หรืออีกทางหนึ่ง", "แต่", "อย่างไรก็ตาม", "ลองตรวจสอบ", "ที่จริง"),
    "sw": ("Subiri", "Hmm", "Vinginevyo", "Lakini", "Hata hivyo", "Hebu tuhakiki", "Kwa kweli"),
    "bn": ("দাঁড়াও", "হুম", "বিকল্পভাবে", "কিন্তু", "তবে", "যাচাই করি", "আসলে"),
    "te": ("ఆగండి", "హ్మ్", "ప్రత్యామ్నాయంగా", "కానీ", "అయితే", "సరిచూద్దాం", "నిజానికి"),
}

# A sentence ends at . ! ? … (followed by whitespace), at the danda (Bengali), or at full-width CJK punctuation
# (no space needed); a line break always ends one. Thai writes no sentence punctuation: a space between two Thai
# characters ends a sentence (spaces beside digits or Latin words do not).
_SENTENCE_END = re.compile(
    r"(?<=[.!?…])\s+(?=\S)"
    r"|(?<=[।॥])\s*(?=\S)"
    r"|(?<=[。！？])\s*(?=\S)"
    r"|\s*\n\s*(?=\S)"
    r"|(?<=[\u0E00-\u0E7F]) +(?=[\u0E00-\u0E7F])"
)
_PARAGRAPH_END = re.compile(r"\s*\n[ \t]*\n\s*(?=\S)")

# `auto` mode: a CoT at least this long (characters) with at least one cue is cut into reflection fragments.
LONG_COT_CHARS = 1000

MODES = ("auto", "sentences", "paragraphs", "reflection")


def _cut(text: str, boundaries: re.Pattern | None, keep_whitespace: bool) -> list[tuple[int, int]]:
    """Spans of `text` between matches of `boundaries`; the separator whitespace goes to the left span if kept."""
    spans, start = [], 0
    leading = len(text) - len(text.lstrip())
    start = 0 if keep_whitespace else leading
    for match in boundaries.finditer(text) if boundaries else ():
        if match.end() <= leading:
            continue
        spans.append((start, match.end() if keep_whitespace else match.start()))
        start = match.end()
    end = len(text) if keep_whitespace else len(text.rstrip())
    if end > start:
        spans.append((start, end))
    return [(s, e) for s, e in spans if text[s:e].strip()] if not keep_whitespace else spans


def _starts_with_cue(sentence: str, cues: Sequence[str], word_boundary: bool) -> bool:
    sentence = sentence.lstrip(" \t\n*-#>\"'“「(")
    for cue in cues:
        if sentence.startswith(cue):
            # Languages written with spaces need a word boundary after the cue ("But" is not "Butter").
            if not word_boundary or not sentence[len(cue) : len(cue) + 1].isalnum():
                return True
    return False


def cues_for(lang: str, cues: Iterable[str] | None = None) -> tuple[str, ...]:
    """The reflection cues for `lang`: `cues` if given, else the shipped list for the language."""
    get_language(lang)
    if cues is not None:
        cues = tuple(cues)
        if not cues or not all(isinstance(c, str) and c.strip() for c in cues):
            raise ConfigError(f"`cues` must be a non-empty list of non-empty strings, got {cues!r}.")
        return cues
    return REFLECTION_CUES[lang]


def split_steps(
    text: str,
    lang: str = "en",
    *,
    mode: str = "auto",
    cues: Iterable[str] | None = None,
    keep_whitespace: bool = False,
) -> list[str]:
    """Cut a chain of thought into steps.

    Parameters:
        text (`str`):
            The chain of thought.
        lang (`str`, *optional*, defaults to `"en"`):
            Its language code; picks the reflection cues and nothing else (the sentence rules cover all scripts).
        mode (`str`, *optional*, defaults to `"auto"`):
            `"sentences"`, `"paragraphs"` (blank-line separated), `"reflection"` (a new fragment starts at every
            sentence that opens with a cue), or `"auto"`: reflection fragments for a long CoT (at least
            `LONG_COT_CHARS` characters) that contains a cue, else paragraphs when there are several, else sentences.
        cues (`list[str]`, *optional*):
            Reflection cues replacing the shipped `REFLECTION_CUES[lang]`.
        keep_whitespace (`bool`, *optional*, defaults to `False`):
            Keep the whitespace at each cut attached to the preceding step, so that `"".join(steps) == text`.

    Returns:
        `list[str]`: the steps, none empty (an all-whitespace text gives `[]`).
    """
    if not isinstance(text, str):
        raise ConfigError(f"`text` must be a string, got {type(text).__name__}.")
    if mode not in MODES:
        raise ConfigError(f"`mode` must be one of {', '.join(MODES)}, got {mode!r}.")
    cue_list = cues_for(lang, cues)
    word_boundary = get_language(lang).uses_spaces()
    sentence_spans = _cut(text, _SENTENCE_END, keep_whitespace)
    if mode == "auto":
        has_cue = any(_starts_with_cue(text[s:e], cue_list, word_boundary) for s, e in sentence_spans)
        if len(text) >= LONG_COT_CHARS and has_cue:
            mode = "reflection"
        elif len(_cut(text, _PARAGRAPH_END, keep_whitespace)) > 1:
            mode = "paragraphs"
        else:
            mode = "sentences"
    if mode == "reflection" and lang == "th":
        # Thai ends sentences without punctuation, often after a number: a space before a cue is a cut too.
        cue_cut = "|".join(re.escape(cue) for cue in cue_list)
        sentence_spans = _cut(text, re.compile(_SENTENCE_END.pattern + rf"|\s+(?={cue_cut})"), keep_whitespace)
    if mode == "sentences":
        spans = sentence_spans
    elif mode == "paragraphs":
        spans = _cut(text, _PARAGRAPH_END, keep_whitespace)
    else:
        spans = []
        for start, end in sentence_spans:
            if spans and not _starts_with_cue(text[start:end], cue_list, word_boundary):
                spans[-1] = (spans[-1][0], end)
            else:
                spans.append((start, end))
    return [text[s:e] for s, e in spans]


def join_steps(steps: Sequence[str], lang: str = "en") -> str:
    """Steps as running text: separated by a space, or by nothing in Chinese and Japanese (whose sentences end in
    full-width punctuation). `split_steps(join_steps(steps, lang), lang, mode="sentences")` gives back steps that are
    single sentences."""
    return ("" if lang in ("zh", "ja") else " ").join(step.strip() for step in steps)
