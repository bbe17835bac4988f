"""`slam annotate`: translate an English seed set of chains of thought into other languages, step by step.

Usage:
    OPENAI_API_KEY=... slam annotate --seed seed.jsonl --languages zh ja th --model gpt-4o --output annotations.jsonl
    slam annotate --seed seed.jsonl --languages zh --model Qwen/Qwen2.5-7B --base_url http://localhost:8000/v1 \\
        --output annotations.jsonl

The seed file has one English example per line (`id`, `question`, `answer`, and `steps` or `cot`). The key is read
from an environment variable (`OPENAI_API_KEY`, or the one `--api_key_env` names), never from a flag, which would
show in process listings. Interrupt and rerun the same command to resume: finished requests are cached next to the
output and never repeated.
"""

from __future__ import annotations

import argparse
import os
import re

from slam_trainer.cli.errors import CommandError
from slam_trainer.l2.endpoint import DEFAULT_TIMEOUT
from slam_trainer.l2.segmentation import MODES as SEGMENTATION_MODES


DEFAULT_KEY_VARIABLE = "OPENAI_API_KEY"


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
        help="OpenAI-compatible base URL (default: $OPENAI_BASE_URL, else https://api.openai.com/v1). Plain http:// "
        "only to a loopback host unless --allow_insecure_http.",
    )
    parser.add_argument(
        "--api_key_env",
        default=DEFAULT_KEY_VARIABLE,
        help="Environment variable holding the bearer key (default: OPENAI_API_KEY; unset means no key).",
    )
    parser.add_argument("--api_key", default=None, help=argparse.SUPPRESS)  # refused with a pointer: see `main`
    parser.add_argument(
        "--allow_insecure_http",
        action="store_true",
        help="Allow plain http:// to a host that is not loopback (key and data cross the network unencrypted).",
    )
    parser.add_argument(
        "--proxy",
        default=None,
        help="http://host:port proxy for the requests. Proxy environment variables (https_proxy, ...) are ignored "
        '(ours: they would reroute the key unasked); pass one here, e.g. --proxy "$https_proxy". An http:// base '
        "URL only through a loopback proxy (it would read the key in clear).",
    )
    parser.add_argument("--output", required=True, help="JSON-lines file for the rows (seed + annotations).")
    parser.add_argument("--cache", default=None, help="Request cache (default: OUTPUT.cache.jsonl).")
    parser.add_argument("--concurrency", type=int, default=8, help="Requests in flight at once.")
    parser.add_argument("--max_retries", type=int, default=6, help="Retries on 429, 5xx, connection errors, timeouts.")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"Seconds to wait for one answer before retrying it (ours: {DEFAULT_TIMEOUT:g}).",
    )
    parser.add_argument("--temperature", type=float, default=0.0, help="Sampling temperature, 0 to 2.")
    parser.add_argument(
        "--segmentation",
        default="auto",
        choices=SEGMENTATION_MODES,
        help="How a seed `cot` is cut into steps.",
    )
    return parser


def _write_jsonl(path, rows) -> None:
    """Write `rows` to `path` whole or not at all."""
    import json

    from slam_trainer.resume import write_atomic

    write_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def _check_paths(seed, output, cache) -> None:
    """Refuse outputs that would overwrite the seed or each other, before anything is sent."""
    for flag, path in (("--output", output), ("--cache", cache)):
        if path.is_dir():
            raise CommandError(f"`{flag}` {path} is a directory; give a file path.")
        if path.resolve() == seed.resolve():
            raise CommandError(f"`{flag}` {path} is the seed file itself, which it would overwrite.")
    if output.resolve() == cache.resolve():
        raise CommandError(f"`--cache` and `--output` are the same file ({output}).")


def _preflight(endpoint, key_variable: str) -> None:
    """Before the first row: a key for a remote endpoint, and a host name that resolves, so that a missing key or a
    mistyped or unreachable address is one message instead of retries on every row (a loopback host needs neither)."""
    import socket
    import urllib.parse

    from slam_trainer.l2.endpoint import is_loopback

    host = urllib.parse.urlsplit(endpoint.base_url).hostname
    if is_loopback(host):
        return
    if endpoint.api_key is None:
        raise CommandError(
            f"no API key for {host}: set the environment variable {key_variable} (or name another with "
            "`--api_key_env`); a server that needs no key accepts any value."
        )
    try:
        socket.getaddrinfo(host, None)
    except OSError as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise CommandError(
            f"`--base_url`: the host {host} cannot be found ({reason}); check the address and the network. "
            "Nothing was sent."
        ) from None


def _read_key(variable: str) -> str | None:
    """The key in the environment variable `variable` (None when the default one is unset); a value that is not a
    variable name (a key typed in its place, say) is refused without being repeated."""
    from slam_trainer.errors import ConfigError
    from slam_trainer.redaction import looks_like_key

    if looks_like_key(variable) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", variable):
        shown = "" if looks_like_key(variable) or len(variable) > 64 else f" {variable!r}"
        raise ConfigError(
            f"`--api_key_env`{shown} is not an environment variable's name: it takes the NAME of the variable that "
            f"holds the key (such as {DEFAULT_KEY_VARIABLE}), never the key itself (not shown here)."
        )
    api_key = os.environ.get(variable) or None
    if api_key is None and variable != DEFAULT_KEY_VARIABLE:
        raise ConfigError(f"`--api_key_env` {variable}: that environment variable is not set or empty.")
    return api_key


def main(args) -> None:
    from pathlib import Path

    from slam_trainer.data.loaders import load_jsonl_rows
    from slam_trainer.l2.annotation import Endpoint, annotate
    from slam_trainer.l2.endpoint import EndpointError

    if args.api_key is not None:
        raise CommandError(
            "`--api_key` is not accepted: a key given as a flag shows in process listings and shell history. Put it "
            f"in the environment variable {DEFAULT_KEY_VARIABLE} (or the one named by `--api_key_env`)."
        )
    api_key = _read_key(args.api_key_env)
    seed = load_jsonl_rows(args.seed, required=("id", "question", "answer"))
    endpoint = Endpoint(
        base_url=args.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1",
        model=args.model,
        api_key=api_key,
        temperature=args.temperature,
        timeout=args.timeout,
        allow_insecure_http=args.allow_insecure_http,
        proxy=args.proxy,
    )
    output = Path(args.output)
    cache = Path(args.cache or f"{args.output}.cache.jsonl")
    failures = Path(f"{args.output}.failures.jsonl")
    _check_paths(Path(args.seed), output, cache)
    _preflight(endpoint, args.api_key_env)
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        report = annotate(
            seed,
            args.languages,
            endpoint,
            cache,
            concurrency=args.concurrency,
            max_retries=args.max_retries,
            segmentation=args.segmentation,
        )
    except EndpointError as error:
        raise CommandError(f"{error} Finished requests are kept in {cache}; rerun once fixed.") from None
    _write_jsonl(output, report.rows)
    print(
        f"{len(report.rows)} rows written to {output} ({report.cached} requests from the cache, "
        f"{report.requested} sent, {len(report.failures)} failed)."
    )
    if not report.failures:
        failures.unlink(missing_ok=True)  # a list left by an earlier run is no longer true
        return
    _write_jsonl(failures, report.failures)
    raise CommandError(
        f"{len(report.failures)} request(s) failed (listed in {failures}); rerun the same command "
        f"to retry them, finished ones are cached in {cache}."
    )
