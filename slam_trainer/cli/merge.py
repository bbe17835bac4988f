"""`slam merge`: base model + FFN delta -> a normal model directory (loads with `from_pretrained`, and in vLLM).

Usage:
    slam merge meta-llama/Llama-2-7b-hf user/llama2-7b-slam-delta merged/
    slam merge ./base ./out/ffn_delta merged/ --dtype bfloat16

The work is `slam_trainer.pipelines.merge.merge_ffn_delta`: the base is loaded in the dtype it is stored in, so that
the fingerprint check sees the weights the delta was trained on; the delta is checked and applied, and only then is
the model cast to `--dtype` and saved.
"""

from __future__ import annotations

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
    from slam_trainer.pipelines.merge import merge_ffn_delta

    result = merge_ffn_delta(
        args.base,
        args.delta,
        args.out,
        revision=args.revision,
        delta_revision=args.delta_revision,
        dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
    )
    print(result.describe(args.base))
