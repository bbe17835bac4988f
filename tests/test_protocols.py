"""Protocol parity: our prompt styles against the references' own prompt text, stop sequences and answer rules.

The reference text below is quoted verbatim from the files named above each block (read with the search tool):
EleutherAI/lm-evaluation-harness `lm_eval/tasks/mgsm/utils.py` (commit 7311a6d), the generated task YAMLs, and
`lm_eval/api/samplers.py` / `lm_eval/filters/extraction.py`; microsoft/MathOctopus
`step1_supervised_finetuning/generate_and_eval.py`. Tests that need MGSM read it from ../shared/data.
"""

import json
import random
import re
import string

import jinja2
import pytest

from slam_trainer.evaluation import lm_eval_mgsm, mathoctopus
from slam_trainer.evaluation.prompts import build_prompts, reference_verdicts, stop_strings
from slam_trainer.languages import LANGUAGES


# lm_eval/tasks/mgsm/utils.py (7311a6d), LANGUAGES, verbatim but for the commented-out duplicates.
REFERENCE_LANGUAGES = {
    "bn": {
        "QUESTION": "\u09aa\u09cd\u09b0\u09b6\u09cd\u09a8:",
        "ANSWER": "\u09a7\u09be\u09aa\u09c7 \u09a7\u09be\u09aa\u09c7 \u0989\u09a4\u09cd\u09a4\u09b0:",
        "DIRECT": "Answer:",
        "REGEX": "The answer is (\\-?[0-9\\.\\,]+)",
    },
    "de": {
        "QUESTION": "Frage:",
        "ANSWER": "Schritt-f\u00fcr-Schritt-Antwort:",
        "DIRECT": "Antwort:",
        "REGEX": "Die Antwort lautet (\\-?[0-9\\.\\,]+)",
    },
    "en": {
        "QUESTION": "Question:",
        "ANSWER": "Step-by-Step Answer:",
        "DIRECT": "Answer:",
        "REGEX": "The answer is (\\-?[0-9\\.\\,]+)",
    },
    "es": {
        "QUESTION": "Pregunta:",
        "ANSWER": "Respuesta paso a paso:",
        "DIRECT": "Respuesta:",
        "REGEX": "La respuesta es (\\-?[0-9\\.\\,]+)",
    },
    "fr": {
        "QUESTION": "Question :",
        "ANSWER": "R\u00e9ponse \u00e9tape par \u00e9tape :",
        "DIRECT": "R\u00e9ponse :",
        "REGEX": "La r\u00e9ponse est (\\-?[0-9\\.\\,]+)",
    },
    "ru": {
        "QUESTION": "\u0417\u0430\u0434\u0430\u0447\u0430:",
        "ANSWER": "\u041f\u043e\u0448\u0430\u0433\u043e\u0432\u043e\u0435\u0440\u0435\u0448\u0435\u043d\u0438\u0435:",
        "DIRECT": "Answer:",
        "REGEX": "\u041e\u0442\u0432\u0435\u0442 \u2014 (\\-?[0-9\\.\\,]+)",
    },
    "sw": {
        "QUESTION": "Swali:",
        "ANSWER": "Jibu la Hatua kwa Hatua:",
        "DIRECT": "Answer:",
        "REGEX": "Jibu ni (\\-?[0-9\\.\\,]+)",
    },
    "te": {
        "QUESTION": "\u0c2a\u0c4d\u0c30\u0c36\u0c4d\u0c28:",
        "ANSWER": "\u0c26\u0c36\u0c32\u0c35\u0c3e\u0c30\u0c40\u0c17\u0c3e \u0c38\u0c2e\u0c3e\u0c27\u0c3e\u0c28\u0c02:",
        "DIRECT": "Answer:",
        "REGEX": "\u0c38\u0c2e\u0c3e\u0c27\u0c3e\u0c28\u0c02 (\\-?[0-9\\.\\,]+)",
    },
    "th": {
        "QUESTION": "\u0e42\u0e08\u0e17\u0e22\u0e4c:",
        "ANSWER": "\u0e04\u0e33\u0e15\u0e2d\u0e1a\u0e17\u0e35\u0e25\u0e30\u0e02\u0e31\u0e49\u0e19\u0e15\u0e2d\u0e19:",
        "DIRECT": "Answer:",
        "REGEX": "\u0e04\u0e33\u0e15\u0e2d\u0e1a\u0e04\u0e37\u0e2d (\\-?[0-9\\.\\,]+)",
    },
    "ja": {
        "QUESTION": "\u554f\u984c:",
        "ANSWER": "\u30b9\u30c6\u30c3\u30d7\u3054\u3068\u306e\u7b54\u3048:",
        "DIRECT": "Answer:",
        "REGEX": "\u7b54\u3048\u306f(\\-?[0-9\\.\\,]+)\u3067\u3059\u3002",
    },
    "zh": {
        "QUESTION": "\u95ee\u9898:",
        "ANSWER": "\u9010\u6b65\u89e3\u7b54:",
        "DIRECT": "Answer:",
        "REGEX": "\u7b54\u6848\u662f (\\-?[0-9\\.\\,]+)\u3002",
    },
}


