"""Annotate multilingual chains of thought from an English seed set with any OpenAI-compatible chat endpoint.

The paper had GPT-4o write the questions and the reasoning in each language; to keep the steps aligned we ask the
model to translate the question and each step, returning exactly as many steps (ours). One request per distinct
(example, language): seed rows are checked before anything is sent, duplicates are sent once. Requests run
concurrently up to a bound and are retried as `slam_trainer.l2.endpoint` says (which also keeps the key secret); a
401/403/404 or a redirect stops the whole run at the first one. Each finished, validated answer is appended (and
flushed) to a JSON-lines cache keyed by a hash of (model, messages). A rerun of an interrupted job skips what is
cached, so nothing is paid twice and nothing finished is lost; a response with the wrong number of steps (or no
content) is retried, then reported, never kept.
"""

from __future__ import annotations

import hashlib
import json
import threading
from concurrent.futures import CancelledError, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm
from transformers.utils import logging

from slam_trainer.errors import ConfigError, DataError
from slam_trainer.l2.endpoint import Endpoint, EndpointError, FatalEndpointError, chat_completion
from slam_trainer.l2.segmentation import MODES as SEGMENTATION_MODES
from slam_trainer.l2.segmentation import split_steps
from slam_trainer.languages import get_language, validate_languages
from slam_trainer.redaction import redact


__all__ = ["AnnotationCache", "AnnotationReport", "Endpoint", "InvalidReplyError", "annotate", "seed_steps"]

logger = logging.get_logger(__name__)

SYSTEM_PROMPT = (
    "You translate grade-school and competition math problems and their step-by-step solutions. Translate the "
    "question and every step into {language}. Keep numbers, formulas and equations unchanged. Reply with only a "
    'JSON object {{"question": "...", "steps": ["...", ...]}} whose "steps" list has exactly {num_steps} '
    "entries: step i translates input step i."
)


class InvalidReplyError(EndpointError):
    """A reply that is not the JSON asked for (or has no content): retried, then reported, never kept."""


@dataclass
class AnnotationReport:
    """Rows (the seed's and the annotated ones), failures (`id`, `lang`, `reason`) and request counts."""

    rows: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    cached: int = 0
    requested: int = 0


