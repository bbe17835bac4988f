"""Annotate multilingual chains of thought from an English seed set with any OpenAI-compatible chat endpoint.

The paper had GPT-4o write the questions and the reasoning in each language; to keep the steps aligned we ask the
model to translate the question and each step, returning exactly as many steps (ours). One request per (example,
language); requests run concurrently up to a bound, are retried with exponential backoff on 429, 5xx and connection
errors, and each finished, validated answer is appended (and flushed) to a JSON-lines cache keyed by a hash of
(model, messages). A rerun of an interrupted job skips what is cached, so nothing is requested twice and nothing
finished is lost; a response with the wrong number of steps is retried, then reported, never kept.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm
from transformers.utils import logging

from slam_trainer.l2.segmentation import split_steps
from slam_trainer.languages import get_language, validate_languages


logger = logging.get_logger(__name__)

RETRY_STATUS = (429, 500, 502, 503, 504)

SYSTEM_PROMPT = (
    "You translate grade-school and competition math problems and their step-by-step solutions. Translate the "
    "question and every step into {language}. Keep numbers, formulas and equations unchanged. Reply with only a "
    'JSON object {{"question": "...", "steps": ["...", ...]}} whose "steps" list has exactly {num_steps} '
    "entries: step i translates input step i."
)


class AnnotationError(Exception):
    """A request that failed for good: its reason goes to the failure report."""


@dataclass
class Endpoint:
    """An OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, SGLang, TGI).

    Parameters:
        base_url (`str`):
            E.g. `https://api.openai.com/v1` or `http://localhost:8000/v1`; `/chat/completions` is appended.
        model (`str`):
            The model name the server expects.
        api_key (`str`, *optional*):
            Sent as a bearer token when given.
        temperature (`float`, *optional*, defaults to `0.0`):
            Sampling temperature of each request.
        timeout (`float`, *optional*, defaults to `120.0`):
            Seconds to wait for one response.
    """

    base_url: str
    model: str
    api_key: str | None = None
    temperature: float = 0.0
    timeout: float = 120.0

    def __post_init__(self):
        if not self.base_url or not self.base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"`base_url` must be an http(s) URL such as http://localhost:8000/v1, got {self.base_url!r}."
            )
        if not self.model:
            raise ValueError("`model` is required: the model name the endpoint serves.")


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


def parse_translation(content: str, num_steps: int) -> tuple[str, list[str]]:
    """The question and steps of a reply; `AnnotationError` when it is not the JSON asked for."""
    start, end = content.find("{"), content.rfind("}")
    try:
        reply = json.loads(content[start : end + 1]) if start >= 0 else None
    except json.JSONDecodeError:
        reply = None
    if not isinstance(reply, dict):
        raise AnnotationError(f"reply is not a JSON object: {content[:120]!r}")
    question, steps = reply.get("question"), reply.get("steps")
    if not isinstance(question, str) or not question.strip():
        raise AnnotationError("reply has no question")
    if not isinstance(steps, list) or len(steps) != num_steps:
        got = len(steps) if isinstance(steps, list) else type(steps).__name__
        raise AnnotationError(f"expected {num_steps} steps, got {got}")
    if not all(isinstance(step, str) and step.strip() for step in steps):
        raise AnnotationError("reply has an empty or non-text step")
    return question.strip(), [step.strip() for step in steps]


class AnnotationCache:
    """Finished requests, one JSON line each, appended and flushed as they finish.

    A line cut short by a kill is skipped on reading (its request is simply made again).
    """

    def __init__(self, path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self.entries: dict[str, dict] = {}
        if self.path.exists():
            for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), start=1):
                try:
                    entry = json.loads(line)
                    self.entries[entry["key"]] = entry
                except (json.JSONDecodeError, KeyError, TypeError):
                    logger.warning(
                        "%s:%d: skipping an unreadable cache line (an interrupted write).", self.path, number
                    )

    def add(self, entry: dict) -> None:
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
            self.entries[entry["key"]] = entry


def chat_completion(
    endpoint: Endpoint, messages: list[dict], *, max_retries: int = 6, backoff: float = 1.0, max_backoff: float = 60.0
) -> str:
    """The assistant content of one request, retrying 429/5xx and connection errors with exponential backoff
    (honouring `Retry-After`, capped at `max_backoff`)."""
    body = json.dumps({"model": endpoint.model, "messages": messages, "temperature": endpoint.temperature}).encode()
    headers = {"Content-Type": "application/json"}
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    url = endpoint.base_url.rstrip("/") + "/chat/completions"
    for attempt in range(max_retries + 1):
        delay = min(max_backoff, backoff * 2**attempt) * (0.5 + random.random() / 2)
        try:
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            with urllib.request.urlopen(request, timeout=endpoint.timeout) as response:
                reply = json.loads(response.read())
            return reply["choices"][0]["message"]["content"]
        except urllib.error.HTTPError as error:
            if error.code not in RETRY_STATUS:
                detail = error.read()[:200].decode(errors="replace")
                raise AnnotationError(f"HTTP {error.code} from {url}: {detail}") from None
            reason = f"HTTP {error.code}"
            retry_after = error.headers.get("Retry-After") if error.headers else None
            if retry_after and retry_after.replace(".", "", 1).isdigit():
                delay = min(max_backoff, float(retry_after))
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as error:
            reason = f"connection error: {getattr(error, 'reason', error)}"
        except (KeyError, IndexError, TypeError, json.JSONDecodeError):
            raise AnnotationError(f"malformed chat-completions response from {url}") from None
        if attempt < max_retries:
            time.sleep(delay)
    raise AnnotationError(f"gave up after {max_retries + 1} attempts ({reason})")


def seed_steps(row: dict, segmentation: str = "auto") -> list[str]:
    """The English steps of a seed row: its `steps`, or its `cot` cut with `split_steps`."""
    if "steps" in row:
        return [str(step) for step in row["steps"]]
    if "cot" in row:
        return split_steps(row["cot"], "en", mode=segmentation)
    raise ValueError(f"Seed row id {row.get('id')!r} has neither `steps` nor `cot`; give one of them.")


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
            English rows with `id`, `question`, `answer` and `steps` (or `cot`).
        languages (`list[str]`):
            Target languages (English, the seed's language, is skipped if listed).
        endpoint (`Endpoint`):
            Where to send the requests.
        cache_path (`str` or `Path`):
            The JSON-lines cache; rerunning with the same one resumes.
        concurrency (`int`, *optional*, defaults to `8`):
            Requests in flight at once.
        max_retries (`int`, *optional*, defaults to `6`):
            Retries of one request on 429, 5xx or connection errors.
        invalid_retries (`int`, *optional*, defaults to `2`):
            Retries of a request whose reply is not valid (e.g. the wrong number of steps).
        backoff, max_backoff (`float`, *optional*, default to `1.0` and `60.0`):
            First and largest wait in seconds between retries.
    """
    languages = [lang for lang in validate_languages(languages) if lang != "en"]
    if concurrency < 1:
        raise ValueError(f"`concurrency` must be at least 1, got {concurrency}.")
    cache = AnnotationCache(cache_path)
    report = AnnotationReport()
    jobs = []
    for row in seed_rows:
        missing = [key for key in ("id", "question", "answer") if key not in row]
        if missing:
            raise ValueError(f"Seed row {row!r:.80} is missing {', '.join(missing)}.")
        steps = seed_steps(row, segmentation)
        report.rows.append(
            {"id": row["id"], "lang": "en", "question": row["question"], "steps": steps, "answer": row["answer"]}
        )
        for lang in languages:
            messages = request_messages(row["question"], steps, lang)
            jobs.append((row, lang, len(steps), messages, request_key(endpoint.model, messages)))
    todo = [job for job in jobs if job[4] not in cache.entries]
    report.cached, report.requested = len(jobs) - len(todo), len(todo)

    def run(job):
        row, lang, num_steps, messages, key = job
        for attempt in range(invalid_retries + 1):
            content = chat_completion(
                endpoint, messages, max_retries=max_retries, backoff=backoff, max_backoff=max_backoff
            )
            try:
                question, steps = parse_translation(content, num_steps)
                break
            except AnnotationError:
                if attempt == invalid_retries:
                    raise
        cache.add(
            {"key": key, "id": row["id"], "lang": lang, "model": endpoint.model, "question": question, "steps": steps}
        )

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = {pool.submit(run, job): job for job in todo}
        for future in tqdm(as_completed(futures), total=len(futures), desc="Annotating", disable=not progress):
            row, lang, *_ = futures[future]
            try:
                future.result()
            except AnnotationError as error:
                report.failures.append({"id": row["id"], "lang": lang, "reason": str(error)})
    for row, lang, _, _, key in jobs:
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
    return report
