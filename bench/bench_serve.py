"""Load test for ``selfj-trl serve``: served throughput against in-process batched scoring, loopback only.

What it does (bounded in requests and in time):

1. builds a judge folder in a temp dir: by default a one-label sequence-classification head on the offline
   all-MiniLM-L6-v2 encoder (the head is untrained; throughput does not care), or the tiny test judge, or any
   judge folder you pass;
2. scores the benchmark texts in-process with ``SelfJudge.score_texts(texts, batch_size=max_batch_size)``;
3. starts ``selfj-trl serve`` in a subprocess on 127.0.0.1 (with a bearer token) and sends the same texts from
   ``--concurrency`` concurrent clients, ``--texts_per_request`` texts per request (OpenRLHF >= 0.10 sends one,
   and has many in flight: every sample of a rollout batch),
   until ``--requests`` are done or ``--time_cap_s`` runs out;
4. prints requests/s, texts/s, p50/p99 latency, failed requests, the server's mean forward batch, the largest
   difference between served and in-process scores, and served / in-process throughput (target >= 70%).

    python bench/bench_serve.py                       # MiniLM judge, 600 requests of 1 text, 64 clients
    python bench/bench_serve.py --judge tiny --requests 3000 --max_words 80
    python bench/bench_serve.py --concurrency 128 --requests 768
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TARGET_RATIO = 0.70
_WORDS = (
    "the sea is blue and deep write a short poem about answer question model reward judge score response "
    "instruction reference quality helpful correct complete clear explain why how what when where which "
    "two plus four five six seven eight nine ten hello world good bad list steps example data code python"
).split()


def build_minilm_judge(target: Path) -> Path:
    """A one-label BERT classifier on the offline MiniLM encoder, saved the way a published judge is."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from selfj_trl.io import write_manifest
    from selfj_trl.judge_views import judge_format_config
    from selfj_trl.models import resolve_model

    hf_logging.set_verbosity_error()  # "newly initialized classifier weights" is expected here
    source = resolve_model("all-minilm-l6-v2")
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    config = AutoConfig.from_pretrained(target)
    config.selfj = judge_format_config(tokenizer, chat=False)
    config.save_pretrained(target)
    write_manifest(target)  # a judge folder is complete only with its marker
    return target


def build_tiny_judge(target: Path) -> Path:
    from transformers import AutoConfig, AutoTokenizer

    from selfj_trl.io import write_manifest
    from selfj_trl.judge_views import judge_format_config
    from selfj_trl.testing import make_tiny_llama

    make_tiny_llama(target, kind="seqcls", chat=True)
    config = AutoConfig.from_pretrained(target)
    config.selfj = judge_format_config(AutoTokenizer.from_pretrained(target))
    config.save_pretrained(target)
    write_manifest(target)
    return target


def make_texts(n: int, seed: int, min_words: int, max_words: int) -> list[str]:
    """Plain student views (instruction + response) of varied length, as a policy's rollouts would be."""
    from selfj_trl.prompts import PLAIN_PROMPT_TEMPLATE

    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        instruction = " ".join(rng.choices(_WORDS, k=rng.randint(5, 20)))
        response = " ".join(rng.choices(_WORDS, k=rng.randint(min_words, max_words)))
        texts.append(PLAIN_PROMPT_TEMPLATE.format(instruction=instruction) + response)
    return texts


def in_process_throughput(judge_dir: str, texts: list[str], batch_size: int) -> tuple[float, list[float]]:
    """Texts/s of batched in-process scoring (after one warm-up batch), and the scores."""
    from selfj_trl.judge import SelfJudge

    judge = SelfJudge.from_pretrained(judge_dir, device="cpu")
    judge.score_texts(texts[:batch_size], batch_size=batch_size)
    start = time.perf_counter()
    scores = judge.score_texts(texts, batch_size=batch_size)
    return len(texts) / (time.perf_counter() - start), scores


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(judge_dir: str, port: int, token: str, args: argparse.Namespace) -> subprocess.Popen:
    import httpx

    env = {
        **os.environ,
        "SELFJ_SERVE_TOKEN": token,
        "OMP_NUM_THREADS": str(args.torch_threads),
        "MKL_NUM_THREADS": str(args.torch_threads),
    }
    cmd = [
        sys.executable,
        "-m",
        "selfj_trl.cli",
        "serve",
        "--judge",
        judge_dir,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max_batch_size",
        str(args.max_batch_size),
        "--max_wait_ms",
        str(args.max_wait_ms),
        "--device",
        "cpu",
        "--log_level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{proc.stderr.read()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not become ready in 120 s")


