"""MathOctopus's evaluation protocol (microsoft/MathOctopus, which SLAM's evaluation reuses), reproduced.

From `step1_supervised_finetuning/generate_and_eval.py` (MGSM) and `svamp_test.py` (MSVAMP):

- the prompt (`gsm8k_batch_gen`): an Alpaca-style instruction naming the question's language, the question alone;
- greedy decoding, 600 new tokens for MGSM (300 for MSVAMP), no stop sequence but the end-of-sequence token, the
  output decoded with `skip_special_tokens=True`;
- the answer (`extract_last_num`): commas between digits removed, then the last `\\d+(\\.\\d+)?` in the output (no
  sign), 0.0 when there is none; correct when it lies within 1e-3 of the gold answer;
- ten languages (no Telugu): the MGSM average is over those ten.
"""

from __future__ import annotations

import re


PROMPT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request in {language}. Please answer in {language}.\n\n"
    "### Instruction:\n{query}\n\n### Response:"
)
TOLERANCE = 1e-3
LANGUAGES = ("sw", "en", "zh", "bn", "de", "es", "fr", "ja", "ru", "th")  # generate_and_eval.py's `langs` order


def extract_last_num(text: str) -> float:
    """MathOctopus's answer: the last unsigned number once commas between digits are removed; 0.0 without one."""
    text = re.sub(r"(\d),(\d)", r"\g<1>\g<2>", text)
    found = re.findall(r"(\d+(\.\d+)?)", text)
    return float(found[-1][0]) if found else 0.0


def reference_verdicts(output: str, gold: float) -> dict[str, bool]:
    """Whether MathOctopus's script scores `output` correct."""
    return {"last-number": abs(extract_last_num(output) - gold) < TOLERANCE}
