"""The languages the package ships support for, and the scripts they are written in.

One registry, so that the synthetic data, the probe corpus, segmentation cues, answer extraction and the
script-based language check agree on the same codes. The set is MGSM's eleven languages (MSVAMP uses the
first ten); a code outside it raises an error that lists the valid ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from slam_trainer.errors import ConfigError


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    script: str
    # Characters that identify the script; Latin-script languages share one pattern and are told apart by words.
    script_pattern: re.Pattern

    def uses_spaces(self) -> bool:
        """Whether words are separated by spaces (False for Chinese, Japanese and Thai)."""
        return self.code not in ("zh", "ja", "th")


_LATIN = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿ]")

LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in (
        Language("en", "English", "Latin", _LATIN),
        Language("es", "Spanish", "Latin", _LATIN),
        Language("fr", "French", "Latin", _LATIN),
        Language("de", "German", "Latin", _LATIN),
        Language("ru", "Russian", "Cyrillic", re.compile(r"[\u0400-\u04FF]")),
        Language("zh", "Chinese", "Han", re.compile(r"[\u4E00-\u9FFF]")),
        Language("ja", "Japanese", "Japanese", re.compile(r"[\u3040-\u30FF]")),
        Language("th", "Thai", "Thai", re.compile(r"[\u0E00-\u0E7F]")),
        Language("sw", "Swahili", "Latin", _LATIN),
        Language("bn", "Bengali", "Bengali", re.compile(r"[\u0980-\u09FF]")),
        Language("te", "Telugu", "Telugu", re.compile(r"[\u0C00-\u0C7F]")),
    )
}


def get_language(code: str) -> Language:
    """The registry entry for `code`, or a `ValueError` that lists the shipped codes."""
    try:
        return LANGUAGES[code]
    except KeyError:
        raise ConfigError(
            f"Unknown language code {code!r}; the shipped languages are {', '.join(LANGUAGES)}."
        ) from None


def validate_languages(codes, *, argument: str = "languages", min_count: int = 1) -> list[str]:
    """Check a list of language codes: known, unique, at least `min_count`. Returns them as a list."""
    codes = [codes] if isinstance(codes, str) else list(codes)
    for code in codes:
        get_language(code)
    duplicates = sorted({c for c in codes if codes.count(c) > 1})
    if duplicates:
        raise ConfigError(f"`{argument}` lists {', '.join(duplicates)} more than once.")
    if len(codes) < min_count:
        raise ConfigError(f"`{argument}` needs at least {min_count} language(s), got {len(codes)}: {codes}.")
    return codes
