"""Regenerate tests/data/real_outputs.jsonl: raw outputs of the two real models on the first MGSM questions.

Usage (about an hour on 2 busy CPU cores; runs resume from --workdir):
    OMP_NUM_THREADS=1 python tests/scripts/make_real_outputs.py [--workdir DIR]

Each run uses `slam eval`'s code with no stop sequence and no chat template, as the runs whose outputs were read by
hand for the scoring issue: models then write on past their answer, which is where scoring goes wrong. The file keeps
the outputs, their token counts and the gold answers, never the question text (third-party data stays in
../shared/data; tests that need a question read it from there).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from slam_trainer.evaluation.runner import EvalSettings, run_evaluation
from slam_trainer.languages import LANGUAGES


DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mgsm"
RUNS = {
    # name: (model, prompt style, shots, questions per language, languages (None: all), max_new_tokens, ids kept)
    "smollm2-mathoctopus-0shot": ("smollm2-135m-instruct", "mathoctopus", 0, 5, None, 48, None),
    "gemma3-mathoctopus-0shot": ("gemma3-270m", "mathoctopus", 0, 5, None, 48, None),
    "smollm2-native_cot-2shot": ("smollm2-135m-instruct", "mgsm_native_cot", 2, 2, None, 48, None),
    "gemma3-native_cot-2shot": ("gemma3-270m", "mgsm_native_cot", 2, 2, None, 48, None),
    # Our few-shot format puts the exemplars' worked answers ("Step-by-Step Answer: ...") before the question.
    "smollm2-mathoctopus-2shot": ("smollm2-135m-instruct", "mathoctopus", 2, 2, None, 64, None),
    "gemma3-mathoctopus-2shot": ("gemma3-270m", "mathoctopus", 2, 2, None, 64, None),
    # Gemma invents next questions with ever longer digit runs ("Question: 1000..."): let it run. Question 0's output
    # copies the whole question, so only question 1's are kept.
    "gemma3-native_cot-2shot-long": ("gemma3-270m", "mgsm_native_cot", 2, 2, ["en", "de"], 400, {1}),
}
KEPT = ("lang", "id", "answer", "output", "num_tokens", "stopped_by")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--workdir", default=None, help="Keep the runs here (resumable); a temporary folder if absent."
    )
    parser.add_argument("--output", default=str(Path(__file__).resolve().parents[1] / "data" / "real_outputs.jsonl"))
    args = parser.parse_args()
    lines = []
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or scratch
        for name, (model, style, shots, limit, languages, max_new_tokens, kept_ids) in RUNS.items():
            settings = EvalSettings(
                model=model,
                data=str(DATA / "mgsm.jsonl"),
                languages=languages,
                limit=limit,
                prompt_style=style,
                num_shots=shots,
                exemplars=str(DATA / "exemplars.jsonl") if shots else None,
                max_new_tokens=max_new_tokens,
                dtype="float32",
                device="cpu",
                chat_template=False,
                stop_strings=[],
            )
            run_evaluation(settings, Path(workdir) / name, progress=False)
            for line in (
                (Path(workdir) / name / "baseline" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
            ):
                record = json.loads(line)
                if kept_ids is None or record["id"] in kept_ids:
                    lines.append({"run": name, **{key: record[key] for key in KEPT}})
            print(f"{name}: {limit} questions per language done", flush=True)
    lines.sort(
        key=lambda record: (list(RUNS).index(record["run"]), list(LANGUAGES).index(record["lang"]), record["id"])
    )
    Path(args.output).write_text(
        "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8"
    )


if __name__ == "__main__":
    main()