def reference_templates(lang: str, mode: str) -> dict:
    """The task YAML fields that utils.py's `gen_lang_yamls(mode=...)` writes for `lang` (its f-strings, verbatim)."""
    QUESTION = REFERENCE_LANGUAGES[lang]["QUESTION"]
    if mode == "direct":
        ANSWER = REFERENCE_LANGUAGES[lang]["DIRECT"]
    elif mode == "native-cot":
        ANSWER = REFERENCE_LANGUAGES[lang]["ANSWER"]
    elif mode == "en-cot":
        ANSWER = REFERENCE_LANGUAGES["en"]["ANSWER"]
    ANSWER_TO_SKIP = len(REFERENCE_LANGUAGES[lang]["ANSWER"]) + 1
    return {
        "doc_to_text": f"""{{% if answer is not none %}}"""
        f"""{{{{question+"\\n{ANSWER}"}}}}"""
        f"""{{% else %}}"""
        f"""{{{{"{QUESTION} "+question+"\\n{ANSWER}"}}}}"""
        f"""{{% endif %}}""",
        "doc_to_target": f"""{{% if answer is not none %}}"""
        f"""{{{{answer[{ANSWER_TO_SKIP}:]}}}}"""
        f"""{{% else %}}"""
        f"""{{{{answer_number|string}}}}"""
        f"""{{% endif %}}""",
        "until": [QUESTION, "</s>", "<|im_end|>"],
        # direct/direct_yaml: target_delimiter: ""; native_cot/cot_yaml and en_cot/cot_yaml: target_delimiter: " "
        "target_delimiter": "" if mode == "direct" else " ",
    }


# The generated YAMLs agree with the f-strings above; two of them, verbatim:
# lm_eval/tasks/mgsm/native_cot/mgsm_native_cot_zh.yaml (a9bd129)
NATIVE_COT_ZH_DOC_TO_TEXT = (
    '{% if answer is not none %}{{question+"\\n逐步解答:"}}{% else %}{{"问题: "+question+"\\n逐步解答:"}}{% endif %}'
)
NATIVE_COT_ZH_UNTIL = ["问题:", "</s>", "<|im_end|>"]
# lm_eval/tasks/mgsm/en_cot/mgsm_en_cot_ja.yaml (3d5dc50)
EN_COT_JA_DOC_TO_TEXT = (
    '{% if answer is not none %}{{question+"\\nStep-by-Step Answer:"}}'
    '{% else %}{{"問題: "+question+"\\nStep-by-Step Answer:"}}{% endif %}'
)
EN_COT_JA_DOC_TO_TARGET = "{% if answer is not none %}{{answer[11:]}}{% else %}{{answer_number|string}}{% endif %}"

MODES = list(lm_eval_mgsm.MODES.items())


def render(template: str, doc: dict) -> str:
    return jinja2.Environment().from_string(template).render(**doc)


def reference_context(eval_doc: dict, fewshot_docs: list[dict], num_fewshot: int, rnd, templates: dict) -> str:
    """lm_eval/api/samplers.py `ContextSampler.get_context` (+ `sample`), then the test doc's text, as lm-eval's
    `fewshot_context` joins them (train split != test split, so no extra draw)."""
    fewshotex = rnd.sample(fewshot_docs, num_fewshot)
    labeled_examples = ""
    for doc in fewshotex:
        doc_content = render(templates["doc_to_text"], doc)
        doc_target = render(templates["doc_to_target"], doc)
        labeled_examples += doc_content
        if doc_target != "":
            labeled_examples += templates["target_delimiter"]
            labeled_examples += doc_target
            labeled_examples += "\n\n"  # fewshot_delimiter default
    return labeled_examples + render(templates["doc_to_text"], eval_doc)


