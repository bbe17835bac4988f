"""Auto mode's default probe texts: the parallel training questions where the rows have them, else the built-in
corpus (`slam_trainer.probe.default_texts`), wired through `SelectiveFFNTrainer`."""

import pytest
from datasets import Dataset

from slam_trainer.data.slam_mix import build_slam_training_set
from slam_trainer.data.synthetic import synthetic_rows
from slam_trainer.probe import auto
from slam_trainer.probe.corpus import load_probe_corpus
from slam_trainer.probe.default_texts import default_probe_texts, training_questions
from slam_trainer.tiny import build_tiny_model, build_tiny_tokenizer
from slam_trainer.trainer import SelectiveFFNTrainer


ROWS = synthetic_rows(5, languages=["en", "es", "zh"], seed=3, world="one-step")
QUESTIONS = {lang: {row["id"]: row["question"] for row in ROWS if row["lang"] == lang} for lang in ("en", "es", "zh")}
ONE_LANGUAGE = [row for row in ROWS if row["lang"] == "en"]
PLAIN = Dataset.from_dict({"prompt": ["1+1="], "completion": [" 2"]})


@pytest.mark.parametrize(
    "dataset, expected",
    [
        (Dataset.from_list(ROWS), QUESTIONS),  # the package's parallel rows
        (build_slam_training_set(ROWS, prompt_template=None), QUESTIONS),  # SLAM's set, chat turns
        (build_slam_training_set(ROWS), QUESTIONS),  # SLAM's set, the Human/Assistant template
        (
            Dataset.from_list(ROWS[:-1]),
            {lang: dict(list(q.items())[:4]) for lang, q in QUESTIONS.items()},
        ),  # not in zh
        (PLAIN, None),  # no questions: the corpus
        (Dataset.from_list(ONE_LANGUAGE), None),  # one language is nothing to compare
        (build_slam_training_set(ROWS, tasks=("translate",)), None),  # the translation task alone: no answer rows
        (None, None),
    ],
    ids=["rows", "slam-chat", "slam-template", "drop-missing", "plain", "one-language", "translate-only", "none"],
)
def test_training_questions(dataset, expected):
    assert training_questions(dataset) == expected


def test_training_questions_keeps_the_first_ids():
    kept = training_questions(Dataset.from_list(ROWS), max_items=2)
    assert {lang: list(texts) for lang, texts in kept.items()} == {lang: list(q)[:2] for lang, q in QUESTIONS.items()}


def test_given_probe_data_wins_and_the_corpus_is_the_fallback():
    assert default_probe_texts("probe.jsonl", Dataset.from_list(ROWS)) == ("probe.jsonl", "the given probe data")
    assert default_probe_texts(None, Dataset.from_list(ROWS))[0] == QUESTIONS
    data, source = default_probe_texts(None, PLAIN)
    assert data == load_probe_corpus() and source.startswith("the built-in corpus")


@pytest.mark.parametrize("chat", [False, True])
def test_the_trainer_probes_its_own_training_questions(cpu_args, monkeypatch, chat, capsys):
    probed = []
    identify = auto.identify_language_layers
    monkeypatch.setattr(
        auto, "identify_language_layers", lambda m, t, data, **kw: probed.append(data) or identify(m, t, data, **kw)
    )
    dataset = build_slam_training_set(ROWS, prompt_template=None) if chat else build_slam_training_set(ROWS)
    tokenizer = build_tiny_tokenizer()  # its own: the chat template below must not reach other tests
    if chat:
        tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    args = cpu_args(slam_layers="auto", slam_num_layers=1)
    SelectiveFFNTrainer(model=build_tiny_model("llama"), args=args, train_dataset=dataset, processing_class=tokenizer)
    assert probed == [QUESTIONS]
    assert "probing 5 parallel training questions in 3 languages" in capsys.readouterr().err


def test_without_parallel_questions_the_trainer_probes_the_corpus(
    tokenizer, cpu_args, arithmetic_dataset, monkeypatch
):
    probed = []
    identify = auto.identify_language_layers
    monkeypatch.setattr(
        auto, "identify_language_layers", lambda m, t, data, **kw: probed.append(data) or identify(m, t, data, **kw)
    )
    args = cpu_args(slam_layers="auto", slam_num_layers=1)
    SelectiveFFNTrainer(
        model=build_tiny_model("llama"), args=args, train_dataset=arithmetic_dataset, processing_class=tokenizer
    )
    assert probed == [load_probe_corpus()]


@pytest.mark.slow
@pytest.mark.real_model
def test_the_default_choice_on_smollm2s_training_questions_is_stable(smollm2_path, tmp_path):
    """The evidence benchmark's training set (200 one-step-wide problems in en es ru zh sw, SLAM's chat-formatted set)
    and no probe data: auto mode probes those 200 questions and its choice is stable under the bootstrap (layer 6 is
    a near-tie, picked in 80% of resamples: on other data, e.g. the demo's 160 problems, the same default is NOT
    STABLE; see docs/layer_identification.md)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from slam_trainer.data.synthetic import problem_rows, train_test_problems
    from tests.conftest import cpu_config

    languages = ["en", "es", "ru", "zh", "sw"]
    train, _ = train_test_problems(
        200, 150, languages=languages, seed=2020, world="one-step-wide", disjoint="equation"
    )
    dataset = build_slam_training_set(problem_rows(train), prompt_template=None)
    model, tokenizer = AutoModelForCausalLM.from_pretrained(smollm2_path), AutoTokenizer.from_pretrained(smollm2_path)
    trainer = SelectiveFFNTrainer(
        model=model, args=cpu_config(tmp_path, slam_layers="auto"), train_dataset=dataset, processing_class=tokenizer
    )
    report = trainer.slam_layer_report
    assert report.settings["items"] == 200 and set(report.languages) == set(languages)
    assert report.stability["stable"], report.describe_choice()
    # the evidence run's slam-auto
    assert report.chosen_layers == trainer.slam_freeze_report.layers == [1, 6, 7, 9, 12, 14]
