"""The HTTP side of ``selfj-trl serve``: the FastAPI app, authentication, the uvicorn server and ``main``.

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
import hmac
import ipaddress
import logging
import math
import os
import sys
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import SelfJInputError
from ..judge_views import recorded_reward_stats
from .batching import MicroBatcher, ServerBusy
from .config import ServeConfig
from .protocol import (
    REWARD_ROUTE,
    RequestError,
    TeacherViewBuilder,
    parse_reward_request,
    reward_response,
    score_scale,
    texts_to_score,
)


logger = logging.getLogger("selfj_trl.serve")


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


def is_authorized(header: str | None, token: str) -> bool:
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


def error_response(
    status: int, message: str, field_name: str | None = None, headers: dict | None = None
) -> JSONResponse:
    """``{"error": "<one line>", "field": ...}``; multi-line exception texts are folded and capped."""
    content: dict[str, Any] = {"error": " ".join(message.split())[:500]}
    if field_name:
        content["field"] = field_name
    return JSONResponse(status_code=status, content=content, headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with a 413 :class:`RequestError` as soon as it passes ``limit`` bytes."""
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


def create_app(judge: Any, config: ServeConfig, *, token: str | None = None, model_name: str | None = None) -> FastAPI:
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
    scale = score_scale(judge)
    stats = recorded_reward_stats(getattr(judge, "format_config", None) or {})
    if config.normalize and stats is None:
        raise SelfJInputError(
            f"--normalize true needs the judge's reward stats (config.selfj.reward_stats); {model_name} has none: "
            "retrain it with this selfj-trl, or serve without --normalize."
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        logger.info(
            "judge worker started (max_batch_size=%d, max_wait_ms=%g)", config.max_batch_size, config.max_wait_ms
        )
        try:
            yield
        finally:
            batcher.stop()
            logger.info("judge worker stopped after %d batches, %d texts", batcher.batches, batcher.texts)

    app = FastAPI(title="selfj-trl judge server", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher = batcher
    app.state.config = config

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    def authorized(request: Request) -> bool:
        return token is None or is_authorized(request.headers.get("authorization"), token)

    @app.get("/health")
    async def health(request: Request):
        body: dict[str, Any] = {"status": "ok" if batcher.running else "unavailable", "ready": batcher.running}
        if authorized(request):
            body.update(
                model=model_name,
                max_batch_size=config.max_batch_size,
                batches=batcher.batches,
                texts=batcher.texts,
                teacher_view_with_labels=config.teacher_view_with_labels,
            )
        return JSONResponse(body, status_code=200 if batcher.running else 503)

    @app.post(REWARD_ROUTE)
    async def get_reward(request: Request) -> JSONResponse:
        if not authorized(request):
            return error_response(
                401,
                f"missing or wrong token; send `Authorization: Bearer <token>` (the value of "
                f"${config.token_env} on the server).",
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            parsed = parse_reward_request(await read_body(request, config.max_request_bytes), config)
        except RequestError as err:
            return error_response(err.status, err.message, err.field)
        texts, teacher_flags = texts_to_score(parsed, teacher)
        try:
            future = batcher.submit(texts)
        except ServerBusy as err:
            return error_response(503, str(err), headers={"Retry-After": "1"})
        try:
            rewards = await asyncio.wrap_future(future)
        except ServerBusy as err:
            return error_response(503, str(err), headers={"Retry-After": "1"})
        except SelfJInputError as err:
            return error_response(400, str(err))
        except Exception as err:  # noqa: BLE001 - the server keeps serving; the client gets one line
            logger.exception("scoring failed")
            return error_response(500, f"scoring failed: {type(err).__name__}: {err}")
        rewards = [float(r) for r in rewards]
        if not all(math.isfinite(r) for r in rewards):
            return error_response(500, "the judge produced a non-finite score; check the model weights and dtype.")
        return JSONResponse(reward_response(rewards, scale, teacher_flags, stats, config.normalize))

    return app


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


class RedactQueryString(logging.Filter):
    """Cut the query string out of uvicorn's access-log lines: a token a client puts in the URL (``?token=...``,
    ``?api_key=...``) must never reach a log file. The path and the status are kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                f"{a.partition('?')[0]}?[query removed]" if isinstance(a, str) and "?" in a else a for a in record.args
            )
        return True


def redact_access_log() -> None:
    """Install :class:`RedactQueryString` on uvicorn's access logger (once)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactQueryString) for f in access.filters):
        access.addFilter(RedactQueryString())


def build_server(config: ServeConfig):
    """Load the judge and return a configured (not yet running) ``uvicorn.Server``."""
    import uvicorn

    from ..judge import SelfJudge

    config.validate()
    token = read_token(config)
    check_exposure(config, token)
    judge = SelfJudge.from_pretrained(
        config.judge,
        device=config.device,
        dtype=config.dtype,
        trust_remote_code=config.trust_remote_code,
        max_length=config.max_length,
    )
    app = create_app(judge, config, token=token or "")
    if token is not None:
        logger.info("requests must carry the token from $%s", config.token_env)
    uv_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level=config.log_level.lower(),
        server_header=False,
        timeout_graceful_shutdown=30,
    )
    redact_access_log()  # after uvicorn.Config, which (re)configures its loggers
    return uvicorn.Server(uv_config)


def main(argv: list[str] | None = None) -> int:
    """``selfj-trl serve``: serve a judge over HTTP (flags or ``--config recipes/openrlhf/serve.yaml``)."""
    from ..flags import parse

    (config,) = parse((ServeConfig,), argv, prog="selfj-trl serve", description=ServeConfig.__doc__)
    logging.basicConfig(level=config.log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    server = build_server(config)
    print(f"selfj-trl serve: {config.judge} on http://{config.host}:{config.port}{REWARD_ROUTE}", file=sys.stderr)  # noqa: T201
    server.run()
    return 0
