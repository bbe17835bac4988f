"""`slam annotate`: translate an English seed set of chains of thought into other languages, step by step.

Usage:
    slam annotate --seed seed.jsonl --languages zh ja th --model gpt-4o --output annotations.jsonl
    OPENAI_BASE_URL=http://localhost:8000/v1 slam annotate --seed seed.jsonl --languages zh --model Qwen/Qwen2.5-7B

The seed file has one English example per line (`id`, `question`, `answer`, and `steps` or `cot`). Interrupt and
rerun the same command to resume: finished requests are cached next to the output and never repeated.
"""

from __future__ import annotations

import os

from slam_trainer.l2.segmentation import MODES as SEGMENTATION_MODES


def make_parser(subparsers):
    parser = subparsers.add_parser(
        "annotate", help="Translate an English CoT seed set into other languages.", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seed", required=True, help="JSON-lines seed set: id, question, answer, steps or cot.")
    parser.add_argument("--languages", nargs="+", required=True, help="Target language codes, e.g. zh ja th.")
    parser.add_argument("--model", required=True, help="Model name the endpoint serves.")
    parser.add_argument(
        "--base_url",
        default=None,
        help="OpenAI-compatible base URL (default: $OPENAI_BASE_URL, else https://api.openai.com/v1).",
    )
    parser.add_argument("--api_key", default=None, help="Bearer key (default: $OPENAI_API_KEY).")
    parser.add_argument("--output", required=True, help="JSON-lines file for the rows (seed + annotations).")
    parser.add_argument("--cache", default=None, help="Request cache (default: OUTPUT.cache.jsonl).")
    parser.add_argument("--concurrency", type=int, default=8, help="Requests in flight at once.")
    parser.add_argument("--max_retries", type=int, default=6, help="Retries on 429, 5xx and connection errors.")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument(
        "--segmentation",
        default="auto",
        choices=SEGMENTATION_MODES,
        help="How a seed `cot` is cut into steps.",
    )
    return parser


def main(args) -> None:
    import json

    from slam_trainer.cli.main import CommandError
    from slam_trainer.data.loaders import load_jsonl_rows
    from slam_trainer.l2.annotation import Endpoint, annotate

    seed = load_jsonl_rows(args.seed, required=("id", "question", "answer"))
    base_url = args.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
    endpoint = Endpoint(
        base_url=base_url,
        model=args.model,
        api_key=args.api_key or os.environ.get("OPENAI_API_KEY"),
        temperature=args.temperature,
    )
    cache = args.cache or f"{args.output}.cache.jsonl"
    report = annotate(
        seed,
        args.languages,
        endpoint,
        cache,
        concurrency=args.concurrency,
        max_retries=args.max_retries,
        segmentation=args.segmentation,
    )
    with open(args.output, "w", encoding="utf-8") as handle:
        for row in report.rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(
        f"{len(report.rows)} rows written to {args.output} ({report.cached} requests from the cache, "
        f"{report.requested} sent, {len(report.failures)} failed)."
    )
    if report.failures:
        failures = f"{args.output}.failures.jsonl"
        with open(failures, "w", encoding="utf-8") as handle:
            for failure in report.failures:
                handle.write(json.dumps(failure, ensure_ascii=False) + "\n")
        raise CommandError(
            f"{len(report.failures)} request(s) failed (listed in {failures}); rerun the same command "
            f"to retry them, finished ones are cached in {cache}."
        )
