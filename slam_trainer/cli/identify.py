"""`slam identify`: find a model's language-specific layers and write the report (JSON + PNG figure).

Usage:
    slam identify --model Qwen/Qwen2.5-0.5B                      # built-in 11-language corpus
    slam identify --model smollm2-135m-instruct --data ../shared/data/mgsm/mgsm.jsonl --output_dir reports/
    slam identify --model PATH --data flores.jsonl --score overlap_msd --region all --num_layers 4 \
        --dtype bfloat16 --device_map auto --output_dir reports/

The defaults are those of `slam_layers="auto"` in training (`slam_trainer.probe.settings`), so both choose the
same layers for the same model and data.
"""

from __future__ import annotations

from slam_trainer.dtypes import DTYPES


def make_parser(subparsers):
    from slam_trainer.probe.settings import DEFAULTS, REGIONS, SCORES

    parser = subparsers.add_parser(
        "identify",
        help="Find the language-specific decoder layers of a model (SLAM layer analysis, LAPE).",
        description=__doc__.split("\n")[0],
    )
    parser.add_argument("--model", required=True, help="Model directory or Hub id (a causal LM and its tokenizer).")
    parser.add_argument(
        "--data",
        default=None,
        help="Parallel texts: .jsonl/.json rows with id, lang and text or question (MGSM/MSVAMP files as they are). "
        "Default: the built-in corpus.",
    )
    parser.add_argument("--languages", nargs="+", default=None, help="Use only these languages (default: all).")
    parser.add_argument("--text_column", default=None, help="Text column of --data (default: text, else question).")
    parser.add_argument("--max_items", type=int, default=None, help="Use only the first N parallel items.")
    parser.add_argument(
        "--num_layers",
        type=int,
        default=DEFAULTS["num_layers"],
        help="How many layers to choose (default: %(default)s).",
    )
    parser.add_argument(
        "--score", choices=SCORES, default=DEFAULTS["score"], help="Score to choose by (default: %(default)s)."
    )
    parser.add_argument(
        "--region",
        choices=REGIONS,
        default=DEFAULTS["region"],
        help="Where layers may be chosen: lower_half (SLAM's claim) or all (LAPE finds bottom and top layers) "
        "(default: %(default)s, as slam_layers=auto).",
    )
    parser.add_argument("--pivot", default=None, help="Language overlaps are measured against (default: en).")
    parser.add_argument(
        "--top_rate", type=float, default=DEFAULTS["top_rate"], help="LAPE share of neurons (default: %(default)s)."
    )
    parser.add_argument(
        "--activation_bar_ratio",
        type=float,
        default=DEFAULTS["activation_bar_ratio"],
        help="LAPE bar quantile (default: %(default)s).",
    )
    parser.add_argument(
        "--batch_size", type=int, default=DEFAULTS["batch_size"], help="Texts per forward pass (default: %(default)s)."
    )
    parser.add_argument(
        "--max_length",
        type=int,
        default=DEFAULTS["max_length"],
        help="Items longer than N tokens in any language are dropped from every language (default: %(default)s).",
    )
    parser.add_argument(
        "--resamples",
        type=int,
        default=DEFAULTS["resamples"],
        help="Bootstrap resamples for the stability of the choice; 0 turns it off (default: %(default)s).",
    )
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="Bootstrap seed (default: %(default)s).")
    parser.add_argument("--dtype", choices=DTYPES, default="auto", help="Weights dtype (default: the checkpoint's).")
    parser.add_argument("--device_map", default=None, help="e.g. auto (shard over GPUs), cuda, cpu (default: cpu).")
    parser.add_argument(
        "--trust_remote_code",
        action="store_true",
        help="Run the model's own modelling code from its folder or Hub repo (off by default: it is arbitrary code).",
    )
    parser.add_argument(
        "--output_dir", default="slam-identify", help="Where the JSON and PNG go (default: ./slam-identify)."
    )
    return parser


def _check_output_dir(output_dir: str) -> None:
    """The folder the report goes to must be a folder, or creatable: checked before the probe, not after it."""
    from pathlib import Path

    from slam_trainer.errors import ConfigError
    from slam_trainer.probe.report import JSON_NAME, PNG_NAME

    path = Path(output_dir)
    existing = next(parent for parent in (path, *path.parents) if parent.exists() or parent == parent.parent)
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == path else f"lies under {existing}, which is a file"
        raise ConfigError(f"`--output_dir` {output_dir} {where}; give a folder.")
    for name in (JSON_NAME, PNG_NAME):
        if (path / name).is_dir():
            raise ConfigError(f"`--output_dir` {output_dir} holds a folder named {name}, where the report goes.")


def _check_arguments(args) -> None:
    """Every flag that needs no file or model, before anything is loaded."""
    from slam_trainer.cli.errors import CommandError
    from slam_trainer.probe.settings import check_probe_settings

    if args.max_items is not None and args.max_items < 1:
        raise CommandError(f"--max_items must be at least 1, got {args.max_items}.")
    _check_output_dir(args.output_dir)
    try:
        check_probe_settings(
            num_layers=args.num_layers,
            score=args.score,
            region=args.region,
            top_rate=args.top_rate,
            activation_bar_ratio=args.activation_bar_ratio,
            batch_size=args.batch_size,
            max_length=args.max_length,
            resamples=args.resamples,
        )
    except ValueError as error:
        raise CommandError(str(error)) from None


def _fitting_max_length(max_length: int, window: int | None) -> int:
    """`--max_length`, lowered to the model's context window (a longer item would fail mid-forward), with a note."""
    if window is None or max_length <= window:
        return max_length
    from transformers.utils import logging

    logging.get_logger(__name__).warning(
        "--max_length %d is longer than the model's context window of %d tokens: items longer than %d tokens are "
        "dropped instead (pass --max_length %d or less to silence this).",
        max_length,
        window,
        window,
        window,
    )
    return window


def main(args) -> None:
    _check_arguments(args)

    from slam_trainer.evaluation.loading import context_window
    from slam_trainer.loading import load_model_and_tokenizer, read_model_config
    from slam_trainer.probe import identify_language_layers
    from slam_trainer.probe.corpus import load_probe_corpus
    from slam_trainer.probe.identify import candidate_layers
    from slam_trainer.probe.parallel import load_parallel_texts

    data = load_probe_corpus() if args.data is None else args.data
    parallel = load_parallel_texts(data, languages=args.languages, text_column=args.text_column)
    texts = {lang: items[: args.max_items] for lang, items in parallel.texts.items()}
    config = read_model_config(args.model, trust_remote_code=args.trust_remote_code).get_text_config()
    candidate_layers(config.num_hidden_layers, args.num_layers, args.region)  # fail before loading the weights
    max_length = _fitting_max_length(args.max_length, context_window(config, None))
    model_init_kwargs = {"dtype": args.dtype, "device_map": args.device_map}
    model_init_kwargs["trust_remote_code"] = args.trust_remote_code
    model, tokenizer = load_model_and_tokenizer(args.model, model_init_kwargs)
    report = identify_language_layers(
        model,
        tokenizer,
        texts,
        num_layers=args.num_layers,
        score=args.score,
        pivot=args.pivot,
        region=args.region,
        top_rate=args.top_rate,
        activation_bar_ratio=args.activation_bar_ratio,
        batch_size=args.batch_size,
        max_length=max_length,
        resamples=args.resamples,
        seed=args.seed,
        progress=True,
    )
    print(report.format_table())
    json_path, png_path = report.save(args.output_dir)
    print(f"Wrote {json_path} and {png_path}.")
