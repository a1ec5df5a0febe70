"""``selfj-trl serve``: OpenRLHF's remote reward contract, limits, auth, micro-batching and a real uvicorn round trip.

Everything binds 127.0.0.1. Most tests use FastAPI's in-process TestClient; one starts the real CLI in a subprocess
and stops it with SIGTERM.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest


pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from selfj_trl.errors import SelfJInputError  # noqa: E402
from selfj_trl.judge import SelfJudge  # noqa: E402
from selfj_trl.prompts import PLAIN_PROMPT_TEMPLATE  # noqa: E402
from selfj_trl.serve import (  # noqa: E402
    MicroBatcher,
    ServeConfig,
    TeacherViewBuilder,
    create_app,
    unit_scores,
)
from selfj_trl.serve import main as serve_main  # noqa: E402


TOKEN = "s3cret-test-token"


@pytest.fixture(scope="module")
def judge(tiny_judge):
    return SelfJudge.from_pretrained(tiny_judge, device="cpu", dtype="float32")  # exact: the server adds no rounding


def chat_prompt(judge, instruction: str) -> str:
    """The prompt OpenRLHF builds with --data.apply_chat_template (here with the judge's own template)."""
    return judge.tokenizer.apply_chat_template(
        [{"role": "user", "content": instruction}], tokenize=False, add_generation_prompt=True
    )


QUERIES = [
    "<|user|> write a short poem about the sea <|end|> <|assistant|> the sea is blue and deep . <|end|>",
    "<|user|> what is two plus two ? <|end|> <|assistant|> four <|end|>",
    "### Instruction : hello world Response : good hello world",
]


def make_client(judge, token: str = "", **overrides) -> TestClient:
    config = ServeConfig(judge="tiny-judge", **overrides)
    return TestClient(create_app(judge, config, token=token))


class CountingJudge:
    """Wraps a judge and records every forward call (to see micro-batching from the outside)."""

    def __init__(self, judge, fail_times: int = 0, gate: threading.Event | None = None):
        self.inner, self.tokenizer, self.format_config = judge, judge.tokenizer, judge.format_config
        self.calls: list[int] = []
        self.fail_times, self.gate = fail_times, gate
        self.entered = threading.Event()

    def format(self, *args, **kwargs):
        return self.inner.format(*args, **kwargs)

    def score_texts(self, texts, **kwargs):
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(30)
        self.calls.append(len(texts))
        if self.fail_times > 0:
            self.fail_times -= 1
            raise RuntimeError("simulated device error")
        return self.inner.score_texts(texts, **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# Contract
# ----------------------------------------------------------------------------------------------------------------
def test_round_trip_matches_in_process_scores(judge):
    prompts = [q.split("<|assistant|>")[0] + "<|assistant|> " for q in QUERIES]
    with make_client(judge) as client:
        r = client.post("/get_reward", json={"query": QUERIES, "prompts": prompts, "labels": ["a", None, 3]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"rewards", "scores", "extra_logs"}
    assert all(isinstance(v, float) for v in body["rewards"] + body["scores"])
    assert body["rewards"] == pytest.approx(judge.score_texts(QUERIES), abs=1e-5)
    # Scores are the judge's (0, 1) scale clipped to [0, 1], for OpenRLHF's dynamic filtering.
    assert body["scores"] == pytest.approx([min(1.0, max(0.0, r)) for r in body["rewards"]])
    assert body["extra_logs"] == {"selfj_teacher_view": [0.0, 0.0, 0.0]}  # labels ignored unless enabled


def test_query_only_request_from_older_openrlhf_clients(judge):
    with make_client(judge) as client:
        r = client.post("/get_reward", json={"query": QUERIES[:1]})
    assert r.status_code == 200
    assert r.json()["rewards"] == pytest.approx(judge.score_texts(QUERIES[:1]), abs=1e-5)


def test_teacher_view_with_labels_scores_reference_aware_view(judge):
    instruction, response, label = "what is two plus two ?", "the answer is four", "four"
    prompt = chat_prompt(judge, instruction)
    query = prompt + response + " </s>"  # OpenRLHF decodes with skip_special_tokens=False: the eos stays
    plain_prompt = PLAIN_PROMPT_TEMPLATE.format(instruction=instruction)
    payload = {
        "query": [query, query, plain_prompt + response, "unrelated text four"],
        "prompts": [prompt, prompt, plain_prompt, prompt],
        "labels": [label, None, label, label],
    }
    with make_client(judge, teacher_view_with_labels=True) as client:
        body = client.post("/get_reward", json=payload).json()
    teacher = judge.score([instruction], [response], references=[label])[0]
    assert body["extra_logs"]["selfj_teacher_view"] == [1.0, 0.0, 1.0, 0.0]
    assert body["rewards"][0] == pytest.approx(teacher, abs=1e-5)
    assert body["rewards"][2] == pytest.approx(teacher, abs=1e-5)  # plain prompts recover the instruction too
    # No string label, or a query that does not extend its prompt: the student view of the query.
    assert body["rewards"][1] == pytest.approx(judge.score_texts([query])[0], abs=1e-5)
    assert body["rewards"][3] == pytest.approx(judge.score_texts(["unrelated text four"])[0], abs=1e-5)


def test_teacher_view_builder_recovers_instruction(judge):
    builder = TeacherViewBuilder(judge)
    assert builder.instruction(chat_prompt(judge, "hello world")) == "hello world"
    assert builder.instruction(PLAIN_PROMPT_TEMPLATE.format(instruction="one\ntwo")) == "one\ntwo"
    assert builder.instruction("some other template: hello") == "some other template: hello"
    assert builder.response("P: hi A: yes </s>", "P: hi A: ") == "yes"
    assert builder.response("different", "P: hi") is None


def test_unit_scores_map_the_judge_scale_into_0_1():
    assert unit_scores([-1.0, 5.0, 7.5, 12.0], (5.0, 10.0)) == [0.0, 0.0, 0.5, 1.0]


def test_health_reports_model_and_readiness(judge):
    with make_client(judge) as client:
        body = client.get("/health").json()
    assert body["ready"] is True and body["model"] == "tiny-judge"


# ----------------------------------------------------------------------------------------------------------------
# Bad requests: a clear 4xx each, and the server keeps serving
# ----------------------------------------------------------------------------------------------------------------
BAD_REQUESTS = [
    ("malformed json", b'{"query": [', 400, None),
    ("not an object", b'["a"]', 400, None),
    ("missing query", b'{"prompts": ["a"]}', 400, "query"),
    ("query null", b'{"query": null}', 400, "query"),
    ("query not a list", b'{"query": "hello"}', 400, "query"),
    ("empty list", b'{"query": []}', 400, "query"),
    ("non-string text", b'{"query": ["ok", 5]}', 400, "query"),
    ("empty text", b'{"query": ["   "]}', 400, "query"),
    ("prompts wrong type", b'{"query": ["a"], "prompts": "a"}', 400, "prompts"),
    ("prompts item wrong type", b'{"query": ["a"], "prompts": [{"x": 1}]}', 400, "prompts"),
    ("prompts length mismatch", b'{"query": ["a"], "prompts": ["a", "b"]}', 400, "prompts"),
    ("labels length mismatch", b'{"query": ["a", "b"], "labels": ["a"]}', 400, "labels"),
    ("too many texts", json.dumps({"query": ["a b"] * 5}).encode(), 413, "query"),
    ("over-long text", json.dumps({"query": ["x" * 101]}).encode(), 413, "query"),
    ("over-long prompt", json.dumps({"query": ["a"], "prompts": ["x" * 101]}).encode(), 413, "prompts"),
    ("body too large", json.dumps({"query": ["a"], "pad": "x" * 5000}).encode(), 413, None),
    ("not utf-8", b'{"query": ["\xff\xfe"]}', 400, None),
]


@pytest.mark.parametrize("name,body,status,field", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_request_gets_4xx_and_server_keeps_serving(judge, name, body, status, field):
    with make_client(
        judge, max_texts_per_request=4, max_chars_per_text=100, max_request_bytes=4096, max_pending_texts=64
    ) as client:
        r = client.post("/get_reward", content=body, headers={"content-type": "application/json"})
        assert r.status_code == status, r.text
        error = r.json()
        assert isinstance(error["error"], str) and "\n" not in error["error"] and error["error"]
        assert error.get("field") == field
        ok = client.post("/get_reward", json={"query": QUERIES[:1]})
        assert ok.status_code == 200


@pytest.mark.parametrize(
    "name, body",
    [
        ("deep nesting", b"[" * 100_000),
        ("deep nesting inside query", b'{"query": ' + b"[" * 100_000),
        ("huge integer", b'{"query": ["a"], "labels": [' + b"1" * 100_000 + b"]}"),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_body_the_json_parser_chokes_on_is_a_json_400(judge, name, body):
    with make_client(judge) as client:
        r = client.post("/get_reward", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, r.text
        assert r.json()["error"] and "\n" not in r.json()["error"]
        assert client.post("/get_reward", json={"query": QUERIES[:1]}).status_code == 200


def test_query_string_token_never_reaches_the_access_log(tiny_judge, monkeypatch):
    """A client that puts its token in the URL (``?token=``, ``?api_key=``) must not get it written to the log."""
    import logging

    from selfj_trl.serve.app import build_server

    monkeypatch.delenv("SELFJ_SERVE_TOKEN", raising=False)
    server = build_server(ServeConfig(judge=tiny_judge, port=0, device="cpu", log_level="info"))
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    access = logging.getLogger("uvicorn.access")
    keep = Keep()
    access.addHandler(keep)
    secret = "tok-" + "Z9" * 10
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/health?token={secret}", timeout=30).status_code == 200
        r = httpx.post(f"{base}/get_reward?api_key={secret}&x=1", json={"query": QUERIES[:1]}, timeout=60)
        assert r.status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        access.removeHandler(keep)
    assert any("/health" in line for line in lines) and any("/get_reward" in line for line in lines), lines
    assert not any(secret in line for line in lines), lines


def test_wrong_method_and_route_are_json_errors(judge):
    with make_client(judge) as client:
        assert client.get("/get_reward").status_code == 405
        r = client.post("/nope", json={})
        assert r.status_code == 404 and "error" in r.json()


def test_scoring_failure_is_500_and_next_request_succeeds(judge):
    counting = CountingJudge(judge, fail_times=1)
    with make_client(counting) as client:
        r = client.post("/get_reward", json={"query": QUERIES[:1]})
        assert r.status_code == 500 and "simulated device error" in r.json()["error"]
        assert client.post("/get_reward", json={"query": QUERIES[:1]}).status_code == 200


# ----------------------------------------------------------------------------------------------------------------
# Authentication
# ----------------------------------------------------------------------------------------------------------------
def test_token_enforced_when_set(judge, monkeypatch):
    monkeypatch.setenv("MY_JUDGE_TOKEN", TOKEN)
    config = ServeConfig(judge="tiny-judge", token_env="MY_JUDGE_TOKEN")
    with TestClient(create_app(judge, config)) as client:  # token read from the environment variable
        payload = {"query": QUERIES[:1]}
        assert client.post("/get_reward", json=payload).status_code == 401
        wrong = client.post("/get_reward", json=payload, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and TOKEN not in wrong.text
        assert (
            client.post("/get_reward", json=payload, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        )
        # OpenRLHF's clients cannot add headers, but send URL credentials (http://user:TOKEN@host/...) as Basic auth.
        basic = base64.b64encode(f"openrlhf:{TOKEN}".encode()).decode()
        assert client.post("/get_reward", json=payload, headers={"Authorization": f"Basic {basic}"}).status_code == 200
        bad_basic = base64.b64encode(b"openrlhf:nope").decode()
        bad = client.post("/get_reward", json=payload, headers={"Authorization": f"Basic {bad_basic}"})
        assert bad.status_code == 401
        # Health stays open for probes but tells strangers nothing about the model.
        health = client.get("/health").json()
        assert health["ready"] is True and "model" not in health
        assert "model" in client.get("/health", headers={"Authorization": f"Bearer {TOKEN}"}).json()


def test_public_host_without_token_is_refused(tiny_judge, monkeypatch):
    monkeypatch.delenv("SELFJ_SERVE_TOKEN", raising=False)
    with pytest.raises(SelfJInputError, match="without a token"):
        serve_main(["--judge", tiny_judge, "--host", "0.0.0.0"])


def test_recipe_yaml_parses(tmp_path):
    from pathlib import Path

    from trl import TrlParser

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "openrlhf" / "serve.yaml"
    (config,) = TrlParser((ServeConfig,)).parse_args_and_config(["--config", str(recipe), "--judge", "some/judge"])
    assert config.judge == "some/judge" and config.host == "127.0.0.1"
    config.validate()


def test_config_validation():
    with pytest.raises(SelfJInputError, match="max_batch_size"):
        ServeConfig(judge="x", max_batch_size=0).validate()
    with pytest.raises(SelfJInputError, match="max_pending_texts"):
        ServeConfig(judge="x", max_texts_per_request=10, max_pending_texts=5).validate()


# ----------------------------------------------------------------------------------------------------------------
# Micro-batching and back-pressure
# ----------------------------------------------------------------------------------------------------------------
def test_concurrent_requests_share_forward_batches(judge):
    counting = CountingJudge(judge)
    n = 8
    texts = [QUERIES[i % len(QUERIES)] + f" {i}" for i in range(n)]
    with make_client(counting, max_wait_ms=300, max_batch_size=64) as client:
        with ThreadPoolExecutor(n) as pool:
            responses = list(pool.map(lambda t: client.post("/get_reward", json={"query": [t]}), texts))
        batches = client.app.state.batcher.batches
    assert all(r.status_code == 200 for r in responses)
    assert len(counting.calls) < n and batches == len(counting.calls)  # several requests per forward call
    assert max(counting.calls) > 1
    served = [r.json()["rewards"][0] for r in responses]
    assert served == pytest.approx(judge.score_texts(texts), abs=1e-5)  # each request got its own score back


def test_batches_never_exceed_max_batch_size(judge):
    counting = CountingJudge(judge)
    with make_client(counting, max_wait_ms=200, max_batch_size=3) as client:
        with ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(lambda i: client.post("/get_reward", json={"query": QUERIES[:2]}), range(6)))
    assert all(r.status_code == 200 for r in responses)
    assert sum(counting.calls) == 12 and max(counting.calls) <= 3


def test_full_queue_answers_503_then_recovers(judge):
    gate = threading.Event()
    counting = CountingJudge(judge, gate=gate)
    with make_client(counting, max_wait_ms=0, max_texts_per_request=2, max_pending_texts=2) as client:
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(client.post, "/get_reward", json={"query": QUERIES[:1]})
            assert counting.entered.wait(10)  # the worker is busy with the first request
            second = pool.submit(client.post, "/get_reward", json={"query": QUERIES[:2]})
            batcher = client.app.state.batcher
            deadline = time.monotonic() + 10
            while batcher._pending_texts < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            third = client.post("/get_reward", json={"query": QUERIES[:1]})
            assert third.status_code == 503 and third.headers["retry-after"] == "1"
            gate.set()
            assert first.result().status_code == 200 and second.result().status_code == 200
        assert client.post("/get_reward", json={"query": QUERIES[:1]}).status_code == 200


def test_batcher_stop_fails_queued_work_and_joins():
    gate = threading.Event()
    batcher = MicroBatcher(
        lambda texts: gate.wait(5) and [0.0] * len(texts), max_batch_size=1, max_wait_s=0, max_pending_texts=10
    )
    batcher.start()
    running = batcher.submit(["a"])
    time.sleep(0.05)
    queued = batcher.submit(["b"])
    threading.Timer(0.1, gate.set).start()
    batcher.stop(timeout=5)
    assert running.result(timeout=1) == [0.0]
    with pytest.raises(Exception, match="shutting down"):
        queued.result(timeout=1)
    assert not batcher.running


# ----------------------------------------------------------------------------------------------------------------
# A real server: the CLI in a subprocess on a free loopback port, stopped with SIGTERM
# ----------------------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_cli_server_round_trip_and_sigterm(tiny_judge, judge):
    port = _free_port()
    env = {**os.environ, "SELFJ_SERVE_TOKEN": TOKEN, "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable,
        "-m",
        "selfj_trl.cli",
        "serve",
        "--judge",
        tiny_judge,
        "--port",
        str(port),
        "--max_wait_ms",
        "5",
        "--device",
        "cpu",
        "--dtype",
        "float32",  # the exact path, as the in-process judge it is compared with
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.2)
        payload = {"query": QUERIES, "prompts": ["p"] * 3, "labels": ["l"] * 3}
        assert httpx.post(f"{base}/get_reward", json=payload).status_code == 401
        # The way an OpenRLHF URL carries the token: credentials in the URL become Basic auth.
        r = httpx.post(f"http://openrlhf:{TOKEN}@127.0.0.1:{port}/get_reward", json=payload, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["rewards"] == pytest.approx(judge.score_texts(QUERIES), abs=1e-5)
        try:  # OpenRLHF < 0.10 posts with requests, which also turns URL credentials into Basic auth
            import requests
        except ImportError:
            requests = None
        if requests is not None:
            legacy = requests.post(
                f"http://openrlhf:{TOKEN}@127.0.0.1:{port}/get_reward", json={"query": QUERIES[:2]}, timeout=30
            )
            assert legacy.status_code == 200 and len(legacy.json()["rewards"]) == 2
        aiohttp = _maybe_aiohttp()
        if aiohttp is not None:  # OpenRLHF >= 0.10 posts with aiohttp, one sample per request
            assert _aiohttp_post(
                aiohttp,
                f"http://openrlhf:{TOKEN}@127.0.0.1:{port}/get_reward",
                {"query": QUERIES[:1], "prompts": ["p"], "labels": ["l"]},
            )["rewards"] == pytest.approx(judge.score_texts(QUERIES[:1]), abs=1e-5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        # uvicorn shuts down gracefully, then re-raises the signal so the parent sees "terminated by SIGTERM".
        assert proc.returncode in (0, -signal.SIGTERM), err[-2000:]
        assert "judge worker stopped" in err and "Application shutdown complete" in err
        assert TOKEN not in out + err  # the token is never logged
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _maybe_aiohttp():
    try:
        import aiohttp
    except ImportError:
        return None
    return aiohttp


def _aiohttp_post(aiohttp, url: str, payload: dict) -> dict:
    import asyncio

    async def post():
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            async with session.post(url, json=payload) as response:
                response.raise_for_status()
                return await response.json()

    return asyncio.run(post())


def test_busy_batcher_groups_queued_requests_by_length():
    gate, seen = threading.Event(), []

    def score(texts):
        gate.wait(5)
        seen.append(sorted(len(t) for t in texts))
        return [0.0] * len(texts)

    batcher = MicroBatcher(score, max_batch_size=3, max_wait_s=0, max_pending_texts=100)
    batcher.start()
    blocker = batcher.submit(["x"])
    time.sleep(0.05)  # the worker now holds the blocker; the rest queue up behind it
    futures = [batcher.submit(["y" * n]) for n in (10, 1000, 12, 990, 11, 1010)]
    gate.set()
    for future in [blocker, *futures]:
        assert future.result(timeout=5) == [0.0]
    batcher.stop()
    assert seen == [[1], [10, 11, 12], [990, 1000, 1010]]  # oldest first, then its nearest lengths


def stats_judge(judge, scale_by: float = 4.0):
    """The tiny judge as a pairwise judge would be published: no score scale, recorded reward stats."""
    raw = judge.score_texts(QUERIES)
    mean = sum(raw) / len(raw)
    std = (sum((r - mean) ** 2 for r in raw) / (len(raw) - 1)) ** 0.5 / scale_by
    served = copy.copy(judge)
    served.format_config = {
        **judge.format_config,
        "score_scale": None,
        "reward_stats": {"mean": mean, "std": std, "n": 3, "set": "eval"},
    }
    return served, raw, mean, std


def test_pairwise_judge_scores_are_sigmoid_of_standardised_scores_not_clipped(judge):
    served, raw, mean, std = stats_judge(judge)
    with make_client(served) as client:
        body = client.post("/get_reward", json={"query": QUERIES}).json()
    assert body["rewards"] == pytest.approx(raw, abs=1e-6)
    expected = [1 / (1 + math.exp(-(r - mean) / std)) for r in raw]
    assert body["scores"] == pytest.approx(expected, abs=1e-6)
    assert all(0.0 < s < 1.0 for s in body["scores"])
    assert sorted(range(3), key=lambda i: body["scores"][i]) == sorted(range(3), key=lambda i: raw[i])


def test_normalize_returns_standardised_rewards(judge):
    served, raw, mean, std = stats_judge(judge)
    with make_client(served, normalize=True) as client:
        body = client.post("/get_reward", json={"query": QUERIES}).json()
    assert body["rewards"] == pytest.approx([(r - mean) / std for r in raw], abs=1e-5)
    reward = served.as_reward_func(normalize=True)
    prompts, completions = ["say hi"], ["hi"]
    expected = (judge.score_completions(prompts, completions)[0] - mean) / std
    assert reward(prompts, completions) == pytest.approx([expected], abs=1e-5)


def test_normalize_without_reward_stats_is_refused_in_one_line(judge, tiny_judge):
    with pytest.raises(SelfJInputError, match="needs the judge's reward stats") as err:
        make_client(judge, normalize=True)
    assert "\n" not in str(err.value)
    with pytest.raises(SelfJInputError, match="reward stats"):
        judge.as_reward_func(normalize=True)
    with pytest.raises(SelfJInputError, match="needs the judge's reward stats"):
        serve_main(["--judge", tiny_judge, "--normalize", "true", "--device", "cpu"])
