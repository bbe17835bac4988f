import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from slam_trainer.l2.annotation import AnnotationCache, Endpoint, annotate
from slam_trainer.l2.parallel import build_parallel_dataset


SEED = [
    {
        "id": f"q{i}",
        "question": f"What is {i} + {i}?",
        "answer": str(2 * i),
        "steps": [f"Take {i}.", f"Add {i} to get {2 * i}.", f"The answer is {2 * i}."],
    }
    for i in range(6)
]
LANGS = ["zh", "ja", "th"]


class FakeEndpoint:
    """A loopback OpenAI-compatible server that counts requests per (question, language) key; it stops itself.

    `fail_first` answers `fail_status` (429 by default; a tuple is cycled through, e.g. a 429/500 storm; with
    `Retry-After: 0` and body `error_body`) to the first N requests of each key; `wrong_steps` / `null_content` map a
    key to how many of its replies drop a step / have `content: null` (-1: all of them); `stop_after` stops serving
    after that many successful replies (a killed server); `answer` (status, headers, body) replaces every reply (401s,
    redirects); `silent` never answers; `on_request(fake, key)` returning True drops a request unanswered. `counts`
    holds the successful (paid) replies per key, `authorizations` every `Authorization` header received. After
    `max_requests` requests the server shuts down, so a runaway client cannot loop.
    """

    def __init__(
        self,
        counts,
        *,
        fail_first=0,
        fail_status=429,
        error_body=b"",
        wrong_steps=None,
        null_content=None,
        stop_after=None,
        answer=None,
        silent=False,
        on_request=None,
        max_requests=400,
    ):
        self.counts, self.fail_first, self.fail_status, self.error_body = counts, fail_first, fail_status, error_body
        self.wrong_steps, self.null_content = dict(wrong_steps or {}), dict(null_content or {})
        self.stop_after, self.answer, self.silent, self.on_request = stop_after, answer, silent, on_request
        self.max_requests, self.lock, self.received, self.authorizations = (
            max_requests,
            threading.Lock(),
            Counter(),
            [],
        )
        self.stopped = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, headers=(), body=b""):
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                payload = json.loads(body["messages"][-1]["content"])
                key = (payload["question"], payload["target_language"])
                with fake.lock:
                    fake.received[key] += 1
                    fake.authorizations.append(self.headers.get("Authorization"))
                    runaway = sum(fake.received.values()) > fake.max_requests
                    if runaway or (fake.stop_after is not None and sum(fake.counts.values()) >= fake.stop_after):
                        self.close_connection = True
                        threading.Thread(target=fake.kill, daemon=True).start()
                        return
                    if fake.on_request is not None and fake.on_request(fake, key):
                        self.close_connection = True  # dropped unanswered
                        return
                    if fake.silent:
                        answer = None
                    elif fake.answer is not None:
                        answer = fake.answer
                    elif fake.received[key] <= fake.fail_first:
                        statuses = fake.fail_status if isinstance(fake.fail_status, tuple) else (fake.fail_status,)
                        status = statuses[(fake.received[key] - 1) % len(statuses)]
                        answer = (status, [("Retry-After", "0")], fake.error_body)
                    else:
                        answer = ()
                    wrong, null = fake.wrong_steps.get(key, 0), fake.null_content.get(key, 0)
                    if not answer:
                        if wrong:
                            fake.wrong_steps[key] = wrong - 1 if wrong > 0 else wrong
                        elif null:
                            fake.null_content[key] = null - 1 if null > 0 else null
                        else:
                            fake.counts[key] += 1
                if answer is None:
                    fake.stopped.wait(30)  # never answers; the client's timeout must end the wait
                    return
                if answer:
                    self.reply(*answer)
                    return
                steps = [f"[{payload['target_language']}] {s}" for s in payload["steps"]]
                reply = {
                    "question": f"[{payload['target_language']}] {payload['question']}",
                    "steps": steps[:-1] if wrong else steps,
                }
                content = (
                    None if (null and not wrong) else "```json\n" + json.dumps(reply, ensure_ascii=False) + "\n```"
                )
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
                self.reply(200, [("Content-Type", "application/json")], data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @property
    def endpoint(self):
        return Endpoint(base_url=self.base_url, model="fake", timeout=5)

    def kill(self):
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()  # refuse new connections at once, as a dead server does

    close = kill


FAST = {"backoff": 0.001, "max_backoff": 0.01, "progress": False}


def _keys(rows):
    return Counter((row["id"], row["lang"]) for row in rows)


def test_interrupted_run_resumes_without_repeats_or_losses(tmp_path):
    counts = Counter()
    first = FakeEndpoint(counts, stop_after=7)
    report = annotate(SEED, LANGS, first.endpoint, tmp_path / "cache.jsonl", concurrency=3, max_retries=2, **FAST)
    first.close()
    assert len(report.failures) == len(SEED) * len(LANGS) - 7
    assert all("gave up" in failure["reason"] for failure in report.failures)
    assert len(AnnotationCache(tmp_path / "cache.jsonl").entries) == 7
    second = FakeEndpoint(counts)
    report = annotate(SEED, LANGS, second.endpoint, tmp_path / "cache.jsonl", concurrency=3, **FAST)
    second.close()
    assert report.failures == [] and report.cached == 7 and report.requested == len(SEED) * len(LANGS) - 7
    assert set(counts.values()) == {1} and len(counts) == len(SEED) * len(LANGS)  # each answered exactly once
    assert _keys(report.rows) == Counter({(row["id"], lang): 1 for row in SEED for lang in ["en", *LANGS]})
    # The rows make a valid parallel dataset.
    dataset, build = build_parallel_dataset(report.rows, on_invalid="raise")
    assert len(dataset) == len(SEED) and build.dropped == 0
    assert dataset[0]["steps"]["th"][1].startswith("[th] Add")
    # A third run requests nothing.
    third = FakeEndpoint(counts)
    report = annotate(SEED, LANGS, third.endpoint, tmp_path / "cache.jsonl", **FAST)
    third.close()
    assert report.requested == 0 and sum(third.received.values()) == 0


def test_a_truncated_cache_line_is_redone_not_fatal(tmp_path):
    counts = Counter()
    server = FakeEndpoint(counts)
    annotate(SEED[:2], ["zh"], server.endpoint, tmp_path / "c.jsonl", **FAST)
    lines = (tmp_path / "c.jsonl").read_text(encoding="utf-8").splitlines()
    (tmp_path / "c.jsonl").write_text(lines[0] + "\n" + lines[1][:25], encoding="utf-8")  # killed mid-write
    report = annotate(SEED[:2], ["zh"], server.endpoint, tmp_path / "c.jsonl", **FAST)
    server.close()
    assert report.requested == 1 and report.failures == [] and len(report.rows) == 4


def test_a_429_storm_is_survived(tmp_path):
    counts = Counter()
    server = FakeEndpoint(counts, fail_first=4)
    report = annotate(SEED, LANGS, server.endpoint, tmp_path / "cache.jsonl", concurrency=6, max_retries=5, **FAST)
    server.close()
    assert report.failures == []
    assert set(server.received.values()) == {5} and set(counts.values()) == {1}
    assert len(report.rows) == len(SEED) * (len(LANGS) + 1)


def test_wrong_step_count_is_retried_or_reported_never_kept(tmp_path):
    counts = Counter()
    once = (SEED[0]["question"], "zh")
    always = (SEED[1]["question"], "ja")
    server = FakeEndpoint(counts, wrong_steps={once: 1, always: -1})
    report = annotate(SEED[:2], ["zh", "ja"], server.endpoint, tmp_path / "cache.jsonl", invalid_retries=2, **FAST)
    server.close()
    assert server.received[once] == 2 and server.received[always] == 3
    assert report.failures == [{"id": "q1", "lang": "ja", "reason": "expected 3 steps, got 2"}]
    assert ("q1", "ja") not in _keys(report.rows)
    assert all(len(row["steps"]) == 3 for row in report.rows)
    cached = AnnotationCache(tmp_path / "cache.jsonl").entries.values()
    assert {(e["id"], e["lang"]) for e in cached} == {("q0", "zh"), ("q0", "ja"), ("q1", "zh")}


def test_bad_input_fails_before_any_request(tmp_path):
    with pytest.raises(ValueError, match="`base_url`"):
        Endpoint(base_url="localhost:8000", model="m")
    endpoint = Endpoint(base_url="http://127.0.0.1:9/v1", model="m")
    with pytest.raises(ValueError, match="shipped languages"):
        annotate(SEED, ["zz"], endpoint, tmp_path / "c.jsonl", **FAST)
    with pytest.raises(ValueError, match="neither `steps` nor `cot`"):
        annotate([{"id": 1, "question": "q", "answer": "1"}], ["zh"], endpoint, tmp_path / "c.jsonl", **FAST)


def test_slam_annotate_command_writes_rows_and_fails_loudly_on_failures(tmp_path, capsys):
    from slam_trainer.cli.main import main

    seed = tmp_path / "seed.jsonl"
    seed.write_text("".join(json.dumps(row) + "\n" for row in SEED[:3]), encoding="utf-8")
    counts = Counter()
    server = FakeEndpoint(counts, wrong_steps={(SEED[2]["question"], "th"): -1})
    argv = [
        "annotate",
        "--seed",
        str(seed),
        "--languages",
        "zh",
        "th",
        "--model",
        "fake",
        "--base_url",
        server.endpoint.base_url,
        "--output",
        str(tmp_path / "out.jsonl"),
        "--max_retries",
        "1",
    ]
    assert main(argv) == 2
    assert "1 request(s) failed" in capsys.readouterr().err
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 3 * 3 - 1
    server.wrong_steps.clear()
    assert main(argv) == 0
    server.close()
    assert "1 sent" in capsys.readouterr().out and set(counts.values()) == {1}
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 9


# ---------------------------------------------------------------- secrets: the key goes to its origin and nowhere else

KEY = "sk-test-Zq8xR2vLmN4pK7wY1cB3SECRET"
OTHER_KEY = "sk-proj-Another0123456789Looking"  # shaped like a key, echoed by a server: redacted too


def _seed_file(tmp_path, rows=SEED[:2]):
    seed = tmp_path / "seed.jsonl"
    seed.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return seed


def _annotate_argv(tmp_path, base_url, *extra):
    out = tmp_path / "out" / "annotations.jsonl"
    argv = ["annotate", "--seed", str(_seed_file(tmp_path)), "--languages", "zh", "ja", "--model", "fake"]
    return [*argv, "--base_url", base_url, "--output", str(out), "--max_retries", "2", *extra]


@pytest.fixture
def secret_run(tmp_path, monkeypatch, capfd, caplog):
    """Runs `slam annotate` with the key in the environment; `check(*texts)` asserts the key is in no file under
    `tmp_path`, nowhere in stdout/stderr or the log records, and in none of `texts`."""
    from transformers.utils import logging as hf_logging

    from slam_trainer.cli.main import main

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    hf_logging.enable_propagation()
    caplog.set_level("DEBUG")

    def run(argv):
        status = main(argv)
        out, err = capfd.readouterr()
        return status, out, err

    def check(*texts):
        files = [path for path in tmp_path.rglob("*") if path.is_file()]
        for path in files:
            data = path.read_bytes()
            assert KEY.encode() not in data and OTHER_KEY.encode() not in data, path
        for text in (*texts, caplog.text):
            assert KEY not in text and OTHER_KEY not in text
        return files

    yield run, check
    hf_logging.disable_propagation()


def _auth_echo(status):
    body = json.dumps({"error": {"message": f"Incorrect API key provided: {KEY}. Also seen: {OTHER_KEY}"}}).encode()
    return (status, [("Content-Type", "application/json")], body)


@pytest.mark.parametrize("status", [302, 307])
def test_a_redirect_to_another_port_is_refused_and_never_gets_the_key(status, tmp_path, secret_run):
    run, check = secret_run
    target = FakeEndpoint(Counter())  # another origin: it must receive nothing, least of all the key
    source = FakeEndpoint(Counter(), answer=(status, [("Location", target.base_url + "/chat/completions")], b""))
    code, out, err = run(_annotate_argv(tmp_path, source.base_url, "--concurrency", "1"))
    source.close(), target.close()
    assert code == 2 and f"redirects to {target.base_url}/chat/completions" in err and "not followed" in err
    assert target.authorizations == [] and sum(source.received.values()) == 1  # stopped at the first
    assert source.authorizations == [f"Bearer {KEY}"]  # the key went to its own origin only
    check(out, err)


@pytest.mark.parametrize("status", [401, 403])
def test_an_auth_failure_stops_the_run_at_once_and_its_echo_is_redacted(status, tmp_path, secret_run):
    run, check = secret_run
    server = FakeEndpoint(Counter(), answer=_auth_echo(status))
    code, out, err = run(_annotate_argv(tmp_path, server.base_url, "--concurrency", "1"))
    error = [line for line in err.splitlines() if line.startswith("slam annotate")]  # below the progress bar
    assert code == 2 and len(error) == 1 and f"HTTP {status}" in error[0] and "[redacted]" in error[0]
    assert sum(server.received.values()) == 1  # 4 requests were due: none sent after the first refusal
    code, _, err = run(_annotate_argv(tmp_path, server.base_url, "--concurrency", "4"))
    server.close()
    assert code == 2 and sum(server.received.values()) <= 1 + 4  # at most the requests already in flight
    check(out, err)


def test_error_bodies_echoing_the_key_are_redacted_in_failure_files_and_output(tmp_path, secret_run):
    run, check = secret_run
    server = FakeEndpoint(Counter(), answer=_auth_echo(400))  # a per-request failure, written to the failures file
    code, out, err = run(_annotate_argv(tmp_path, server.base_url))
    server.close()
    failures = tmp_path / "out" / "annotations.jsonl.failures.jsonl"
    assert code == 2 and failures.is_file() and "[redacted]" in failures.read_text(encoding="utf-8")
    check(out, err)


def test_a_429_500_storm_echoing_the_key_is_survived_without_leaking_it(tmp_path, secret_run):
    run, check = secret_run
    body = f"overloaded; retry with Authorization: Bearer {KEY}".encode()
    storm = FakeEndpoint(Counter(), fail_first=2, fail_status=(429, 500), error_body=body)
    code, out, err = run(_annotate_argv(tmp_path, storm.base_url))
    storm.close()
    assert code == 0 and set(storm.received.values()) == {3} and set(storm.counts.values()) == {1}
    files = check(out, err)
    assert {path.name for path in files} >= {"annotations.jsonl", "annotations.jsonl.cache.jsonl"}


def test_the_key_stays_out_of_repr_and_errors():
    from slam_trainer.l2.endpoint import redact

    endpoint = Endpoint(base_url="https://api.example.com/v1", model="m", api_key=KEY)
    assert KEY not in repr(endpoint) and KEY not in str(endpoint)
    with pytest.raises(ValueError) as error:
        Endpoint(base_url=f"https://user:{KEY}@api.example.com/v1", model="m")
    assert KEY not in str(error.value)
    with pytest.raises(ValueError) as error:
        Endpoint(base_url=f"http://example.com/v1?api_key={KEY}", model="m")
    assert "is plain http" in str(error.value) and KEY not in str(error.value)
    for text in (f"key {KEY}", f'{{"api_key": "{KEY}"}}', f"Authorization: Bearer {KEY}", f"token={KEY}&x=1"):
        assert KEY not in redact(text)


def test_plain_http_to_a_remote_host_needs_consent_but_loopback_does_not():
    for url in ("http://127.0.0.1:8000/v1", "http://localhost:8000/v1", "http://[::1]:8000/v1", "https://x.org/v1"):
        Endpoint(base_url=url, model="m")
    with pytest.raises(ValueError, match="allow_insecure_http"):
        Endpoint(base_url="http://10.0.0.5:8000/v1", model="m")
    assert Endpoint(base_url="http://10.0.0.5:8000/v1", model="m", allow_insecure_http=True).api_key is None


# ------------------------------------------------------------------------------- annotation: pay once, lose nothing


def test_duplicate_seed_rows_are_sent_and_paid_once(tmp_path):
    twin = {**SEED[1], "id": "twin-of-q1"}  # another id, the same text: one request serves both
    rows = [SEED[0], SEED[0], SEED[1], twin]
    counts = Counter()
    server = FakeEndpoint(counts)
    report = annotate(rows, ["zh"], server.endpoint, tmp_path / "c.jsonl", **FAST)
    server.close()
    assert sum(server.received.values()) == 2 and report.requested == 2 and set(counts.values()) == {1}
    assert _keys(report.rows) == Counter({(i, lang): 1 for i in ("q0", "q1", "twin-of-q1") for lang in ("en", "zh")})


def test_a_torn_last_cache_line_does_not_swallow_the_next_entry(tmp_path):
    counts = Counter()
    server = FakeEndpoint(counts)
    cache = tmp_path / "c.jsonl"
    annotate(SEED[:3], ["zh"], server.endpoint, cache, **FAST)
    lines = cache.read_text(encoding="utf-8").splitlines()
    cache.write_text(lines[0] + "\n" + lines[1] + "\n" + lines[2][:40], encoding="utf-8")  # killed mid-write
    assert annotate(SEED[:3], ["zh"], server.endpoint, cache, **FAST).requested == 1  # the torn one, again
    third = annotate(SEED[:3], ["zh"], server.endpoint, cache, **FAST)
    server.close()
    assert third.requested == 0 and len(AnnotationCache(cache).entries) == 3  # the re-paid entry was readable
    assert sum(counts.values()) == 4


def test_null_content_is_an_invalid_reply_retried_then_reported(tmp_path):
    counts = Counter()
    once, always = (SEED[0]["question"], "zh"), (SEED[1]["question"], "zh")
    server = FakeEndpoint(counts, null_content={once: 1, always: -1})
    report = annotate(SEED[:2], ["zh"], server.endpoint, tmp_path / "c.jsonl", invalid_retries=1, **FAST)
    server.close()
    assert server.received[once] == 2 and server.received[always] == 2
    assert report.failures == [{"id": "q1", "lang": "zh", "reason": "reply has no text content (content is None)"}]


def test_a_server_that_never_answers_times_out(tmp_path):
    import time

    server = FakeEndpoint(Counter(), silent=True)
    endpoint = Endpoint(base_url=server.base_url, model="fake", timeout=0.3)
    started = time.monotonic()
    report = annotate(SEED[:1], ["zh"], endpoint, tmp_path / "c.jsonl", max_retries=1, **FAST)
    elapsed = time.monotonic() - started
    server.close()
    assert report.failures == [
        {"id": "q0", "lang": "zh", "reason": "gave up after 2 attempts (no answer within 0.3 s)"}
    ]
    assert elapsed < 5 and sum(server.received.values()) == 2


def test_killed_under_a_429_500_storm_resumes_paying_each_request_once(tmp_path):
    """A real `slam annotate` process, killed with SIGKILL mid-run while the server answers 429 and 500; the rerun
    finishes, and the server was paid (answered 200) exactly once per request."""
    import os
    import signal
    import subprocess
    import sys
    import time

    seed = _seed_file(tmp_path, SEED)
    out = tmp_path / "ann.jsonl"
    cache = tmp_path / "ann.jsonl.cache.jsonl"
    argv = [sys.executable, "-m", "slam_trainer.cli", "annotate", "--seed", str(seed), "--languages", *LANGS]
    env = {**os.environ, "OPENAI_API_KEY": KEY, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    client = {}

    def kill_after_five_paid(fake, key):
        if sum(fake.counts.values()) < 5:
            return False
        if "killed" not in client:  # every answer paid so far is in the cache (flushed), then the process dies
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and len(AnnotationCache(cache).entries) < sum(fake.counts.values()):
                time.sleep(0.05)
            client["process"].send_signal(signal.SIGKILL)
            client["killed"] = client["process"].wait(timeout=20)
        return True  # unanswered, so unpaid

    counts = Counter()
    storm = FakeEndpoint(
        counts, fail_first=2, fail_status=(429, 500), error_body=b"busy", on_request=kill_after_five_paid
    )
    command = [*argv, "--model", "fake", "--base_url", storm.base_url, "--output", str(out), "--concurrency", "3"]
    client["process"] = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    client["process"].wait(timeout=240)
    assert client.get("killed") == -signal.SIGKILL, client["process"].stderr.read().decode()[-2000:]
    assert not out.exists() and 5 <= len(AnnotationCache(cache).entries) == sum(counts.values())
    storm.on_request = None
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    storm.close()
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert len(counts) == len(SEED) * len(LANGS) and set(counts.values()) == {1}  # each paid exactly once
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert _keys(rows) == Counter({(row["id"], lang): 1 for row in SEED for lang in ["en", *LANGS]})
    assert KEY not in finished.stdout + finished.stderr and KEY.encode() not in cache.read_bytes()


def test_ctrl_c_stops_sending_and_keeps_what_is_finished(tmp_path):
    """SIGINT (Ctrl-C) to a real `slam annotate`: no request is sent afterwards, the finished ones are cached, and the
    command says it was interrupted (exit status 130), without a traceback."""
    import os
    import signal
    import subprocess
    import sys
    import time

    seed = _seed_file(tmp_path, SEED)
    cache = tmp_path / "ann.jsonl.cache.jsonl"
    client = {}

    def interrupt_after_two_paid(fake, key):
        if sum(fake.counts.values()) == 2 and "sent" not in client:
            client["sent"] = sum(fake.received.values())
            client["process"].send_signal(signal.SIGINT)
        elif "sent" in client:  # a request after the signal: answer slowly, so a loaded machine still runs the handler
            time.sleep(2)
        return False

    counts = Counter()
    server = FakeEndpoint(counts, on_request=interrupt_after_two_paid)
    argv = [sys.executable, "-m", "slam_trainer.cli", "annotate", "--seed", str(seed), "--languages", *LANGS]
    argv += ["--model", "fake", "--base_url", server.base_url, "--output", str(tmp_path / "ann.jsonl")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    # A suite started in the background (`make test &`) ignores SIGINT, and a child inherits that across exec; a
    # handler is reset to the default there instead, so the child takes Ctrl-C as it would at a terminal.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        client["process"] = subprocess.Popen([*argv, "--concurrency", "1"], env=env, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    _, err = client["process"].communicate(timeout=240)
    server.close()
    assert client["process"].returncode == 130 and err.strip().splitlines()[-1] == "slam annotate: interrupted"
    assert "Traceback" not in err and sum(server.received.values()) <= client["sent"] + 1  # at most the one in flight
    assert len(AnnotationCache(cache).entries) == sum(counts.values()) < len(SEED) * len(LANGS)


# ------------------------------------------- secrets, round 3: proxies, echoes in stored texts, URLs, argument errors


class RecordingProxy:
    """A loopback HTTP proxy that records every request it receives (request line and headers) and, when `forward`,
    passes it on to the address in its request line (as a real proxy does), without any proxy of its own."""

    def __init__(self, forward=False):
        import urllib.request

        self.requests = []
        proxy = self
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.requests.append((self.requestline, dict(self.headers)))
                if not forward:
                    self.send_response(502)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                request = urllib.request.Request(self.path, data=body, headers=dict(self.headers), method="POST")
                with direct.open(request, timeout=10) as response:
                    data, status = response.read(), response.status
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_CONNECT = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


def _chat_reply(content):
    body = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
    return (200, [("Content-Type", "application/json")], body)


@pytest.mark.parametrize("forward", [False, True], ids=["environment-proxy-ignored", "explicit-loopback-proxy-used"])
def test_the_key_goes_through_no_proxy_it_was_not_given(forward, tmp_path):
    """A real `slam annotate` process (urllib reads proxy variables when it starts) with every proxy variable set to
    a recording proxy: the proxy gets nothing unless named by `--proxy` (allowed: it is on loopback)."""
    import os
    import subprocess
    import sys

    proxy = RecordingProxy(forward=forward)
    server = FakeEndpoint(Counter())
    env = {key: value for key, value in os.environ.items() if key.lower() != "no_proxy"}
    env.update({name: proxy.url for name in PROXY_VARIABLES}, OPENAI_API_KEY=KEY)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    argv = [sys.executable, "-m", "slam_trainer.cli", *_annotate_argv(tmp_path, server.base_url)]
    finished = subprocess.run(
        [*argv, *(("--proxy", proxy.url) if forward else ())], env=env, capture_output=True, text=True, timeout=240
    )
    server.close(), proxy.close()
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert len(server.authorizations) == 4 and set(server.authorizations) == {f"Bearer {KEY}"}
    if forward:  # asked for explicitly, on loopback: every request went through it
        assert len(proxy.requests) == 4 and all(line.startswith("POST http://127.0.0.1") for line, _ in proxy.requests)
    else:  # only in the environment: never used
        assert proxy.requests == []
    assert KEY not in finished.stdout + finished.stderr


ECHOED = f"I cannot do that with key {KEY} (also {OTHER_KEY}) at https://h/v1?sig=Sig{KEY[-8:]}"
ECHO_CASES = [
    # (id, what the endpoint answers, base URL suffix, fragment of the stored or printed failure)
    ("200-content-not-json", _chat_reply(ECHOED), "", "reply is not a JSON object"),
    ("200-body-not-json", (200, [("Content-Type", "text/plain")], ECHOED.encode()), "", "malformed chat-completions"),
    ("200-content-a-dict-echo", _chat_reply({"echo": ECHOED}), "", "reply has no text content"),
    ("404-query-key", (404, [], b"not found"), f"?key={KEY[-10:]}", "HTTP 404"),
    ("404-query-code", (404, [], b"not found"), f"?code={KEY[-10:]}", "HTTP 404"),
    ("404-query-sig", (404, [], b"not found"), f"?x=1&sig={KEY[-10:]}", "HTTP 404"),
    ("404-query-token", (404, [], b"not found"), f"?token={KEY[-10:]}", "HTTP 404"),
    (
        "400-body-echoes-url",
        (400, [], f"bad request to http://u:{KEY[-10:]}@h/?t={KEY[-9:]}".encode()),
        "",
        "HTTP 400",
    ),
]


@pytest.mark.parametrize("answer, suffix, fragment", [case[1:] for case in ECHO_CASES], ids=[c[0] for c in ECHO_CASES])
def test_what_the_endpoint_echoes_is_redacted_wherever_it_is_stored_or_shown(
    answer, suffix, fragment, tmp_path, secret_run
):
    run, check = secret_run
    server = FakeEndpoint(Counter(), answer=answer)
    code, out, err = run(_annotate_argv(tmp_path, server.base_url + suffix, "--concurrency", "1"))
    server.close()
    failures = tmp_path / "out" / "annotations.jsonl.failures.jsonl"
    shown = err + (failures.read_text(encoding="utf-8") if failures.exists() else "")
    assert code == 2 and fragment in shown, shown
    for piece in (KEY, OTHER_KEY, KEY[-8:], KEY[-9:], KEY[-10:]):  # the whole key, and the parts in URLs
        assert piece not in shown
    check(out, err)


LEAKED = "Zq8xR2vLmN4pK7wY1cB3Qs9T"  # a key-shaped value typed where it does not belong
ARGUMENT_CASES = [
    # (id, extra arguments to a valid `slam annotate`, fragment of the one-line error)
    ("key-as-variable-name", ("--api_key_env", f"sk-{LEAKED}"), "takes the NAME of the variable"),
    ("bare-key-as-variable-name", ("--api_key_env", LEAKED), "takes the NAME of the variable"),
    ("dashed-api-key-flag", ("--api-key", LEAKED.lower()), "unknown option(s) --api-key (did you mean --api_key?)"),
    ("openai-api-key-flag", (f"--openai_api_key={LEAKED.lower()}",), "unknown option(s) --openai_api_key "),
    ("stray-positional-key", (LEAKED,), "unrecognized arguments: [redacted]"),
    ("key-in-an-int-option", ("--concurrency", f"sk-{LEAKED}"), "invalid int value"),
    ("credentials-one-slash", ("--base_url", f"http:/user:{LEAKED}@host/v1"), "carries credentials"),
    ("credentials-no-scheme", ("--base_url", f"user:{LEAKED}@host/v1"), "carries credentials"),
    ("credentials-backslashes", ("--base_url", f"http:\\\\user:{LEAKED}@host\\v1"), "carries credentials"),
    ("credentials-well-formed", ("--base_url", f"http://user:{LEAKED}@127.0.0.1/v1"), "carries credentials"),
    ("query-in-a-bad-url", ("--base_url", f"localhost:8000/v1?key={LEAKED}"), "must be an http(s) URL"),
    ("proxy-credentials", ("--proxy", f"http://user:{LEAKED}@127.0.0.1:9"), "`proxy` carries credentials"),
]


@pytest.mark.parametrize("extra, fragment", [case[1:] for case in ARGUMENT_CASES], ids=[c[0] for c in ARGUMENT_CASES])
def test_argument_errors_never_repeat_a_key(extra, fragment, tmp_path, capsys, monkeypatch):
    from slam_trainer.cli.main import main

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(_annotate_argv(tmp_path, "http://127.0.0.1:9/v1", *extra)) == 2
    err = capsys.readouterr().err
    assert fragment in err and LEAKED not in err and LEAKED.lower() not in err, err
    assert not (tmp_path / "out").exists()  # refused before anything was sent or written


def test_a_key_an_http_header_cannot_carry_is_refused_without_showing_it(tmp_path, capsys, monkeypatch):
    from slam_trainer.cli.main import main

    monkeypatch.setenv("OPENAI_API_KEY", "sk-café" + LEAKED)
    assert main(_annotate_argv(tmp_path, "http://127.0.0.1:9/v1")) == 2
    err = capsys.readouterr().err
    assert "non-ASCII" in err and "malformed" not in err and LEAKED not in err


REDACTION_CASES = [
    # (text, what must not survive, what must survive)
    (f"key {KEY} failed", KEY, "key"),
    (f"https://h.example/v1?key={LEAKED}&x=1", LEAKED, "https://h.example/v1?[redacted]"),
    (f"https://user:{LEAKED}@h.example/v1", LEAKED, "@h.example/v1"),
    (f"http:/user:{LEAKED}@h/v1", LEAKED, "@h/v1"),
    (f"user:{LEAKED}@h/v1", LEAKED, "@h/v1"),
    (f"openai_api_key={LEAKED}", LEAKED, "openai_api_key="),
    (f'{{"access_token": "{LEAKED}"}}', LEAKED, "access_token"),
    (f"Authorization: Basic {LEAKED}", LEAKED, "Authorization: Basic"),
    (f"hf_{LEAKED}", LEAKED, ""),
    ("model hf-internal-testing/tiny-random-LlamaForCausalLM: no such model", "[redacted]", "hf-internal-testing"),
    ("`--output_dir` /tmp/run-2026/baseline holds work done with other settings", "[redacted]", "/tmp/run-2026"),
    ("HTTP 429 from http://127.0.0.1:8000/v1/chat/completions", "[redacted]", "http://127.0.0.1:8000/v1/chat"),
]


@pytest.mark.parametrize("text, gone, kept", REDACTION_CASES, ids=[str(i) for i in range(len(REDACTION_CASES))])
def test_redaction_removes_secrets_and_keeps_the_rest_readable(text, gone, kept):
    from slam_trainer.redaction import redact

    shown = redact(text, KEY)
    assert gone not in shown and kept in shown, shown
