"""Answer extraction: the number a model's output gives as its answer, read the way each language writes numbers.

MathOctopus (whose evaluation SLAM reuses) takes the last number in the output, drops commas between digits and
counts a prediction correct when it lies within 1e-3 of the gold answer. We keep that rule and widen what counts as
a number, because a multilingual model writes numbers the way each locale does:

- digits of any script (full-width `１２`, Bengali `১২`, Telugu `౧౨`, Thai `๑๒`) are read as ASCII digits;
- a minus sign (`-`, `−`, full-width `－`) directly before a number makes it negative, unless it follows a letter or a
  digit (then it is a hyphen or a subtraction: `2023-2024`, `10-3`);
- separators between digit groups are resolved per number (our rule, not the paper's):
  a number with both `.` and `,` takes the last of the two as its decimal mark; a mark that repeats is a thousands
  separator; a single `,` or `.` followed by a group of exactly three digits is a thousands separator, except that
  `.` is a decimal point in languages that write decimals with a point (`2.125` is 2.125 in English and 2125 in
  German), and `,` followed by three digits is a thousands separator in every language, because the benchmarks'
  gold answers (`2,125` in all eleven MGSM languages) and most model outputs group thousands that way;
  any other single `,` or `.` is a decimal mark; spaces (no-break and thin spaces everywhere, plain spaces in
  French and Russian) separate thousands when followed by exactly three digits;
- when the output states its answer with a language's answer phrase ("The answer is", "答案是", "Jibu ni", ...), the
  answer is read from the clause that follows the phrase (up to the end of its sentence): the number after the clause's
  last `=` when it holds one ("The answer is 2 * 1.5 = 3." → 3), else its first number. The last phrase whose clause
  holds a number wins, so a trailing phrase with no number ("3. 答えは") falls back to an earlier one. A phrase counts
  only where it starts a word (not "answer:" inside "Step-by-Step Answer:"), and the labels that head a worked answer
  in the MGSM exemplars and lm-evaluation-harness prompts ("Step-by-Step Answer:", "逐步解答：", "ধাপে ধাপে উত্তর:")
  are not answer phrases. Telugu "సమాధానం" also means "answer" in running text, so it counts only when a number follows
  it directly, as in the exemplars ("సమాధానం 11."). With no phrase that gives a number: the last number in the output;
- list markers ("1. ", "2) " at the start of a line) are not numbers: "…\n5. " (an output cut after its marker) does
  not answer 5;
- a digit run too long for a float (`inf`) is not a number (it would be written as `Infinity`, which is not JSON).

Numbers written as words (`eleven`, `十一`) are not read.
"""

from __future__ import annotations

import math
import re
import unicodedata

from slam_trainer.errors import DataError
from slam_trainer.languages import LANGUAGES, get_language


# Languages that write the decimal mark as a comma; the others (en zh ja th sw bn te) use a point.
DECIMAL_COMMA_LANGUAGES = frozenset({"es", "fr", "de", "ru"})
# Languages whose typography groups thousands with a plain space ("3 000"; the RAE recommends it for Spanish).
SPACE_GROUPING_LANGUAGES = frozenset({"es", "fr", "ru"})

# How each language introduces its final answer (lower case, ASCII colons); the first entries are the MGSM exemplars'
# own phrasing. Russian "ответ" alone is not one: it is also the noun in running text ("чтобы найти ответ, ...").
ANSWER_PHRASES: dict[str, tuple[str, ...]] = {
    "en": ("the answer is", "final answer is", "final answer:", "answer:"),
    "es": ("la respuesta es", "respuesta final es", "respuesta:"),
    "fr": ("la réponse est", "réponse finale est", "réponse :", "réponse:"),
    "de": ("die antwort ist", "die antwort lautet", "antwort:"),
    "ru": ("ответ —", "ответ -", "ответ:", "ответ равен"),
    "zh": ("答案是", "答案为", "答案:"),
    "ja": ("答えは", "答え:", "解答:"),
    "th": ("คำตอบคือ", "คำตอบ:"),
    "sw": ("jibu ni", "jibu:"),
    "bn": ("উত্তর হল", "উত্তর হলো", "উত্তর:"),
    "te": ("సమాధానం",),
}
assert set(ANSWER_PHRASES) == set(LANGUAGES), "every shipped language needs answer phrases"
# Labels that head a worked answer instead of stating one: the MGSM exemplars' `cot` labels and lm-evaluation-harness's
# (lower case, ASCII colons; lm-eval writes Russian without the space). Masked before answer phrases are searched.
WORKED_ANSWER_LABELS = (
    "step-by-step answer:",
    "respuesta paso a paso:",
    "réponse étape par étape :",
    "schritt-für-schritt-antwort:",
    "пошаговое решение:",
    "пошаговоерешение:",
    "逐步解答:",
    "ステップごとの答え:",
    "คำตอบทีละขั้นตอน:",
    "jibu la hatua kwa hatua:",
    "ধাপে ধাপে উত্তর:",
    "దశలవారీగా సమాధానం:",
)
# Phrases that are also plain words: they count only when a number follows directly.
_NUMBER_MUST_FOLLOW = frozenset({"సమాధానం"})
# Writing systems without spaces between words: a phrase there may follow any character.
_NO_WORD_SPACES = frozenset(code for code, language in LANGUAGES.items() if not language.uses_spaces())