@pytest.fixture(scope="module")
def mgsm(shared_data):
    rows = [json.loads(line) for line in (shared_data / "mgsm" / "mgsm.jsonl").open(encoding="utf-8")]
    exemplars = [json.loads(line) for line in (shared_data / "mgsm" / "exemplars.jsonl").open(encoding="utf-8")]
    return rows, exemplars


def test_the_yaml_files_agree_with_the_generator():
    native_zh = reference_templates("zh", "native-cot")
    assert native_zh["doc_to_text"] == NATIVE_COT_ZH_DOC_TO_TEXT and native_zh["until"] == NATIVE_COT_ZH_UNTIL
    en_ja = reference_templates("ja", "en-cot")
    assert en_ja["doc_to_text"] == EN_COT_JA_DOC_TO_TEXT and en_ja["doc_to_target"] == EN_COT_JA_DOC_TO_TARGET


def test_labels_and_regexes_are_lm_evals():
    for lang, reference in REFERENCE_LANGUAGES.items():
        ours = lm_eval_mgsm.LABELS[lang]
        assert (ours.question, ours.answer, ours.direct, ours.regex) == tuple(reference.values()), lang


@pytest.mark.parametrize(("style", "mode"), MODES)
@pytest.mark.parametrize("lang", list(LANGUAGES))
def test_zero_shot_prompts_and_stops_match_lm_eval(mgsm, style, mode, lang):
    rows = [row for row in mgsm[0] if row["lang"] == lang][:3]
    templates = reference_templates(lang, mode)
    expected = [render(templates["doc_to_text"], {"question": row["question"], "answer": None}) for row in rows]
    assert build_prompts(rows, style) == expected
    assert stop_strings(style, lang) == templates["until"]


@pytest.mark.parametrize(("style", "mode"), MODES)
@pytest.mark.parametrize("lang", ["en", "de", "fr", "ru", "zh", "ja", "te"])
def test_few_shot_prompts_match_lm_evals_sampler(mgsm, style, mode, lang):
    rows, exemplars = mgsm
    rows = [row for row in rows if row["lang"] == lang][:4]
    shots = [row for row in exemplars if row["lang"] == lang]
    # lm-eval reads juletxara/mgsm's train split: label colons ASCII ("问题: "), as `train_split_form` writes them.
    train_docs = [
        {"question": lm_eval_mgsm.train_split_form(s["question"]), "answer": lm_eval_mgsm.train_split_form(s["cot"])}
        for s in shots
    ]
    templates = reference_templates(lang, mode)
    rnd = random.Random(1234)  # Task.set_fewshot_seed(fewshot_random_seed=1234), one generator per task
    expected = [
        reference_context({"question": row["question"], "answer": None}, train_docs, len(train_docs), rnd, templates)
        for row in rows
    ]
    assert build_prompts(rows, style, exemplars={lang: shots}) == expected
    assert len({prompt.split("\n")[0] for prompt in expected}) > 1  # the draws really differ between questions


def test_train_split_form_only_rewrites_full_width_label_colons():
    assert lm_eval_mgsm.train_split_form("问题：罗杰有 5 个网球。") == "问题: 罗杰有 5 个网球。"
    assert lm_eval_mgsm.train_split_form("ステップごとの答え：ロジャーは") == "ステップごとの答え: ロジャーは"
    assert lm_eval_mgsm.train_split_form("Question : Roger a 5 balles.") == "Question : Roger a 5 balles."
    assert lm_eval_mgsm.train_split_form("Пошаговое решение: в начале") == "Пошаговое решение: в начале"


def reference_regex_filter(resp: str, regex_pattern: str, group_select: int = 0, fallback: str = "[invalid]"):
    """lm_eval/filters/extraction.py `RegexFilter.apply` for one response (its body, verbatim)."""
    regex = re.compile(regex_pattern)
    match = regex.findall(resp)
    if match:
        match = match[group_select]
        if isinstance(match, tuple):
            match = [m for m in match if m]
            if match:
                match = match[0]
            else:
                match = fallback
        match = match.strip()
    else:
        match = fallback
    return match


def reference_exact_match(prediction: str, reference: str) -> bool:
    """lm_eval/api/metrics.py `exact_match_hf_evaluate` with ignore_case and ignore_punctuation (one pair)."""
    prediction, reference = prediction.lower(), reference.lower()
    repl_table = string.punctuation.maketrans("", "", string.punctuation)
    return prediction.translate(repl_table) == reference.translate(repl_table)


