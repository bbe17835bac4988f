import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
    """A loopback OpenAI-compatible server that counts requests per (question, language) key.

    `fail_first` answers 429 to the first N requests of each key; `wrong_steps` maps a key to how many of its replies
    drop a step (-1: all of them); `stop_after` stops serving after that many successful replies (a killed server).
    """

    def __init__(self, counts, *, fail_first=0, wrong_steps=None, stop_after=None):
        self.counts, self.fail_first, self.wrong_steps = counts, fail_first, dict(wrong_steps or {})
        self.stop_after, self.lock, self.received = stop_after, threading.Lock(), Counter()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                payload = json.loads(body["messages"][-1]["content"])
                key = (payload["question"], payload["target_language"])
                with fake.lock:
                    fake.received[key] += 1
                    if fake.stop_after is not None and sum(fake.counts.values()) >= fake.stop_after:
                        self.close_connection = True
                        threading.Thread(target=fake.kill, daemon=True).start()
                        return
                    if fake.received[key] <= fake.fail_first:
                        self.send_response(429)
                        self.send_header("Retry-After", "0")
                        self.end_headers()
                        return
                    wrong = fake.wrong_steps.get(key, 0)
                    if wrong:
                        fake.wrong_steps[key] = wrong - 1 if wrong > 0 else wrong
                    else:
                        fake.counts[key] += 1
                steps = [f"[{payload['target_language']}] {s}" for s in payload["steps"]]
                reply = {
                    "question": f"[{payload['target_language']}] {payload['question']}",
                    "steps": steps[:-1] if wrong else steps,
                }
                content = "```json\n" + json.dumps(reply, ensure_ascii=False) + "\n```"
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self):
        return Endpoint(base_url=f"http://127.0.0.1:{self.server.server_address[1]}/v1", model="fake", timeout=5)

    def kill(self):
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
