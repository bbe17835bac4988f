"""Answer extraction per language: a truth table of hand-written outputs, as a model would write them."""

import pytest

from slam_trainer.evaluation.extraction import (
    ANSWER_PHRASES,
    extract_answer,
    find_numbers,
    is_correct,
    parse_gold,
    parse_number,
)
from slam_trainer.languages import LANGUAGES


# (language, output, expected answer or None)
EXTRACTION_CASES = [
    # English: answer phrase, separators, decimals, negatives, units, currency, no number.
    ("en", "5 + 6 = 11. The answer is 11.", 11),
    ("en", "She makes 9 * 2 = $18 every day.", 18),
    ("en", "He earns $1,000.50 in total", 1000.5),
    ("en", "The answer is 2,125 eggs.", 2125),
    ("en", "The answer is 2.125", 2.125),
    ("en", "The temperature drops to -5 degrees.", -5),
    ("en", "10-3=7 apples are left", 7),
    ("en", "The answer is 12.5 kg. Check: 25 / 2 = 12.5", 12.5),
    ("en", "The answer is 18. Note that 3 and 4 were given.", 18),
    ("en", "It costs 0.75 dollars", 0.75),
    ("en", "I cannot solve this problem.", None),
    ("en", "The total is 1,234,567 people", 1234567),
    ("en", "The final answer: 40%", 40),
    # Spanish
    ("es", "5 + 6 = 11. La respuesta es 11.", 11),
    ("es", "Pagó 2,5 euros por cada uno", 2.5),
    ("es", "La respuesta es 1.234,5", 1234.5),
    ("es", "En total hay 2.125 personas", 2125),
    ("es", "La respuesta es -3 grados", -3),
    ("es", "No hay suficiente información.", None),
    # French
    ("fr", "5 + 6 = 11. La réponse est 11.", 11),
    ("fr", "Il gagne 3 000 euros par mois", 3000),
    ("fr", "La réponse est 12,75 €", 12.75),
    ("fr", "Il a 1\u202f500 billes", 1500),
    ("fr", "Elle a 5 pommes et 6 poires, donc 11 fruits", 11),
    ("fr", "Je ne sais pas.", None),
    # German
    ("de", "5 + 6 = 11. Die Antwort ist 11.", 11),
    ("de", "Die Antwort lautet 9.", 9),
    ("de", "Er zahlt 1.234,56 Euro", 1234.56),
    ("de", "Das sind 2,5 Liter", 2.5),
    ("de", "Das Haus kostet 80.000 $", 80000),
    ("de", "Die Antwort ist 2,125 Eier.", 2125),
    ("de", "Die Antwort ist 0,125", 0.125),
    # Russian
    ("ru", "5 + 6 = 11. Ответ — 11.", 11),
    ("ru", "Ответ: 42 рубля", 42),
    ("ru", "Всего 1 500 рублей", 1500),
    ("ru", "Получается 3,5 кг", 3.5),
    ("ru", "Температура −7 градусов", -7),
    ("ru", "Не знаю.", None),
    # Chinese
    ("zh", "5 + 6 = 11。答案是 11。", 11),
    ("zh", "他一共有11个苹果", 11),
    ("zh", "答案是１８。", 18),
    ("zh", "答案为 2,125 元", 2125),
    ("zh", "每个3.5元，所以7元", 7),
    ("zh", "这个问题无法回答。", None),
    # Japanese
    ("ja", "5+6=11。答えは11です。", 11),
    ("ja", "答えは１２個です。", 12),
    ("ja", "合計で１，２００円です", 1200),
    ("ja", "答えは９。確認：３＋６＝９", 9),
    ("ja", "わかりません。", None),
    # Thai
    ("th", "5 + 6 = 11 คำตอบคือ 11", 11),
    ("th", "คำตอบคือ ๑๒ ลูก", 12),
    ("th", "รวมเป็นเงิน 1,500 บาท", 1500),
    ("th", "ไม่ทราบ", None),
    # Swahili
    ("sw", "5 + 6 = 11. Jibu ni 11.", 11),
    ("sw", "Jibu ni shilingi 2,500.", 2500),
    ("sw", "Ana mipira 7.5", 7.5),
    ("sw", "Sijui.", None),
    # Bengali
    ("bn", "5 + 6 = 11। উত্তর হল 11।", 11),
    ("bn", "উত্তর হল ১২।", 12),
    ("bn", "মোট ১,১৪,২০০ টাকা", 114200),
    ("bn", "উত্তর হলো -4", -4),
    ("bn", "জানি না।", None),
    # Telugu
    ("te", "5+6=11. సమాధానం 11.", 11),
    ("te", "దశలవారీగా సమాధానం: 3 + 4 = 7. సమాధానం ౭.", 7),
    ("te", "మొత్తం 2,000 రూపాయలు", 2000),
    ("te", "తెలియదు.", None),
    # A model that switches to English still states its answer: the English phrase is read too.
    ("de", "Ich rechne 3 * 4 = 12. The answer is 12, und 5 ist falsch.", 12),
    # Issue #15's cases, as the issue quotes them.
    # 1. A phrase inside a label or a sentence is not an answer phrase.
    ("en", "Step-by-Step Answer: 16 - 3 - 4 = 9. 9 * 2 = 18", 18),
    ("zh", "逐步解答：16 - 3 - 4 = 9。9 * 2 = 18", 18),
    ("bn", "ধাপে ধাপে উত্তর: 16 - 3 - 4 = 9। 9 * 2 = 18", 18),
    ("ru", "Чтобы найти ответ, сложим 5 и 6: получится 11.", 11),
    ("te", "ఈ ప్రశ్నకు సమాధానం కనుగొనడానికి 5 + 6 = 11 లెక్కిస్తాము.", 11),
    ("en", "Her answer: 5 apples. The final answer is 7.", 7),
    # 2. An expression after the phrase states its result.
    ("en", "The answer is 2 * 1.5 = 3.", 3),
    ("de", "Die Antwort ist 15 + 25 = 40 Tassen.", 40),
    # 3. The last phrase with no number falls back to an earlier phrase that has one, not to the last number.
    ("ja", "1. 答えは60%です。\n2. 答えはいくらになりますか？\n3. 答えは", 60),
    # 4. Spanish groups thousands with spaces.
    ("es", "La respuesta es $1 000 000.", 1000000),
    # 5. A digit run too long for a float is no number.
    ("en", "The answer is " + "9" * 400, None),
    ("en", "It is 12. Then " + "1" * 400, 12),
    # List markers are not numbers; a number that ends a line is.
    ("en", "Steps:\n1. 3 + 4 = 7\n2. 7 * 2 = 14\n3. ", 14),
    ("en", "2) She has 9 eggs left", 9),
    ("en", "The total:\n18.", 18),
]


