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
        "--output_dir", default="slam-identify", help="Where the JSON and PNG go (default: ./slam-identify)."
    )
    return parser


def _check_arguments(args) -> None:
    """Every flag that needs no file or model, before anything is loaded."""
    from slam_trainer.cli.errors import CommandError
    from slam_trainer.probe.settings import check_probe_settings

    if args.max_items is not None and args.max_items < 1:
        raise CommandError(f"--max_items must be at least 1, got {args.max_items}.")
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


def main(args) -> None:
    _check_arguments(args)

    from slam_trainer.loading import load_model_and_tokenizer, read_model_config
    from slam_trainer.probe import identify_language_layers
    from slam_trainer.probe.corpus import load_probe_corpus
    from slam_trainer.probe.identify import candidate_layers
    from slam_trainer.probe.parallel import load_parallel_texts

    data = load_probe_corpus() if args.data is None else args.data
    parallel = load_parallel_texts(data, languages=args.languages, text_column=args.text_column)
    texts = {lang: items[: args.max_items] for lang, items in parallel.texts.items()}
    total = read_model_config(args.model).get_text_config().num_hidden_layers
    candidate_layers(total, args.num_layers, args.region)  # fail before loading the weights
    model_init_kwargs = {"dtype": args.dtype, "device_map": args.device_map}
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
        max_length=args.max_length,
        resamples=args.resamples,
        seed=args.seed,
        progress=True,
    )
    print(report.format_table())
    json_path, png_path = report.save(args.output_dir)
    print(f"Wrote {json_path} and {png_path}.")
