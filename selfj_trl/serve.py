"""``selfj-trl serve``: a judge behind HTTP, speaking OpenRLHF's remote reward-model protocol.

OpenRLHF (Ray + vLLM + DeepSpeed) takes a reward model as a URL (``--reward.remote_url`` since 0.10.2,
``--remote_rm_url`` before). Its client POSTs ``{"query": [...], "prompts": [...], "labels": [...]}`` (``query`` is the
prompt plus the sampled response, already in the policy's template) and reads ``rewards``, ``scores`` and
``extra_logs`` from the JSON answer. Since 0.10 it sends ONE sample per request, many requests at once, so the server
gathers requests that arrive together into one forward batch (micro-batching); otherwise a GPU judge would run at
batch size 1.

Scores are :meth:`SelfJudge.score_texts` of the query, the same numbers the judge gives in-process. With
``--teacher_view_with_labels`` and a string label, the reference-aware teacher view is scored instead
(:meth:`SelfJudge.format` of the instruction, the response and the label, i.e. what ``SelfJudge.score(...,
references=...)`` scores).

Safe defaults, because hand-rolled reward servers are often reachable by anyone: loopback only unless ``--host`` says
otherwise (and then a token is required unless explicitly waived), an optional bearer token read from an environment
variable (never logged), limits on request bytes, texts per request, characters per text and queued texts, and one-line
JSON errors with 4xx codes for every malformed request. One worker thread owns the model; SIGTERM stops uvicorn, which
stops the worker.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import hmac
import ipaddress
import json
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .errors import SelfJInputError
from .prompts import check_text, has_chat_template

logger = logging.getLogger("selfj_trl.serve")

#: The route OpenRLHF's examples and ``openrlhf.cli.serve_rm`` use; point ``--reward.remote_url`` at it.
REWARD_ROUTE = "/get_reward"


# ----------------------------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class ServeConfig:
    """``selfj-trl serve``: serve a judge over HTTP with OpenRLHF's remote reward-model protocol."""

    judge: str = field(metadata={"help": "Judge folder, Hub id or offline alias."})
    host: str = field(
        default="127.0.0.1",
        metadata={"help": "Interface to bind. Loopback by default; a public one needs a token (see token_env)."},
    )
    port: int = field(default=5000, metadata={"help": "TCP port."})
    max_batch_size: int = field(default=64, metadata={"help": "Most texts scored in one forward batch."})
    max_wait_ms: float = field(
        default=10.0,
        metadata={"help": "How long the first queued request waits for others to fill its batch (milliseconds)."},
    )
    max_texts_per_request: int = field(default=1024, metadata={"help": "Most entries in one request's `query`."})
    max_chars_per_text: int = field(default=100_000, metadata={"help": "Most characters in one query text."})
    max_request_bytes: int = field(default=16 * 1024 * 1024, metadata={"help": "Largest accepted request body."})
    max_pending_texts: int = field(
        default=8192, metadata={"help": "Texts queued beyond this answer 503 (OpenRLHF's client retries)."}
    )
    token_env: str = field(
        default="SELFJ_SERVE_TOKEN",
        metadata={"help": "Environment variable holding the bearer token; when it is set, every request needs it."},
    )
    allow_unauthenticated: bool = field(
        default=False, metadata={"help": "Allow a non-loopback --host without a token (not recommended)."}
    )
    teacher_view_with_labels: bool = field(
        default=False,
        metadata={"help": "Score the reference-aware teacher view when a request's label is a non-empty string."},
    )
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1, ... (default: best available)."})
    dtype: str | None = field(default=None, metadata={"help": "Weights dtype, e.g. float32 or bfloat16."})
    max_length: int | None = field(default=None, metadata={"help": "Token cap per text (default: the model's)."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from the Hub."})
    log_level: str = field(default="info", metadata={"help": "uvicorn / server log level."})

    def validate(self) -> ServeConfig:
        """Raise a one-line :class:`SelfJInputError` for settings that cannot work."""
        for name in ("max_batch_size", "max_texts_per_request", "max_chars_per_text", "max_request_bytes",
                     "max_pending_texts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SelfJInputError(f"`{name}` must be a positive integer, got {value!r}.")
        wait = self.max_wait_ms
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not math.isfinite(wait) or wait < 0:
            raise SelfJInputError(f"`max_wait_ms` must be a number >= 0, got {self.max_wait_ms!r}.")
        if self.max_pending_texts < self.max_texts_per_request:
            raise SelfJInputError(
                f"`max_pending_texts` ({self.max_pending_texts}) is below `max_texts_per_request` "
                f"({self.max_texts_per_request}); a full request could never be queued. Raise it."
            )
        if not 0 <= self.port <= 65535:
            raise SelfJInputError(f"`port` must be in 0..65535, got {self.port}.")
        if not self.token_env:
            raise SelfJInputError("`token_env` is empty; name an environment variable (default SELFJ_SERVE_TOKEN).")
        return self


def read_token(config: ServeConfig) -> str | None:
    """The bearer token from ``config.token_env`` (None when unset or empty)."""
    return os.environ.get(config.token_env) or None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ----------------------------------------------------------------------------------------------------------------
# Micro-batching
# ----------------------------------------------------------------------------------------------------------------
class ServerBusy(RuntimeError):
    """The queue is full (503) or the server is shutting down."""


@dataclass
class _Job:
    texts: list[str]
    future: Future
    enqueued: float
    length: int = 0  # longest text in characters: a cheap stand-in for its token count when grouping by length


class MicroBatcher:
    """One thread that owns the model and scores queued requests together.

    A batch closes when it holds ``max_batch_size`` texts or when its oldest request has waited ``max_wait_s``.
    When the worker is busy, requests pile up and the next batch takes them at once without waiting, so under load
    batches fill up by themselves and ``max_wait_s`` only costs latency when traffic is light.

    When more texts are queued than one batch holds, the batch is the oldest request plus the queued requests closest
    to it in length: a batch is as wide as its longest text, so mixing lengths pays for padding (offline scoring
    avoids that by sorting, as :meth:`SelfJudge.score_texts` does). Every batch takes the oldest queued request, so a
    request is scored within as many batches as there were requests queued ahead of it (nothing starves); the price
    is a longer latency tail under heavy load, in exchange for less padding and more throughput.
    """

    def __init__(
        self,
        score_fn: Callable[[list[str]], list[float]],
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_pending_texts: int,
    ) -> None:
        self._score_fn = score_fn
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_pending_texts = max_pending_texts
        self._queue: collections.deque[_Job] = collections.deque()
        self._pending_texts = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.batches = 0  # forward batches run (a request larger than max_batch_size counts once per call)
        self.texts = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def start(self) -> None:
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="selfj-judge-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch in progress, fail what is still queued, and join the worker."""
        with self._cond:
            self._stopping = True
            dropped = list(self._queue)
            self._queue.clear()
            self._pending_texts = 0
            self._cond.notify_all()
        for job in dropped:
            if not job.future.done():
                job.future.set_exception(ServerBusy("the server is shutting down"))
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def submit(self, texts: list[str]) -> Future:
        future: Future = Future()
        with self._cond:
            if self._stopping or self._thread is None:
                raise ServerBusy("the server is not accepting work (shutting down or not started)")
            if self._pending_texts + len(texts) > self.max_pending_texts:
                raise ServerBusy(f"{self._pending_texts} texts are already queued; retry shortly")
            self._queue.append(_Job(texts, future, time.monotonic(), max(map(len, texts), default=0)))
            self._pending_texts += len(texts)
            self._cond.notify_all()
        return future

    def _next_batch(self) -> list[_Job] | None:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            deadline = self._queue[0].enqueued + self.max_wait_s
            while self._pending_texts < self.max_batch_size and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if self._stopping or not self._queue:
                return None
            batch = self._take_batch()
            self._pending_texts -= sum(len(job.texts) for job in batch)
            return batch

    def _take_batch(self) -> list[_Job]:
        """Pop the oldest job and the queued jobs nearest to it in length, up to ``max_batch_size`` texts."""
        oldest = self._queue.popleft()
        batch, size = [oldest], len(oldest.texts)
        if self._pending_texts <= self.max_batch_size:  # everything fits: no choice to make
            while self._queue and size + len(self._queue[0].texts) <= self.max_batch_size:
                job = self._queue.popleft()
                batch.append(job)
                size += len(job.texts)
            return batch
        chosen: set[int] = set()
        for job in sorted(self._queue, key=lambda j: (abs(j.length - oldest.length), j.enqueued)):
            if size + len(job.texts) <= self.max_batch_size:
                batch.append(job)
                chosen.add(id(job))
                size += len(job.texts)
                if size == self.max_batch_size:
                    break
        self._queue = collections.deque(job for job in self._queue if id(job) not in chosen)
        return batch

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            texts = [text for job in batch for text in job.texts]
            try:
                scores = self._score_fn(texts)
                if len(scores) != len(texts):
                    raise RuntimeError(f"the judge returned {len(scores)} scores for {len(texts)} texts")
            except BaseException as err:  # every waiting request must hear about the failure
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(err)
                if not isinstance(err, Exception):
                    raise
                continue
            self.batches += 1
            self.texts += len(texts)
            start = 0
            for job in batch:
                end = start + len(job.texts)
                if not job.future.done():
                    job.future.set_result(scores[start:end])
                start = end


# ----------------------------------------------------------------------------------------------------------------
# Request parsing (every mistake becomes a one-line 4xx)
# ----------------------------------------------------------------------------------------------------------------
class RequestError(Exception):
    """A client mistake: HTTP ``status`` and a one-line message naming the field."""

    def __init__(self, status: int, message: str, field_name: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field_name


@dataclass
class RewardRequest:
    query: list[str]
    prompts: list[str] | None
    labels: list[Any] | None


def _as_list(payload: dict, key: str, n: int | None) -> list | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise RequestError(400, f"`{key}` must be a JSON list, got {type(value).__name__}.", key)
    if n is not None and len(value) != n:
        raise RequestError(400, f"`{key}` has {len(value)} items but `query` has {n}; send one per query.", key)
    return value


def parse_reward_request(body: bytes, config: ServeConfig) -> RewardRequest:
    """Validate an OpenRLHF reward request body; raise :class:`RequestError` with the field at fault."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError(400, f"the body is not valid JSON ({err}); send {{\"query\": [\"...\"]}}.") from None
    if not isinstance(payload, dict):
        raise RequestError(400, f"the body must be a JSON object with a `query` list, got {type(payload).__name__}.")
    if "query" not in payload:
        raise RequestError(400, "`query` is missing; send the full texts (prompt + response) as a list.", "query")
    query = _as_list(payload, "query", None)
    if query is None:
        raise RequestError(400, "`query` is null; send the full texts (prompt + response) as a list.", "query")
    if not query:
        raise RequestError(400, "`query` is an empty list; send at least one text.", "query")
    if len(query) > config.max_texts_per_request:
        raise RequestError(
            413,
            f"`query` has {len(query)} texts, over the limit of {config.max_texts_per_request}; split the request.",
            "query",
        )
    for i, text in enumerate(query):
        _check_request_text(text, f"query[{i}]", config, allow_empty=False)
    prompts = _as_list(payload, "prompts", len(query))
    if prompts is not None:
        for i, text in enumerate(prompts):
            _check_request_text(text, f"prompts[{i}]", config, allow_empty=True)
    labels = _as_list(payload, "labels", len(query))  # any JSON per item: only non-empty strings are references
    return RewardRequest(query=query, prompts=prompts, labels=labels)


def _check_request_text(value: Any, name: str, config: ServeConfig, *, allow_empty: bool) -> None:
    try:
        check_text(value, name, allow_empty=allow_empty)
    except SelfJInputError as err:
        raise RequestError(400, str(err), name.split("[")[0]) from None
    if len(value) > config.max_chars_per_text:
        raise RequestError(
            413, f"`{name}` has {len(value)} characters, over the limit of {config.max_chars_per_text}.",
            name.split("[")[0],
        )


# ----------------------------------------------------------------------------------------------------------------
# Teacher view from an OpenRLHF (query, prompt, label) triple
# ----------------------------------------------------------------------------------------------------------------
_SENTINEL = "\u2063SELFJ_INSTRUCTION\u2063"


class TeacherViewBuilder:
    """Rebuild (instruction, response) from OpenRLHF's templated prompt and query, to format the teacher view.

    ``query`` is ``prompt`` followed by the response (OpenRLHF decodes the prompt and response tokens together), so the
    response is what follows the prompt. When the prompt carries a chat template the judge also uses (or the plain
    ``### Instruction`` prompt), the instruction is recovered from it; otherwise the prompt is taken as the
    instruction. Rows where the query does not start with the prompt fall back to the student view.
    """

    def __init__(self, judge: Any) -> None:
        self.judge = judge
        tokenizer = judge.tokenizer
        self._chat_affixes: tuple[str, str] | None = None
        if has_chat_template(tokenizer):
            try:
                rendered = tokenizer.apply_chat_template(
                    [{"role": "user", "content": _SENTINEL}], tokenize=False, add_generation_prompt=True
                )
                if isinstance(rendered, str) and rendered.count(_SENTINEL) == 1:
                    prefix, suffix = rendered.split(_SENTINEL)
                    self._chat_affixes = (prefix, suffix)
            except Exception:  # noqa: BLE001 - a template that cannot render a lone user turn: no recovery
                self._chat_affixes = None
        # Special tokens the policy may have emitted at the end (eos, end-of-turn); the judge's template adds its own.
        specials = set(getattr(tokenizer, "all_special_tokens", None) or [])
        specials |= {tokenizer.eos_token, tokenizer.pad_token}
        specials.discard(getattr(tokenizer, "unk_token", None))
        self._end_markers = sorted((t for t in specials if isinstance(t, str) and t.strip()), key=len, reverse=True)

    def instruction(self, prompt: str) -> str:
        from .prompts import PLAIN_PROMPT_RE  # the same plain prompt the judge's TRL reward function recognises

        match = PLAIN_PROMPT_RE.match(prompt)
        if match:
            return match.group("instruction")
        if self._chat_affixes is not None:
            prefix, suffix = self._chat_affixes
            if len(prompt) >= len(prefix) + len(suffix) and prompt.startswith(prefix) and prompt.endswith(suffix):
                return prompt[len(prefix) : len(prompt) - len(suffix)]
        return prompt

    def response(self, query: str, prompt: str) -> str | None:
        if not prompt or not query.startswith(prompt):
            return None
        response = query[len(prompt) :].rstrip()
        stripped = True
        while stripped:
            stripped = False
            for marker in self._end_markers:
                if response.endswith(marker):
                    response = response[: -len(marker)].rstrip()
                    stripped = True
        return response

    def text(self, query: str, prompt: str, label: Any) -> str | None:
        """The teacher-view text, or None when this row must be scored on its student view."""
        if not isinstance(label, str) or not label.strip():
            return None
        response = self.response(query, prompt)
        instruction = self.instruction(prompt)
        if response is None or not instruction.strip():
            return None
        return self.judge.format(instruction, response, label)


# ----------------------------------------------------------------------------------------------------------------
# The app
# ----------------------------------------------------------------------------------------------------------------
def _score_scale(judge: Any) -> tuple[float, float]:
    scale = (getattr(judge, "format_config", None) or {}).get("score_scale") or (0.0, 1.0)
    try:
        low, high = float(scale[0]), float(scale[1])
    except (TypeError, ValueError, IndexError):
        return 0.0, 1.0
    return (low, high) if high > low else (0.0, 1.0)


def _unit_scores(rewards: Sequence[float], scale: tuple[float, float]) -> list[float]:
    """OpenRLHF's ``scores`` (dynamic filtering) are in [0, 1]: the judge's score scale mapped there and clipped."""
    low, high = scale
    return [min(1.0, max(0.0, (r - low) / (high - low))) for r in rewards]


def _authorized(header: str | None, token: str) -> bool:
    """Bearer token, or HTTP Basic with the token as password (``http://user:TOKEN@host/get_reward``)."""
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return hmac.compare_digest(value.encode(), token.encode())
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(decoded.partition(":")[2].encode(), token.encode())
    return False


def _error(status: int, message: str, field_name: str | None = None, headers: dict | None = None) -> JSONResponse:
    """``{"error": "<one line>", "field": ...}``; multi-line exception texts are folded and capped."""
    content: dict[str, Any] = {"error": " ".join(message.split())[:500]}
    if field_name:
        content["field"] = field_name
    return JSONResponse(status_code=status, content=content, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise RequestError(413, f"the request body is {declared} bytes, over the limit of {limit}.")
        except ValueError:
            raise RequestError(400, "the Content-Length header is not a number.") from None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the request body is over the limit of {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    judge: Any, config: ServeConfig, *, token: str | None = None, model_name: str | None = None
) -> FastAPI:
    """The FastAPI app serving ``judge`` (anything with ``score_texts``, ``format`` and ``tokenizer``).

    ``token=None`` reads the environment variable named by ``config.token_env``; ``""`` serves without a token.
    The worker thread starts and stops with the app's lifespan (uvicorn's startup / SIGTERM, or
    ``with TestClient(app)``).
    """
    config.validate()
    token = read_token(config) if token is None else (token or None)
    model_name = model_name or config.judge
    batcher = MicroBatcher(
        lambda texts: judge.score_texts(texts, batch_size=config.max_batch_size, show_progress=False),
        max_batch_size=config.max_batch_size,
        max_wait_s=config.max_wait_ms / 1000.0,
        max_pending_texts=config.max_pending_texts,
    )
    teacher = TeacherViewBuilder(judge) if config.teacher_view_with_labels else None
    scale = _score_scale(judge)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        logger.info("judge worker started (max_batch_size=%d, max_wait_ms=%g)", config.max_batch_size,
                    config.max_wait_ms)
        try:
            yield
        finally:
            batcher.stop()
            logger.info("judge worker stopped after %d batches, %d texts", batcher.batches, batcher.texts)

    app = FastAPI(title="selfj-trl judge server", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher = batcher
    app.state.config = config

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    def _check_auth(request: Request):
        if token is None or _authorized(request.headers.get("authorization"), token):
            return None
        return _error(401, f"missing or wrong token; send `Authorization: Bearer <token>` (the value of "
                           f"${config.token_env} on the server).", headers={"WWW-Authenticate": "Bearer"})

    @app.get("/health")
    async def health(request: Request):
        body: dict[str, Any] = {"status": "ok" if batcher.running else "unavailable", "ready": batcher.running}
        if token is None or _authorized(request.headers.get("authorization"), token):
            body.update(model=model_name, max_batch_size=config.max_batch_size, batches=batcher.batches,
                        texts=batcher.texts, teacher_view_with_labels=config.teacher_view_with_labels)
        return JSONResponse(body, status_code=200 if batcher.running else 503)

    @app.post(REWARD_ROUTE)
    async def get_reward(request: Request) -> JSONResponse:
        denied = _check_auth(request)
        if denied is not None:
            return denied
        try:
            parsed = parse_reward_request(await _read_body(request, config.max_request_bytes), config)
        except RequestError as err:
            return _error(err.status, err.message, err.field)
        texts, teacher_flags = list(parsed.query), [0.0] * len(parsed.query)
        if teacher is not None and parsed.prompts is not None and parsed.labels is not None:
            for i, (query, prompt, label) in enumerate(zip(parsed.query, parsed.prompts, parsed.labels)):
                view = teacher.text(query, prompt, label)
                if view is not None:
                    texts[i], teacher_flags[i] = view, 1.0
        try:
            future = batcher.submit(texts)
        except ServerBusy as err:
            return _error(503, str(err), headers={"Retry-After": "1"})
        try:
            rewards = await asyncio.wrap_future(future)
        except ServerBusy as err:
            return _error(503, str(err), headers={"Retry-After": "1"})
        except SelfJInputError as err:
            return _error(400, str(err))
        except Exception as err:  # noqa: BLE001 - the server keeps serving; the client gets one line
            logger.exception("scoring failed")
            return _error(500, f"scoring failed: {type(err).__name__}: {err}")
        rewards = [float(r) for r in rewards]
        if not all(math.isfinite(r) for r in rewards):
            return _error(500, "the judge produced a non-finite score; check the model weights and dtype.")
        return JSONResponse(
            {
                "rewards": rewards,
                "scores": _unit_scores(rewards, scale),
                "extra_logs": {"selfj_teacher_view": teacher_flags},
            }
        )

    return app


# ----------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------
def check_exposure(config: ServeConfig, token: str | None) -> None:
    """Refuse to serve a judge to the network with no authentication unless the user insists."""
    if is_loopback(config.host) or token is not None:
        return
    if not config.allow_unauthenticated:
        raise SelfJInputError(
            f"--host {config.host} exposes the judge beyond this machine without a token; export "
            f"{config.token_env}=<secret> (clients then send it), or pass --allow_unauthenticated true."
        )
    logger.warning("serving on %s WITHOUT authentication (--allow_unauthenticated)", config.host)


def build_server(config: ServeConfig):
    """Load the judge and return a configured (not yet running) ``uvicorn.Server``."""
    import uvicorn

    from .judge import SelfJudge

    config.validate()
    token = read_token(config)
    check_exposure(config, token)
    judge = SelfJudge.from_pretrained(
        config.judge, device=config.device, dtype=config.dtype, trust_remote_code=config.trust_remote_code,
        max_length=config.max_length,
    )
    app = create_app(judge, config, token=token or "")
    if token is not None:
        logger.info("requests must carry the token from $%s", config.token_env)
    uv_config = uvicorn.Config(
        app, host=config.host, port=config.port, log_level=config.log_level.lower(), server_header=False,
        timeout_graceful_shutdown=30,
    )
    return uvicorn.Server(uv_config)


def main(argv: list[str] | None = None) -> int:
    from trl import TrlParser

    parser = TrlParser((ServeConfig,), prog="selfj-trl serve", description=ServeConfig.__doc__)
    (config,) = parser.parse_args_and_config(argv)
    logging.basicConfig(level=config.log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    server = build_server(config)
    print(f"selfj-trl serve: {config.judge} on http://{config.host}:{config.port}{REWARD_ROUTE}", file=sys.stderr)
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