async def run_load(url: str, token: str, batches: list[list[str]], concurrency: int, time_cap_s: float) -> dict:
    """Send every batch once from ``concurrency`` workers; stop early at the time cap.

    The client is aiohttp, as in OpenRLHF >= 0.10 (``datasets`` already depends on it). httpx's pool tops out near
    100 requests/s here with 32 connections, which would measure the client rather than the server.
    """
    import aiohttp

    latencies: list[float] = []
    failures: list[str] = []
    rewards: dict[int, list[float]] = {}
    next_index = 0
    deadline = time.perf_counter() + time_cap_s
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:

        async def worker() -> None:
            nonlocal next_index
            while next_index < len(batches) and time.perf_counter() < deadline:
                index = next_index
                next_index += 1
                start = time.perf_counter()
                try:
                    async with session.post(url, json={"query": batches[index]}) as response:
                        if response.status != 200:
                            failures.append(f"HTTP {response.status}: {(await response.text())[:120]}")
                            continue
                        rewards[index] = (await response.json())["rewards"]
                except (aiohttp.ClientError, asyncio.TimeoutError) as err:
                    failures.append(f"{type(err).__name__}: {err}")
                    continue
                latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return {"latencies": latencies, "failures": failures, "rewards": rewards, "wall": wall, "sent": next_index}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--judge", default="minilm", help="minilm, tiny, or a judge folder")
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--texts_per_request", type=int, default=1)
    parser.add_argument("--max_batch_size", type=int, default=32)
    parser.add_argument("--max_wait_ms", type=float, default=10.0)
    parser.add_argument("--min_words", type=int, default=20)
    parser.add_argument("--max_words", type=int, default=60)
    parser.add_argument("--time_cap_s", type=float, default=180.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--torch_threads",
        type=int,
        default=1,
        help="intra-op threads for the judge, in-process and in the server alike (1 leaves a core for the clients "
        "on small machines; oversubscribed OpenMP threads spin and slow everything down)",
    )
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.torch_threads)

    with tempfile.TemporaryDirectory(prefix="selfj-bench-serve-") as tmp:
        if args.judge == "minilm":
            judge_dir = str(build_minilm_judge(Path(tmp) / "judge"))
            judge_name = "all-MiniLM-L6-v2 + 1-label head"
        elif args.judge == "tiny":
            judge_dir = str(build_tiny_judge(Path(tmp) / "judge"))
            judge_name = "tiny 2-layer Llama judge"
        else:
            judge_dir = judge_name = args.judge

        n_texts = args.requests * args.texts_per_request
        texts = make_texts(n_texts, args.seed, args.min_words, args.max_words)
        batches = [texts[i : i + args.texts_per_request] for i in range(0, n_texts, args.texts_per_request)]

        local_tps, local_scores = in_process_throughput(judge_dir, texts, args.max_batch_size)

        token = secrets.token_urlsafe(16)
        port = free_port()
        proc = start_server(judge_dir, port, token, args)
        try:
            url = f"http://127.0.0.1:{port}/get_reward"
            asyncio.run(run_load(url, token, batches[: args.concurrency], args.concurrency, 30))  # warm-up
            import httpx

            before = httpx.get(f"http://127.0.0.1:{port}/health", headers={"Authorization": f"Bearer {token}"}).json()
            result = asyncio.run(run_load(url, token, batches, args.concurrency, args.time_cap_s))
            after = httpx.get(f"http://127.0.0.1:{port}/health", headers={"Authorization": f"Bearer {token}"}).json()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()

    done = len(result["latencies"])
    served_texts = sum(len(batches[i]) for i in result["rewards"])
    served_tps = served_texts / result["wall"]
    forward_batches = after["batches"] - before["batches"]
    mean_batch = (after["texts"] - before["texts"]) / max(forward_batches, 1)
    diffs = [
        abs(r - local_scores[i * args.texts_per_request + j])
        for i, rs in result["rewards"].items()
        for j, r in enumerate(rs)
    ]
    ratio = served_tps / local_tps
    lat_ms = [x * 1000 for x in result["latencies"]]
    print(f"judge: {judge_name}; torch threads: {args.torch_threads} (in-process and server); cpus: {os.cpu_count()}")
    print(
        f"load: {args.requests} requests x {args.texts_per_request} text(s), {args.concurrency} concurrent clients, "
        f"max_batch_size={args.max_batch_size}, max_wait_ms={args.max_wait_ms:g}, {args.min_words}-{args.max_words} "
        f"response words, time cap {args.time_cap_s:g} s"
    )
    print(f"completed requests:    {done} of {args.requests} (sent {result['sent']}) in {result['wall']:.2f} s")
    print(
        f"failed requests:       {len(result['failures'])}"
        + (f"  e.g. {result['failures'][0]}" if result["failures"] else "")
    )
    print(f"requests/s:            {done / result['wall']:.1f}")
    print(
        f"latency p50 / p99:     {statistics.median(lat_ms) if lat_ms else float('nan'):.1f} / "
        f"{percentile(lat_ms, 99):.1f} ms"
    )
    print(f"server forward batches: {forward_batches} (mean {mean_batch:.1f} texts per batch)")
    print(f"served texts/s:        {served_tps:.1f}")
    print(f"in-process texts/s:    {local_tps:.1f}  (score_texts, batch_size={args.max_batch_size})")
    print(
        f"served / in-process:   {ratio:.1%}  (target >= {TARGET_RATIO:.0%}: "
        f"{'met' if ratio >= TARGET_RATIO else 'NOT met'})"
    )
    print(f"max |served - in-process| score: {max(diffs) if diffs else float('nan'):.2e}")
    return 0 if not result["failures"] and done == args.requests else 1


if __name__ == "__main__":
    sys.exit(main())
