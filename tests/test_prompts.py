"""One prompt format for training and evaluation (`slam_trainer.prompts`): a training row's prompt is the string
`slam eval` asks the same question with, chat and plain, and one rule picks between the two."""

import copy

import pytest
from datasets import Dataset

from slam_trainer.data.slam_mix import build_slam_training_set
from slam_trainer.data.synthetic import synthetic_parallel_dataset, synthetic_rows
from slam_trainer.errors import ConfigError
from slam_trainer.evaluation.prompts import build_prompts
from slam_trainer.l2.collator import L2DataCollator
from slam_trainer.pipelines.training import TrainScriptArguments, build_training_data
from slam_trainer.prompts import SLAM_TEMPLATE, eval_style, prompt_text, render_chat, uses_chat_template


LANGS = ["en", "es"]


def assert_training_prompts_are_eval_prompts(tokenizer, prompt_format, cpu_args):
    """Every answer row's prompt, as TRL renders it, against `slam eval`'s prompt for its question."""
    rows = synthetic_rows(3, languages=LANGS, world="one-step")
    script_args = TrainScriptArguments(dataset_format="parallel", prompt_format=prompt_format)
    dataset, _ = build_training_data(Dataset.from_list(rows), script_args, tokenizer, None, cpu_args())
    chat = prompt_format == "chat"
    questions = {(str(row["id"]), row["lang"]): row["question"] for row in rows}
    answers = [row for row in dataset if row["task"] == "answer"]
    assert len(answers) == len(rows)
    for row in answers:
        question = questions[row["id"], row["lang"]]
        # TRL renders a chat prompt with the generation prompt (`add_generation_prompt=True`), a text prompt as it is
        trained = render_chat(tokenizer, row["prompt"]) if chat else row["prompt"]
        (asked,) = build_prompts([{"lang": row["lang"], "question": question}], eval_style(chat), tokenizer=tokenizer)
        assert trained == asked == prompt_text(question, tokenizer, chat=chat)


@pytest.mark.parametrize("prompt_format", ["chat", "plain"])
def test_a_training_prompt_is_the_string_slam_eval_asks(prompt_format, tokenizer, cpu_args):
    assert_training_prompts_are_eval_prompts(tokenizer, prompt_format, cpu_args)


@pytest.mark.real_model
@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["smollm2_path", "gemma3_path"])  # a chat template (with a system turn); none
def test_a_training_prompt_is_the_string_slam_eval_asks_on_real_tokenizers(fixture, request, cpu_args):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(request.getfixturevalue(fixture))
    assert_training_prompts_are_eval_prompts(tokenizer, "chat" if uses_chat_template(tokenizer) else "plain", cpu_args)


@pytest.mark.parametrize("chat", [True, False])
def test_the_l2_collator_s_default_prompt_is_slam_eval_s(chat, tokenizer):
    """Without a `prompt_template`, an L² sequence starts with the prompt of SLAM's rows and `slam eval`."""
    example = synthetic_parallel_dataset(1, languages=LANGS)[0]
    collator = L2DataCollator(tokenizer, languages=LANGS, use_chat_template=chat)
    prompt_ids = collator.tokenize_example(example)["prompt_ids"]["es"]
    (asked,) = build_prompts(
        [{"lang": "es", "question": example["question"]["es"]}], eval_style(chat), tokenizer=tokenizer
    )
    assert prompt_ids == tokenizer(asked, add_special_tokens=not chat)["input_ids"]  # a chat template writes its BOS


def test_uses_chat_template_truth_table(tokenizer, cpu_args):
    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None
    assert uses_chat_template(tokenizer) is True  # by default: whether the tokenizer has a template
    assert uses_chat_template(plain) is False
    assert uses_chat_template(tokenizer, True) is True
    assert uses_chat_template(tokenizer, False) is False  # plain asked for, though the tokenizer could chat
    assert uses_chat_template(plain, False) is False
    with pytest.raises(ConfigError, match=r"`prompt_format='chat'` asks for the chat template, .* has none"):
        uses_chat_template(plain, True, asked_by="`prompt_format='chat'`")
    with pytest.raises(ConfigError, match=r"`--prompt_format chat` asks .* has none; use `--prompt_format plain`"):
        build_training_data(
            Dataset.from_list(synthetic_rows(2, languages=LANGS, world="one-step")),
            TrainScriptArguments(dataset_format="parallel", prompt_format="chat"),
            plain,
            None,
            cpu_args(),
        )
    assert (eval_style(True), eval_style(False)) == ("chat", "slam")


def test_a_template_must_fill_in_the_question():
    rows = synthetic_rows(1, languages=LANGS, world="one-step")
    assert build_slam_training_set(rows)[0]["prompt"] == SLAM_TEMPLATE.format(question=rows[0]["question"])
    with pytest.raises(ConfigError, match=r"must contain '\{question\}'.*called \{instruction\} before; rename it"):
        build_slam_training_set(rows, prompt_template="Human: {instruction}\nAssistant:")  # the field's old name
