"""`slam eval`: multilingual math accuracy, generated tokens and language consistency of a model, per language.

Usage:
    slam eval --model PATH --data ../shared/data/mgsm/mgsm.jsonl --languages en zh sw --output_dir eval/
    slam eval --model ADAPTER_DIR --data ../shared/data/msvamp/msvamp.jsonl --limit 50 --batch_size 16
    slam eval --model BASE --delta delta.safetensors --data mgsm.jsonl --num_shots 8 \
        --exemplars ../shared/data/mgsm/exemplars.jsonl
    slam eval --model L2_MODEL --data mgsm.jsonl --switch_beta 2 --switch_alpha 0.5 --switch_top_k 10
    slam eval --model PATH --data mgsm.jsonl --prompt_style mgsm_native_cot --num_shots 8 \
        --exemplars ../shared/data/mgsm/exemplars.jsonl --chat_template off   # lm-eval's mgsm_native_cot

Runs resume: run the same command again after an interruption and it continues where it stopped. With any
`--switch_*` flag the model is evaluated twice in one invocation (`baseline` and `switch`, with L²'s
`LanguageSwitchLogitsProcessor`), so accuracy and token counts are compared side by side.
"""

from __future__ import annotations

import argparse
import json

from slam_trainer.cli.errors import in_flag_words
from slam_trainer.dtypes import DTYPES
from slam_trainer.errors import DataError
from slam_trainer.evaluation.prompts import PROMPT_STYLES


MODEL_HELP = "Model folder, Hub id, or short name (smollm2-135m-instruct, gemma3-270m), or a PEFT adapter folder."
_SWITCH_FLAGS = ("alpha", "beta", "top_k", "policy", "target", "weights", "boundary", "languages")