def request_messages(question: str, steps: list[str], lang: str) -> list[dict]:
    """The chat messages asking for `question` and `steps` in `lang`."""
    system = SYSTEM_PROMPT.format(language=get_language(lang).name, num_steps=len(steps))
    user = json.dumps({"target_language": lang, "question": question, "steps": steps}, ensure_ascii=False)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def request_key(model: str, messages: list[dict]) -> str:
    """The cache key of a request: a hash of the model and the exact messages."""
    payload = json.dumps([model, messages], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def parse_translation(content, num_steps: int, secret: str | None = None) -> tuple[str, list[str]]:
    """The question and steps of a reply; `InvalidReplyError` when it is not the JSON asked for (its message quotes
    the reply redacted: without `secret` or anything shaped like a key)."""
    if not isinstance(content, str):
        raise InvalidReplyError(f"reply has no text content (content is {redact(repr(content), secret)[:120]})")
    start, end = content.find("{"), content.rfind("}")
    try:
        reply = json.loads(content[start : end + 1]) if start >= 0 else None
    except json.JSONDecodeError:
        reply = None
    if not isinstance(reply, dict):
        raise InvalidReplyError(f"reply is not a JSON object: {redact(content, secret)[:120]!r}")  # redact, then cut
    question, steps = reply.get("question"), reply.get("steps")
    if not isinstance(question, str) or not question.strip():
        raise InvalidReplyError("reply has no question")
    if not isinstance(steps, list) or len(steps) != num_steps:
        got = len(steps) if isinstance(steps, list) else type(steps).__name__
        raise InvalidReplyError(f"expected {num_steps} steps, got {got}")
    if not all(isinstance(step, str) and step.strip() for step in steps):
        raise InvalidReplyError("reply has an empty or non-text step")
    return question.strip(), [step.strip() for step in steps]


def _cache_entry(line: bytes) -> dict | None:
    """The entry of one cache line, or None when the line is not a complete, well-formed entry."""
    try:
        entry = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
        return None
    steps = entry.get("steps")
    if not isinstance(entry.get("question"), str) or not isinstance(steps, list):
        return None
    return entry if all(isinstance(step, str) for step in steps) else None


class AnnotationCache:
    """Finished requests, one JSON line each, appended and flushed as they finish.

    A last line cut short by a kill is cut off the file when it is opened (its request is simply made again): left
    in place, the next entry would be appended to it and be unreadable too. Other unreadable lines are skipped.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self.entries: dict[str, dict] = {}
        if self.path.exists():
            self._read()

    def _read(self) -> None:
        data = self.path.read_bytes()
        complete = data.rfind(b"\n") + 1  # everything up to the last newline was written whole
        lines, tail = data[:complete].split(b"\n")[:-1], data[complete:]
        if tail and _cache_entry(tail) is not None:  # whole but for its newline
            with self.path.open("ab") as handle:
                handle.write(b"\n")
            lines.append(tail)
        elif tail:
            with self.path.open("r+b") as handle:
                handle.truncate(complete)
            logger.warning(
                "%s: removed a last line cut short by an interrupted write; its request will be made again.", self.path
            )
        for number, line in enumerate(lines, start=1):
            entry = _cache_entry(line)
            if entry is not None:
                self.entries[entry["key"]] = entry
            elif line.strip():
                logger.warning("%s:%d: skipping an unreadable cache line.", self.path, number)

    def add(self, entry: dict) -> None:
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
            self.entries[entry["key"]] = entry


def seed_steps(row: dict, segmentation: str = "auto") -> list[str]:
    """The English steps of a seed row: its `steps` (a non-empty list of texts), or its `cot` cut by `split_steps`."""
    where = f"Seed row id {row.get('id')!r}"
    if "steps" in row:
        steps = row["steps"]
        if not isinstance(steps, list):
            raise DataError(
                f"{where}: `steps` must be a list of texts, got {type(steps).__name__} (a string would be sent as "
                "one step per character)."
            )
        if not steps:
            raise DataError(f"{where}: `steps` is empty, so there is nothing to translate; give steps or drop it.")
        bad = [index for index, step in enumerate(steps) if not isinstance(step, str) or not step.strip()]
        if bad:
            raise DataError(f"{where}: `steps` item(s) {bad} are not non-empty texts.")
        return list(steps)
    if "cot" in row:
        if not isinstance(row["cot"], str):
            raise DataError(f"{where}: `cot` must be a text, got {type(row['cot']).__name__}.")
        steps = split_steps(row["cot"], "en", mode=segmentation)
        if not steps:
            raise DataError(f"{where}: `cot` is empty, so there is nothing to translate.")
        return steps
    raise DataError(f"{where} has neither `steps` nor `cot`; give one of them.")


def _seed_examples(seed_rows, segmentation: str) -> list[tuple[dict, list[str]]]:
    """(row, steps) for each distinct seed example, every row checked before anything is sent.

    A row repeated with the same id and content is kept once (with a warning); the same id with other content fails.
    """
    if not isinstance(seed_rows, (list, tuple)):
        raise DataError(f"`seed_rows` must be a list of dicts, got {type(seed_rows).__name__}.")
    if not seed_rows:
        raise DataError("`seed_rows` is empty: there is nothing to annotate.")
    examples, seen, duplicates = [], {}, 0
    for number, row in enumerate(seed_rows, start=1):
        if not isinstance(row, dict):
            raise DataError(f"Seed row {number} must be a dict, got {type(row).__name__}.")
        missing = [key for key in ("id", "question", "answer") if key not in row]
        if missing:
            raise DataError(f"Seed row {number} is missing {', '.join(missing)}.")
        row_id = row["id"]
        if isinstance(row_id, bool) or not isinstance(row_id, (str, int)):
            raise DataError(f"Seed row {number}: `id` must be a string or an integer, got {row_id!r}.")
        if not isinstance(row["question"], str) or not row["question"].strip():
            raise DataError(f"Seed row id {row_id!r}: `question` must be a non-empty text, got {row['question']!r}.")
        if row["answer"] is None:
            raise DataError(f"Seed row id {row_id!r}: `answer` is null.")
        steps = seed_steps(row, segmentation)
        content = (row["question"], steps, row["answer"])
        if row_id in seen:
            if seen[row_id] != content:
                raise DataError(f"Seed id {row_id!r} appears twice with different content; ids must be unique.")
            duplicates += 1
            continue
        seen[row_id] = content
        examples.append((row, steps))
    if duplicates:
        logger.warning("Skipped %d repeated seed row(s) (same id and content): each is annotated once.", duplicates)
    return examples


def _check_at_least(name: str, value, minimum) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= minimum:
        raise ConfigError(f"`{name}` must be a number of at least {minimum}, got {value!r}.")


def _check_options(endpoint, concurrency, max_retries, invalid_retries, backoff, max_backoff, segmentation) -> None:
    if not isinstance(endpoint, Endpoint):
        raise ConfigError(f"`endpoint` must be an `Endpoint`, got {type(endpoint).__name__}.")
    for name, value, minimum in (
        ("concurrency", concurrency, 1),
        ("max_retries", max_retries, 0),
        ("invalid_retries", invalid_retries, 0),
    ):
        _check_at_least(name, value, minimum)
        if not isinstance(value, int):
            raise ConfigError(f"`{name}` must be an integer, got {value!r}.")
    _check_at_least("backoff", backoff, 0)
    _check_at_least("max_backoff", max_backoff, 0)
    if segmentation not in SEGMENTATION_MODES:
        raise ConfigError(f"`segmentation` must be one of {', '.join(SEGMENTATION_MODES)}, got {segmentation!r}.")


def _plan_requests(examples, languages, model, report: AnnotationReport):
    """The English rows (added to `report`), the jobs (row, lang, key) of the output rows, and the distinct
    requests (key -> (id, lang, messages, number of steps)): the same text is sent once."""
    jobs, requests = [], {}
    for row, steps in examples:
        report.rows.append(
            {"id": row["id"], "lang": "en", "question": row["question"], "steps": steps, "answer": row["answer"]}
        )
        for lang in languages:
            messages = request_messages(row["question"], steps, lang)
            key = request_key(model, messages)
            jobs.append((row, lang, key))
            requests.setdefault(key, (row["id"], lang, messages, len(steps)))
    return jobs, requests


def _send_requests(todo: dict, endpoint: Endpoint, cache: AnnotationCache, settings: dict) -> dict[str, str]:
    """Send `todo` concurrently, caching each valid answer as it comes; the failure reason (redacted) per request key.

    Raises the first `FatalEndpointError` once the requests in flight finish; no request is sent after it.
    """
    stop = threading.Event()
    invalid_retries = settings.pop("invalid_retries")
    concurrency, progress = settings.pop("concurrency"), settings.pop("progress")

    def run(key, row_id, lang, messages, num_steps):
        for attempt in range(invalid_retries + 1):
            try:
                content = chat_completion(endpoint, messages, stop=stop, **settings)
            except FatalEndpointError:
                stop.set()  # here, not in the loop below: the next queued request must see it before it is sent
                raise
            try:
                question, steps = parse_translation(content, num_steps, endpoint.api_key)
                break
            except InvalidReplyError:
                if attempt == invalid_retries:
                    raise
        cache.add(
            {"key": key, "id": row_id, "lang": lang, "model": endpoint.model, "question": question, "steps": steps}
        )

    failed, fatal = {}, None
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = {pool.submit(run, key, *request): key for key, request in todo.items()}

        def halt():  # send nothing more; what is finished stays cached
            stop.set()
            for pending in futures:
                pending.cancel()

        try:
            for future in tqdm(as_completed(futures), total=len(futures), desc="Annotating", disable=not progress):
                try:
                    future.result()
                except CancelledError:
                    continue
                except FatalEndpointError as error:
                    if fatal is None:
                        fatal = error
                        halt()
                except EndpointError as error:  # every text from the endpoint is redacted before it is kept
                    failed[futures[future]] = redact(str(error), endpoint.api_key)
        except BaseException:  # e.g. Ctrl-C: without this the queued requests would still be sent
            halt()
            raise
    if fatal is not None:
        raise FatalEndpointError(redact(str(fatal), endpoint.api_key))
    return failed


def _collect_rows(report: AnnotationReport, jobs, cache: AnnotationCache, failed: dict[str, str]) -> None:
    """Add each job's annotated row (from the cache) or its failure to `report`, in seed order."""
    for row, lang, key in jobs:
        entry = cache.entries.get(key)
        if entry is not None:
            report.rows.append(
                {
                    "id": row["id"],
                    "lang": lang,
                    "question": entry["question"],
                    "steps": entry["steps"],
                    "answer": row["answer"],
                }
            )
        elif key in failed:
            report.failures.append({"id": row["id"], "lang": lang, "reason": failed[key]})


def annotate(
    seed_rows: list[dict],
    languages: list[str],
    endpoint: Endpoint,
    cache_path,
    *,
    concurrency: int = 8,
    max_retries: int = 6,
    invalid_retries: int = 2,
    backoff: float = 1.0,
    max_backoff: float = 60.0,
    segmentation: str = "auto",
    progress: bool = True,
) -> AnnotationReport:
    """Translate each seed example into each of `languages`, resumably.

    Parameters:
        seed_rows (`list[dict]`):
            English rows with `id`, `question`, `answer` and `steps` (a list of texts) or `cot` (a text).
        languages (`list[str]`):
            Target languages (English, the seed's language, is skipped if listed; at least one other is needed).
        endpoint (`Endpoint`):
            Where to send the requests.
        cache_path (`str` or `Path`):
            The JSON-lines cache; rerunning with the same one resumes.
        concurrency (`int`, *optional*, defaults to `8`):
            Requests in flight at once.
        max_retries (`int`, *optional*, defaults to `6`):
            Retries of one request on 429, 5xx, connection errors or timeouts.
        invalid_retries (`int`, *optional*, defaults to `2`):
            Retries of a request whose reply is not valid (e.g. the wrong number of steps, or no content).
        backoff, max_backoff (`float`, *optional*, default to `1.0` and `60.0`):
            First and largest wait in seconds between retries.

    Raises:
        `FatalEndpointError`: at the first 401/403/404 or redirect, after the requests in flight finish; no further
        request is sent, and finished ones stay cached.
    """
    _check_options(endpoint, concurrency, max_retries, invalid_retries, backoff, max_backoff, segmentation)
    languages = [lang for lang in validate_languages(languages) if lang != "en"]
    if not languages:
        raise ConfigError("`languages` names no language besides English (the seed's), so there is nothing to do.")
    examples = _seed_examples(seed_rows, segmentation)
    report = AnnotationReport()
    jobs, requests = _plan_requests(examples, languages, endpoint.model, report)
    cache = AnnotationCache(cache_path)
    todo = {key: request for key, request in requests.items() if key not in cache.entries}
    report.cached, report.requested = len(requests) - len(todo), len(todo)
    settings = {"concurrency": concurrency, "max_retries": max_retries, "invalid_retries": invalid_retries}
    settings.update(backoff=backoff, max_backoff=max_backoff, progress=progress)
    failed = _send_requests(todo, endpoint, cache, settings)
    _collect_rows(report, jobs, cache, failed)
    return report
