"""`slam merge`: base model + FFN delta -> a normal model directory (loads with `from_pretrained`, and in vLLM).

Usage:
    slam merge meta-llama/Llama-2-7b-hf user/llama2-7b-slam-delta merged/
    slam merge ./base ./out/ffn_delta merged/ --dtype bfloat16

The base is loaded in the dtype it is stored in, so that the fingerprint check sees the weights the delta was trained
on; the delta is checked and applied, and only then is the model cast to `--dtype` and saved.
"""

from __future__ import annotations

from slam_trainer.cli.errors import CommandError
from slam_trainer.dtypes import DTYPES


def make_parser(subparsers):
    parser = subparsers.add_parser("merge", help=__doc__.split("\n")[0], description=__doc__)
    parser.add_argument("base", help="Base model: Hub id or directory (the one the delta was trained on).")
    parser.add_argument(
        "delta", help="FFN delta: the directory written by save_ffn_delta (or one of its files), or a Hub repo id."
    )
    parser.add_argument("out", help="Output directory for the merged model (and the base's tokenizer).")
    parser.add_argument("--revision", default=None, help="Revision of the base (default: the one the delta records).")
    parser.add_argument("--delta_revision", default=None, help="Revision of the delta, when it is a Hub repo.")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=DTYPES,
        help="dtype to save the merged model in (auto: the base's stored dtype).",
    )
    parser.add_argument("--trust_remote_code", action="store_true", help="Allow custom modelling code of the base.")
    return parser


def main(args) -> None:
    import os

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from slam_trainer.delta import load_ffn_delta, resolve_delta_directory, verify_ffn_delta
    from slam_trainer.offline_models import resolve_model_path

    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise CommandError(f"`out` {args.out!r} is a file; choose a new directory.")
    if os.path.isdir(args.out) and os.listdir(args.out):
        raise CommandError(f"`out` {args.out!r} exists and is not empty; choose a new directory.")
    if args.base.startswith((".", "/")) and not os.path.isdir(args.base):
        raise CommandError(f"`base` {args.base!r}: no such model directory.")
    delta_dir = resolve_delta_directory(args.delta, args.delta_revision)
    metadata = verify_ffn_delta(delta_dir)  # a missing, damaged or incomplete delta fails before the base loads
    revision = args.revision or metadata.base_revision
    base = resolve_model_path(args.base)
    model = AutoModelForCausalLM.from_pretrained(
        base, revision=revision, dtype="auto", trust_remote_code=args.trust_remote_code
    )
    try:
        tokenizer = AutoTokenizer.from_pretrained(base, revision=revision, trust_remote_code=args.trust_remote_code)
    except (OSError, ValueError):
        tokenizer = None
    if tokenizer is None and metadata.added_tokens:
        raise CommandError(
            f"the delta adds the L² tags {', '.join(metadata.added_tokens)}, but the base {args.base!r} has no "
            "tokenizer to add them to; merge onto a base folder that holds its tokenizer."
        )
    load_ffn_delta(model, delta_dir, tokenizer=tokenizer)  # a delta with L² tags adds them to the tokenizer
    if args.dtype != "auto":
        model.to(getattr(torch, args.dtype))
    model.save_pretrained(args.out)
    if tokenizer is None:
        print(f"slam merge: no tokenizer found with the base {args.base!r}; wrote the model only.")
    else:
        tokenizer.save_pretrained(args.out)
    dtype = str(model.dtype).removeprefix("torch.")
    tags = f", L² tags {' '.join(metadata.added_tokens)}" if metadata.added_tokens else ""
    print(
        f"slam merge: {args.base} + {len(metadata.tensors)} delta tensors (layers {metadata.layers}{tags}) -> "
        f"{args.out} ({dtype})"
    )