def test_table_covers_every_shipped_language():
    assert len(EXTRACTION_CASES) >= 60
    assert {lang for lang, _, _ in EXTRACTION_CASES} == set(LANGUAGES)
    assert set(ANSWER_PHRASES) == set(LANGUAGES)


@pytest.mark.parametrize(("lang", "output", "expected"), EXTRACTION_CASES)
def test_extract_answer(lang, output, expected):
    assert extract_answer(output, lang) == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    ("token", "lang", "expected"),
    [
        ("2.125", "en", 2.125),
        ("2.125", "de", 2125),
        ("2,125", "en", 2125),
        ("2,125", "fr", 2125),
        ("1.2.3", "en", None),
        ("12,34,567", "bn", 1234567),
        ("-0,5", "es", -0.5),
    ],
)
def test_parse_number_resolves_separators_by_language(token, lang, expected):
    assert parse_number(token, lang) == (None if expected is None else pytest.approx(expected))


def test_plain_space_separates_numbers_outside_french_and_russian():
    assert find_numbers("5 600", "en") == [5, 600]
    assert find_numbers("5 600", "fr") == [5600]


def test_gold_answers_and_tolerance():
    assert parse_gold("2,125") == 2125
    assert parse_gold(18) == 18
    assert is_correct(18.0004, 18) and not is_correct(18.01, 18) and not is_correct(None, 18)
    with pytest.raises(ValueError, match="`answer`"):
        parse_gold("eighteen")


def test_unknown_language_is_an_error():
    with pytest.raises(ValueError, match="Unknown language code 'xx'"):
        extract_answer("The answer is 1", "xx")