def make_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "eval",
        help="Evaluate multilingual math reasoning per language.",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    parser.add_argument("--data", required=True, help="Benchmark JSONL with id, lang, question, answer.")
    parser.add_argument("--output_dir", default="eval_results", help="Where runs, the table and the PNG go.")
    parser.add_argument("--languages", nargs="+", default=None, help="Language codes (default: all in --data).")
    parser.add_argument("--limit", type=int, default=None, help="First N questions per language.")
    parser.add_argument(
        "--prompt_style",
        default="mathoctopus",
        choices=PROMPT_STYLES,
        help="Prompt, stop sequences and reference answer rule: MathOctopus's, SLAM's training format, the chat "
        "template, or lm-evaluation-harness's MGSM tasks (see docs/evaluation.md).",
    )
    parser.add_argument(
        "--chat_template",
        default="auto",
        choices=["auto", "on", "off"],
        help="Wrap prompts in the tokenizer's chat template (auto: when it has one, as lm-eval's "
        "--apply_chat_template).",
    )
    parser.add_argument(
        "--stop_strings",
        nargs="*",
        default=None,
        metavar="TEXT",
        help="Text that ends an output (default: the prompt style's); give the flag alone for none.",
    )
    parser.add_argument(
        "--context_overflow",
        default="error",
        choices=["error", "warn"],
        help="A prompt plus --max_new_tokens longer than the model's context window: error (default) or warn.",
    )
    parser.add_argument("--num_shots", type=int, default=0, help="Few-shot exemplars per prompt (needs --exemplars).")
    parser.add_argument("--exemplars", default=None, help="Exemplar JSONL with lang, question, cot.")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_new_tokens", type=int, default=600, help="Default 600, as MathOctopus.")
    parser.add_argument(
        "--do_sample", action="store_true", help="Sample instead of greedy decoding (draws seeded per example)."
    )
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top_p", type=float, default=1.0, help="Nucleus mass in (0, 1].")
    parser.add_argument("--num_beams", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tokenizer", default=None, help="Tokenizer path when not the model's own.")
    parser.add_argument("--delta", default=None, help="Saved FFN delta to apply on top of --model.")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=DTYPES,
        help="auto: bf16 on a GPU that supports it, else fp32.",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
    parser.add_argument(
        "--trust_remote_code",
        action="store_true",
        help="Run the model's own modelling code from its folder or Hub repo (off by default: it is arbitrary code).",
    )
    parser.add_argument("--overwrite", action="store_true", help="Start runs again instead of resuming them.")
    parser.add_argument(
        "--compare",
        nargs="+",
        default=[],
        metavar="RESULTS_JSON",
        help="results.json files of other runs to show in the table and PNG.",
    )
    _add_intervention_flags(parser)
    return parser


def _add_intervention_flags(parser) -> None:
    group = parser.add_argument_group("L² decoding intervention (any of these adds a `switch` run)")
    group.add_argument("--switch_alpha", type=float, default=None, help="Probability of boosting (default 0.5).")
    group.add_argument("--switch_beta", type=float, default=None, help="Logit shift (default 2.0).")
    group.add_argument("--switch_top_k", type=int, default=None, help="Act when a tag is in the top k (default 10).")
    group.add_argument("--switch_policy", default=None, choices=["fixed", "switch", "weighted"])
    group.add_argument("--switch_target", default=None, help="Target language for --switch_policy fixed.")
    group.add_argument("--switch_weights", type=float, nargs="+", default=None, help="Per-language weights.")
    group.add_argument("--switch_boundary", default=None, choices=["newline", "any"])
    group.add_argument("--switch_languages", nargs="+", default=None, help="Tag languages (default: --languages).")
    group.add_argument("--skip_baseline", action="store_true", help="Run only with the intervention.")


def main(args: argparse.Namespace) -> None:
    from pathlib import Path

    from slam_trainer.evaluation.report import format_table, plot_results
    from slam_trainer.evaluation.runner import EvalSettings, InterventionSettings, run_evaluation

    compared = [read_results_file(path) for path in args.compare]
    values = {name: getattr(args, name) for name in EvalSettings.__dataclass_fields__}
    values["chat_template"] = {"auto": None, "on": True, "off": False}[args.chat_template]
    given = {
        name: getattr(args, f"switch_{name}") for name in _SWITCH_FLAGS if getattr(args, f"switch_{name}") is not None
    }
    with in_flag_words(_flag_words(EvalSettings.__dataclass_fields__)):
        settings = EvalSettings(**values)
        intervention = InterventionSettings(**given) if given else None
        results = run_evaluation(
            settings,
            args.output_dir,
            intervention=intervention,
            skip_baseline=args.skip_baseline,
            overwrite=args.overwrite,
        )
    for result in results:
        throughput = result["throughput"]
        print(
            f"{result['run']}: generated {throughput['tokens']} tokens for {throughput['rows']} new rows "
            f"({throughput['tokens_per_second']:.1f} tokens/s)"
        )
        if "steering" in result:  # whether the intervention acted at all decides how to read the switch run
            steering = result["steering"]
            print(
                f"{result['run']}: the intervention acted on {steering['rows_steered']} of {steering['rows']} rows "
                f"({steering['steps']} steps shifted)"
            )
    shown = results + compared
    print(format_table(shown))
    png = plot_results(shown, Path(args.output_dir) / "results.png")
    print(f"Wrote {', '.join(str(Path(args.output_dir) / r['run'] / 'results.json') for r in results)} and {png}")


def _flag_words(settings_fields) -> dict[str, str]:
    """The library's parameter names in the messages -> the flags of this command (`target` -> `--switch_target`)."""
    from slam_trainer.l2.decoding import TARGET_POLICIES

    words = {f"policy='{policy}'": f"--switch_policy {policy}" for policy in TARGET_POLICIES}
    words.update({f"`{name}`": f"`--switch_{name}`" for name in _SWITCH_FLAGS if name != "languages"})
    words.update({f"`{name}`": f"`--{name}`" for name in (*settings_fields, "skip_baseline")})
    return words


def read_results_file(path: str) -> dict:
    """A `results.json` of another run, for `--compare`, checked before anything else runs."""
    from pathlib import Path

    if not Path(path).is_file():
        raise FileNotFoundError(f"`--compare` {path}: no such results file.")
    try:
        result = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"`--compare` {path} is not JSON ({error}); pass a run's results.json.") from None
    if (
        not isinstance(result, dict)
        or not isinstance(result.get("run"), str)
        or "languages" not in result.get("scores", {})
    ):
        raise DataError(f"`--compare` {path} is not a run's results.json (it needs `run` and `scores`).")
    return result