def test_lm_eval_filters_match_the_reference_on_real_outputs(real_outputs):
    checked = 0
    for record in real_outputs:
        gold = float(record["answer"].replace(",", ""))
        for mode in ("direct", "native-cot", "en-cot"):
            strict = REFERENCE_LANGUAGES["en" if mode == "en-cot" else record["lang"]]["REGEX"]
            flexible = reference_regex_filter(record["output"], "(-?[$0-9.,]{2,})|(-?[0-9]+)", group_select=-1)
            expected = {"flexible-extract": reference_exact_match(flexible, str(int(gold)))}
            if mode == "direct":
                expected["remove_whitespace"] = reference_exact_match(record["output"].lstrip(), str(int(gold)))
            else:
                expected["strict-match"] = reference_exact_match(
                    reference_regex_filter(record["output"], strict), str(int(gold))
                )
            style = next(style for style, m in MODES if m == mode)
            assert reference_verdicts(style, record["output"], gold, record["lang"]) == expected
            checked += 1
    assert checked >= 100


@pytest.mark.parametrize(
    ("output", "strict", "flexible"),
    [
        ("5 + 6 = 11. The answer is 11.", "11.", "11."),  # the class takes the full stop; exact_match drops it
        ("The answer is 1,234.5 dollars. Then 7 more.", "1,234.5", "7"),
        ("no number here", "[invalid]", "[invalid]"),
        ("It costs $18.", "[invalid]", "$18."),
    ],
)
def test_lm_eval_filters_by_hand(output, strict, flexible):
    assert lm_eval_mgsm.regex_filter(output, lm_eval_mgsm.LABELS["en"].regex) == strict
    assert lm_eval_mgsm.regex_filter(output, lm_eval_mgsm.FLEXIBLE_REGEX, group_select=-1) == flexible
    assert lm_eval_mgsm.exact_match("$18.", 18) and lm_eval_mgsm.exact_match("1,234", 1234)
    assert not lm_eval_mgsm.exact_match("18.0", 18)  # punctuation is removed, not the decimal: "180" != "18"


# MathOctopus step1_supervised_finetuning/generate_and_eval.py, gsm8k_batch_gen and extract_last_num, verbatim.
def reference_mathoctopus_prompt(lang, q):
    prompt_no_input = (
        "Below is an instruction that describes a task. "
        f"Write a response that appropriately completes the request in {lang}. Please answer in {lang}.\n\n"
        "### Instruction:\n{query}\n\n### Response:"
    )
    return prompt_no_input.format(query=q)


def reference_extract_last_num(text: str) -> float:
    text = re.sub(r"(\d),(\d)", "\\g<1>\\g<2>", text)  # 处理形如 123,456
    res = re.findall(r"(\d+(\.\d+)?)", text)  # 匹配 123456.789
    if len(res) > 0:
        num_str = res[-1][0]
        return float(num_str)
    else:
        return 0.0


# generate_and_eval.py's `langs` (without its En_gsm8k): the names it puts in the prompt.
MATHOCTOPUS_NAMES = {
    "sw": "Swahili",
    "en": "English",
    "zh": "Chinese",
    "bn": "Bengali",
    "de": "German",
    "es": "Spanish",
    "fr": "French",
    "ja": "Japanese",
    "ru": "Russian",
    "th": "Thai",
}


def test_mathoctopus_prompt_matches_the_reference(mgsm):
    rows = [row for row in mgsm[0] if row["lang"] in MATHOCTOPUS_NAMES and row["id"] < 2]
    expected = [reference_mathoctopus_prompt(MATHOCTOPUS_NAMES[row["lang"]], row["question"]) for row in rows]
    assert build_prompts(rows, "mathoctopus") == expected
    assert set(mathoctopus.LANGUAGES) == set(MATHOCTOPUS_NAMES)  # ten languages, no Telugu


def test_mathoctopus_answer_rule_matches_the_reference_on_real_outputs(real_outputs):
    for record in real_outputs:
        assert mathoctopus.extract_last_num(record["output"]) == reference_extract_last_num(record["output"])
        gold = reference_extract_last_num(record["answer"])
        expected = abs(reference_extract_last_num(record["output"]) - gold) < 1e-3
        assert reference_verdicts("mathoctopus", record["output"], gold, record["lang"]) == {"last-number": expected}