_MINUS = "-\u2212\uff0d"  # hyphen-minus, minus sign, full-width hyphen-minus
_SPACES = "\u00a0\u202f\u2009"  # no-break, narrow no-break and thin space
_FULL_WIDTH = str.maketrans({"\uff0c": ",", "\uff0e": "."})
# The end of a sentence: a full stop not inside a number, a line break, CJK/Indic full stops, ? and !.
_SENTENCE_END = re.compile(r"\.(?!\d)|[\n。।?!？！]")
# A list marker: "2." or "2)" that starts a line and is followed by text on that line, or ends a cut-off output.
_LIST_MARKER = re.compile(r"^([ \t]*)(\d{1,3}[.)])(?=[ \t]+\S|[ \t]+\Z)", re.MULTILINE)
# A sign counts only where it cannot be a hyphen or an operator; digits must not continue another number.
_NUMBER = re.compile(rf"(?:(?<!\w)([{_MINUS}]))?(?<![\d.,])(\d+(?:[.,{_SPACES} ]\d+)*)")


def normalize_digits(text: str) -> str:
    """`text` with every decimal digit of any script as an ASCII digit, and full-width `，` `．` as `,` `.`."""
    return "".join(
        str(unicodedata.decimal(char)) if not char.isascii() and unicodedata.decimal(char, None) is not None else char
        for char in text.translate(_FULL_WIDTH)
    )


def parse_number(token: str, lang: str = "en") -> float | None:
    """Read one number written with `lang`'s separators (see the module docstring); None if it is not one number.

    Parameters:
        token (`str`):
            Digits, optionally a leading minus and group/decimal separators, e.g. `"-1.234,5"`.
        lang (`str`, *optional*, defaults to `"en"`):
            The language whose conventions break ties, e.g. whether `2.125` is 2.125 or 2125.
    """
    match = re.fullmatch(rf"([{_MINUS}]?)(\d+(?:[.,{_SPACES} ]\d+)*)", normalize_digits(token.strip()))
    if match is None:
        return None
    sign, body = match.groups()
    groups = re.split(rf"[.,{_SPACES} ]", body)
    separators = re.findall(rf"[.,{_SPACES} ]", body)
    value = _resolve_separators(groups, separators, lang)
    if value is None:
        return None
    return -value if sign else value


def _resolve_separators(groups: list[str], separators: list[str], lang: str) -> float | None:
    if not separators:
        return float(groups[0])
    marks = [sep for sep in separators if sep in ".,"]
    decimal_at = None  # index of the separator that is the decimal mark
    if len(set(marks)) == 2:
        decimal_at = max(i for i, sep in enumerate(separators) if sep == marks[-1])
    elif len(marks) == 1:
        index = separators.index(marks[0])
        group_of_three = len(groups[index + 1]) == 3 and index == len(separators) - 1
        point_is_decimal = marks[0] == "." and lang not in DECIMAL_COMMA_LANGUAGES
        if not group_of_three or point_is_decimal or groups[0] == "0":
            decimal_at = index
    integer_groups = groups if decimal_at is None else groups[: decimal_at + 1]
    if decimal_at is not None and decimal_at != len(separators) - 1:
        return None  # digits grouped after the decimal mark: not a number we can read
    thousands = separators if decimal_at is None else separators[:decimal_at]
    for sep, group in zip(thousands, integer_groups[1:]):
        # Indian grouping (1,14,200) has groups of two before the last group of three.
        if len(group) not in (2, 3) or (sep not in ".," and len(group) != 3):
            return None
    if len(integer_groups) > 1 and len(integer_groups[-1]) != 3:
        return None
    text = "".join(integer_groups)
    if decimal_at is not None:
        text += "." + groups[-1]
    return float(text)


