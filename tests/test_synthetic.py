import re

import pytest

from slam_trainer.data.synthetic import generate_problems, synthetic_rows
from slam_trainer.l2.segmentation import split_steps
from slam_trainer.languages import LANGUAGES


EQUATION = re.compile(r"(\d+) ([-+×÷]) (\d+) = (\d+)")


def _evaluate(left, symbol, right):
    # Independent arithmetic: the test's own reading of the symbols written in the text.
    if symbol == "+":
        return left + right
    if symbol == "-":
        return left - right
    if symbol == "×":
        return left * right
    quotient, remainder = divmod(left, right)
    assert remainder == 0, "a grade-school division must come out even"
    return quotient


def _replay(problem):
    """Recompute the answer from the structured record: inputs plus the list of named operations."""
    produced = {result for *_, result in problem.operations}
    values = {name: value for name, value in problem.numbers.items() if name not in produced}
    symbol = {"add": "+", "sub": "-", "mul": "×", "div": "÷"}
    for operation, left, right, result in problem.operations:
        values[result] = _evaluate(values[left], symbol[operation], values[right])
        assert values[result] >= 0
    return values[problem.operations[-1][3]], values


PROBLEMS = generate_problems(200, seed=7)


def test_answers_are_correct_and_every_step_states_correct_arithmetic():
    assert {p.template for p in PROBLEMS} == {"shopping", "sharing", "rates", "stickers"}
    for problem in PROBLEMS:
        answer, values = _replay(problem)
        assert answer == problem.answer
        inputs = [v for k, v in values.items() if k not in {r for *_, r in problem.operations}]
        for lang in LANGUAGES:
            steps = problem.steps[lang]
            assert len(steps) == len(problem.operations) + 1
            for step, operation in zip(steps, problem.operations):
                ((left, symbol, right, result),) = EQUATION.findall(step)
                assert _evaluate(int(left), symbol, int(right)) == int(result), (lang, step)
                assert int(result) == values[operation[3]]
            assert str(problem.answer) in steps[-1]
            for number in inputs:
                assert re.search(rf"(?<!\d){number}(?!\d)", problem.question[lang]), (lang, number)


def test_languages_are_written_in_their_script():
    for problem in PROBLEMS[:20]:
        for lang, language in LANGUAGES.items():
            text = problem.question[lang] + "".join(problem.steps[lang])
            assert language.script_pattern.search(text), lang
            if language.script != "Latin":
                assert not re.search(r"[A-Za-z]{3,}", text), (lang, text)


def test_seeded_reproducible_and_prefix_stable():
    again = generate_problems(50, seed=7)
    assert [(p.id, p.question, p.steps) for p in again] == [(p.id, p.question, p.steps) for p in PROBLEMS[:50]]
    other = generate_problems(50, seed=8)
    assert [p.question["en"] for p in other] != [p.question["en"] for p in again]


def test_mgsm_style_rows_round_trip_through_segmentation():
    rows = synthetic_rows(40, languages=["en", "zh", "ja", "th", "ru", "bn"], seed=1)
    assert len(rows) == 40 * 6
    assert set(rows[0]) == {"id", "lang", "question", "answer", "cot", "steps"}
    for row in rows:
        assert split_steps(row["cot"], row["lang"], mode="sentences") == row["steps"], row
        assert row["answer"].isdigit()


def test_bad_arguments():
    with pytest.raises(ValueError, match="shipped languages"):
        generate_problems(1, languages=["xx"])
    with pytest.raises(ValueError, match="`num_problems`"):
        generate_problems(-1)
