import json
import re
from pathlib import Path

import pytest

from slam_trainer.l2.segmentation import LONG_COT_CHARS, REFLECTION_CUES, split_steps
from slam_trainer.languages import LANGUAGES


SAMPLES = {
    "en": "Roger started with 5 balls. 2 cans of 3 tennis balls each is 6 tennis balls. 5 + 6 = 11. The answer is 11.",
    "zh": "逐步解答：罗杰一开始有 5 个球。2 罐各 3 个网球就是 6 个网球。5 + 6 = 11。答案是 11。",
    "ja": "ロジャーは最初5個のボールがありました。テニスボール3個入りの缶が2つあれば、"
    "テニスボールは6個あります。5+6=11。答えは11です。",
    "th": "โรเจอร์เริ่มด้วยการมีลูกเทนนิส 5 ลูก กระป๋อง 2 ใบที่มีลูกเทนนิสใบละ 3 ลูก เท่ากับมีลูกเทนนิส 6 ลูก ดังนั้น 5 + 6 = 11 คำตอบคือ 11",
}
EXPECTED_SENTENCES = {"en": 4, "zh": 4, "ja": 4, "th": 4}
LONG = {
    "en": "Let me compute 12 times 3. That is 36.\n\nWait, the question asks for 13 times 3. So 39. "
    "Hmm, let me verify: 13 + 13 + 13 = 39. But is 3.5 involved? No. Alternatively, 10 times 3 plus 9 is 39.",
    "zh": "先算 12 乘 3。结果是 36。等等，题目问的是 13 乘 3。所以是 39。"
    "嗯，验证一下：13+13+13=39。或者，10 乘 3 加 9 等于 39。",
    "ja": "まず12に3を掛けます。36です。待って、問題は13掛ける3です。だから39です。うーん、確認します。13+13+13=39。",
    "th": "ก่อนอื่นคูณ 12 ด้วย 3 ได้ 36 เดี๋ยวก่อน โจทย์ถามว่า 13 คูณ 3 จึงได้ 39 อืม ตรวจสอบ 13+13+13=39",
}


def _squash(text):
    return re.sub(r"\s+", "", text)


def _assert_round_trip(text, steps):
    """Steps are verbatim slices of the text, in order, separated only by whitespace."""
    position = 0
    for step in steps:
        assert step and step == step.strip()
        found = text.find(step, position)
        assert found >= 0, step
        assert text[position:found].strip() == "", (text[position:found], step)
        position = found + len(step)
    assert text[position:].strip() == ""
    assert _squash("".join(steps)) == _squash(text)


@pytest.mark.parametrize("lang", sorted(SAMPLES))
def test_sentences_round_trip(lang):
    text = SAMPLES[lang]
    steps = split_steps(text, lang, mode="sentences")
    assert len(steps) == EXPECTED_SENTENCES[lang], steps
    _assert_round_trip(text, steps)
    exact = split_steps(text, lang, mode="sentences", keep_whitespace=True)
    assert "".join(exact) == text and len(exact) == len(steps)


@pytest.mark.parametrize("lang", sorted(LONG))
def test_reflection_fragments_start_at_cues(lang):
    text = LONG[lang]
    steps = split_steps(text, lang, mode="reflection")
    _assert_round_trip(text, steps)
    assert len(steps) >= 3
    for step in steps[1:]:
        assert any(step.startswith(cue) for cue in REFLECTION_CUES[lang]), step
    assert "".join(split_steps(text, lang, mode="reflection", keep_whitespace=True)) == text


def test_decimals_and_word_boundaries_do_not_cut():
    text = "The price is 3.5 dollars. Butter costs more. But then it is 7 dollars."
    assert split_steps(text, "en", mode="reflection") == [
        "The price is 3.5 dollars. Butter costs more.",
        "But then it is 7 dollars.",
    ]
    # Cyrillic: "Новый" starts with the cue "Но" but is another word.
    assert len(split_steps("Это 5. Новый шаг 6. Но ответ 7.", "ru", mode="reflection")) == 2


def test_auto_mode_picks_by_length_and_structure():
    long_text = (LONG["en"] + " ") * (LONG_COT_CHARS // len(LONG["en"]) + 1)
    assert split_steps(long_text, "en") == split_steps(long_text, "en", mode="reflection")
    assert split_steps("A one.\n\nB two. C three.", "en") == ["A one.", "B two. C three."]
    assert split_steps(SAMPLES["en"], "en") == split_steps(SAMPLES["en"], "en", mode="sentences")
    assert split_steps("   \n ", "en") == []


def test_custom_cues_and_bad_arguments():
    assert split_steps("Go on. Yet no. Yet yes.", "en", mode="reflection", cues=["Yet"]) == [
        "Go on.",
        "Yet no.",
        "Yet yes.",
    ]
    with pytest.raises(ValueError, match="`mode`"):
        split_steps("x", "en", mode="words")
    with pytest.raises(ValueError, match="shipped languages"):
        split_steps("x", "xx")
    with pytest.raises(ValueError, match="`cues`"):
        split_steps("x", "en", cues=[""])


def test_every_shipped_language_has_cues():
    assert set(REFLECTION_CUES) == set(LANGUAGES)


MGSM = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mgsm" / "exemplars.jsonl"


@pytest.mark.skipif(not MGSM.exists(), reason="MGSM exemplars not found at ../shared/data (third-party data)")
def test_round_trip_on_mgsm_exemplars_all_languages():
    rows = [json.loads(line) for line in MGSM.read_text(encoding="utf-8").splitlines()]
    for row in rows:
        steps = split_steps(row["cot"], row["lang"], mode="sentences")
        assert len(steps) >= 2, row
        _assert_round_trip(row["cot"], steps)