def find_numbers(text: str, lang: str = "en") -> list[float]:
    """Every number in `text`, in order, read with `lang`'s separators."""
    text = normalize_digits(text)
    spaces_ok = lang in SPACE_GROUPING_LANGUAGES
    numbers = []
    for match in _NUMBER.finditer(text):
        sign, body = match.group(1) or "", match.group(2)
        if not spaces_ok:
            # A plain space only groups thousands in fr/ru; elsewhere "5 6" is two numbers.
            parts = body.split(" ")
            pieces = [(sign, parts[0])] + [("", part) for part in parts[1:]]
        else:
            pieces = [(sign, body)]
        for piece_sign, piece in pieces:
            value = parse_number(piece_sign + piece, lang)
            if value is None:  # unreadable grouping: fall back to its digit runs, as a plain last-number rule would
                numbers.extend(float(run) for run in re.findall(r"\d+", piece))
            else:
                numbers.append(value)
    return [number for number in numbers if math.isfinite(number)]


def extract_answer(text: str, lang: str) -> float | None:
    """The answer that `text` (a model output to a question in `lang`) gives, or None when it holds no number.

    Parameters:
        text (`str`):
            The generated output (not the prompt).
        lang (`str`):
            The question's language code (see `slam_trainer.languages`); picks the answer phrases and separators.
    """
    get_language(lang)
    lowered = normalize_digits(text).lower().replace("：", ":")
    lowered = _LIST_MARKER.sub(lambda match: match.group(1) + " " * len(match.group(2)), lowered)
    for label in WORKED_ANSWER_LABELS:
        lowered = lowered.replace(label, " " * len(label))
    # The answer phrases of the question's language, else of any language (models switch, e.g. to English).
    for code in (lang, *(code for code in ANSWER_PHRASES if code != lang)):
        for start, phrase in sorted(_phrase_ends(lowered, code), reverse=True):
            answer = _clause_answer(lowered[start:], lang, number_must_follow=phrase in _NUMBER_MUST_FOLLOW)
            if answer is not None:
                return answer
    numbers = find_numbers(lowered, lang)
    return numbers[-1] if numbers else None


def _phrase_ends(lowered: str, code: str) -> list[tuple[int, str]]:
    """Where each answer phrase of language `code` ends in `lowered`, for occurrences that start a word."""
    word_start = "" if code in _NO_WORD_SPACES else r"(?<![\w-])"
    return [
        (match.end(), phrase)
        for phrase in ANSWER_PHRASES[code]
        for match in re.finditer(word_start + re.escape(phrase), lowered)
    ]


def _clause_answer(after: str, lang: str, *, number_must_follow: bool) -> float | None:
    """The number an answer phrase introduces, read from `after` (the text that follows the phrase)."""
    after = after.lstrip(" \t\n:")  # "The answer is:\n18"
    end = _SENTENCE_END.search(after)
    clause = after[: end.start() if end else None]
    if number_must_follow and not re.match(rf"[\s:=$€£¥₹৳฿{_MINUS}]*\d", clause):
        return None
    result = clause.rsplit("=", 1)[-1]  # "2 * 1.5 = 3" states 3
    numbers = find_numbers(result, lang) or find_numbers(clause, lang)
    return numbers[0] if numbers else None


def parse_gold(answer: str | int | float) -> float:
    """A gold answer as a number. MGSM and MSVAMP write gold answers in English format (`2,125`) in every language."""
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        return float(answer)
    value = parse_number(str(answer), "en")
    if value is None:
        raise DataError(f"Gold answer {answer!r} is not a number; the `answer` column must hold numbers like `2,125`.")
    return value


def is_correct(prediction: float | None, gold: float, tolerance: float = 1e-3) -> bool:
    """MathOctopus's rule: a prediction is correct when it lies within `tolerance` of the gold answer."""
    return prediction is not None and math.isfinite(prediction) and abs(prediction - gold) < tolerance
