"""A small synthetic multilingual world: grade-school arithmetic word problems with step-by-step solutions.

Written by us from templates (`synthetic_templates.py`) in all eleven shipped languages, step-aligned by
construction (one sentence per operation plus the answer sentence, in every language), seeded and reproducible:
problem `i` depends only on `(seed, i)`, so a larger set extends a smaller one. It feeds the demo, the tests and the
probe corpus, and gives MGSM-style rows to the evaluation code.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from slam_trainer.data.synthetic_templates import (
    ANSWER_SENTENCE,
    NAMES,
    ONE_STEP_TEMPLATES,
    ONE_STEP_WIDE_TEMPLATES,
    OPERATION_SYMBOLS,
    TEMPLATES,
)
from slam_trainer.errors import ConfigError
from slam_trainer.l2.parallel import build_parallel_dataset
from slam_trainer.l2.segmentation import join_steps
from slam_trainer.languages import LANGUAGES, validate_languages


# The worlds: GSM8K-like problems of two to four operations, one-operation problems with single digits, and the same
# one-operation problems with numbers up to 20 (the evidence benchmark's: enough distinct equations for its splits).
WORLDS = {"multi-step": TEMPLATES, "one-step": ONE_STEP_TEMPLATES, "one-step-wide": ONE_STEP_WIDE_TEMPLATES}
# What two problems must not share to count as different: `problem` (template and numbers) or `equation` (the
# arithmetic alone: "5 + 7" under any template).
DISJOINT = ("problem", "equation")
_APPLY = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b, "div": lambda a, b: a // b}


@dataclass(frozen=True)
class SyntheticProblem:
    """One problem in several languages, with the structured record it was written from.

    `numbers` holds the inputs and every intermediate result by name; `operations` lists
    `(operation, left, right, result)` over those names, the last result being `answer`.
    """

    id: str
    template: str
    numbers: dict[str, int]
    operations: tuple[tuple[str, str, str, str], ...]
    answer: int
    question: dict[str, str] = field(repr=False)
    steps: dict[str, list[str]] = field(repr=False)

    @property
    def key(self) -> tuple:
        """What makes two problems the same up to names and language: the template and its numbers."""
        return self.template, tuple(sorted(self.numbers.items()))

    @property
    def equation_key(self) -> tuple:
        """What makes two problems the same arithmetic under any template: each operation and its operands."""
        return tuple((op, self.numbers[left], self.numbers[right]) for op, left, right, _ in self.operations)


def _draw(template: dict, rng: random.Random) -> dict[str, int]:
    values: dict[str, int] = {}
    for name, spec in template["inputs"].items():
        values[name] = rng.randint(*spec) if isinstance(spec, tuple) else spec(values, rng)
    for operation, left, right, result in template["operations"]:
        values[result] = _APPLY[operation](values[left], values[right])
    return values


def generate_problems(
    num_problems: int, *, languages=None, seed: int = 0, world: str = "multi-step"
) -> list[SyntheticProblem]:
    """Generate `num_problems` problems.

    Parameters:
        num_problems (`int`):
            How many problems.
        languages (`list[str]`, *optional*):
            Language codes to write each problem in; all eleven shipped languages by default.
        seed (`int`, *optional*, defaults to `0`):
            Problem `i` is drawn from `(seed, i)` alone.
        world (`str`, *optional*, defaults to `"multi-step"`):
            `"multi-step"`: two to four operations per problem, numbers up to a few hundred (GSM8K-like);
            `"one-step"`: one addition or subtraction of single-digit numbers, small enough for a ~100M model to
            learn in minutes (the demo's world); `"one-step-wide"`: the same with numbers up to 20 (the evidence
            benchmark's world).
    """
    if not isinstance(num_problems, int) or num_problems < 0:
        raise ConfigError(f"`num_problems` must be a non-negative integer, got {num_problems!r}.")
    stream = _problem_stream(languages, seed, world)
    return [next(stream) for _ in range(num_problems)]


def train_test_problems(
    num_train: int,
    num_test: int,
    *,
    languages=None,
    seed: int = 0,
    world: str = "multi-step",
    disjoint: str = "problem",
) -> tuple[list[SyntheticProblem], list[SyntheticProblem]]:
    """Training problems and held-out problems that share no (template, numbers) pair, so that no held-out problem
    is a training problem under other names. Held-out problems come from `seed + 1` (distinct pairs), training
    problems from `seed` with the held-out pairs skipped; arguments as `generate_problems`. With
    `disjoint="equation"` no held-out equation ("5 + 7") appears in training under any template either, and the
    held-out problems have distinct equations."""
    for name, value in (("num_train", num_train), ("num_test", num_test)):
        if not isinstance(value, int) or value < 0:
            raise ConfigError(f"`{name}` must be a non-negative integer, got {value!r}.")
    if disjoint not in DISJOINT:
        raise ConfigError(f"`disjoint` must be one of {', '.join(DISJOINT)}, got {disjoint!r}.")
    key = (lambda problem: problem.key) if disjoint == "problem" else (lambda problem: problem.equation_key)
    # The one-step world has a few hundred distinct problems: give up rather than loop when too many are asked.
    budget = 50 * (num_train + num_test) + 1000
    test, held_out = [], set()
    for index, problem in enumerate(_problem_stream(languages, seed + 1, world)):
        if len(test) == num_test or index == budget:
            break
        if key(problem) not in held_out:
            held_out.add(key(problem))
            test.append(problem)
    train = []
    for index, problem in enumerate(_problem_stream(languages, seed, world)):
        if len(train) == num_train or index == budget:
            break
        if key(problem) not in held_out:
            train.append(problem)
    if len(test) < num_test or len(train) < num_train:
        raise ConfigError(
            f"The {world!r} world has too few distinct problems for {num_test} held-out and {num_train} training "
            "problems; ask for fewer, or use the multi-step world."
        )
    return train, test


def _problem_stream(languages, seed: int, world: str):
    """Problem 0, 1, 2, ... of `(seed, world)`, each written in `languages`."""
    if world not in WORLDS:
        raise ConfigError(f"`world` must be one of {', '.join(WORLDS)}, got {world!r}.")
    templates = WORLDS[world]
    languages = validate_languages(list(LANGUAGES) if languages is None else languages)
    names = sorted(templates)
    prefix = f"synthetic-{seed}" if world == "multi-step" else f"synthetic-{world}-{seed}"
    index = 0
    while True:
        rng = random.Random(f"slam-synthetic:{seed}:{index}")
        template_name = rng.choice(names)
        template = templates[template_name]
        values = _draw(template, rng)
        slot = rng.randrange(len(NAMES["en"]))
        answer = values[template["operations"][-1][3]]
        equations = [
            f"{values[left]} {OPERATION_SYMBOLS[op]} {values[right]} = {values[result]}"
            for op, left, right, result in template["operations"]
        ]
        question, steps = {}, {}
        for lang in languages:
            question_text, step_texts = template["texts"][lang]
            fill = {**values, "name": NAMES[lang][slot]}
            question[lang] = question_text.format(**fill)
            steps[lang] = [text.format(**fill, eq=eq) for text, eq in zip(step_texts, equations, strict=True)]
            steps[lang].append(ANSWER_SENTENCE[lang].format(answer=answer))
        yield SyntheticProblem(
            id=f"{prefix}-{index}",
            template=template_name,
            numbers=values,
            operations=template["operations"],
            answer=answer,
            question=question,
            steps=steps,
        )
        index += 1


def problem_rows(problems: list[SyntheticProblem]) -> list[dict]:
    """MGSM-style rows, one per problem and language: `id`, `lang`, `question`, `answer` (a string, as in MGSM),
    `cot` (the steps joined as running text) and `steps` (the list)."""
    return [
        {
            "id": problem.id,
            "lang": lang,
            "question": problem.question[lang],
            "answer": str(problem.answer),
            "cot": join_steps(problem.steps[lang], lang),
            "steps": list(problem.steps[lang]),
        }
        for problem in problems
        for lang in problem.question
    ]


def synthetic_rows(num_problems: int, *, languages=None, seed: int = 0, world: str = "multi-step") -> list[dict]:
    """`problem_rows` of `generate_problems(...)`: MGSM-style rows with `cot` and `steps`."""
    return problem_rows(generate_problems(num_problems, languages=languages, seed=seed, world=world))


def synthetic_parallel_dataset(num_problems: int, *, languages=None, seed: int = 0):
    """The synthetic problems in the parallel chain-of-thought schema of `slam_trainer.l2.parallel`."""
    dataset, _ = build_parallel_dataset(
        synthetic_rows(num_problems, languages=languages, seed=seed), languages=languages, on_invalid="raise"
    )
    return dataset
