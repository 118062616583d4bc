"""The HTTP application (FastAPI): ``/v1/generate``, ``/health``, ``/metrics``, and for language models the
OpenAI-compatible routes (:mod:`.openai`). Every request is checked at the edge (size, JSON, schema,
key) and decoded through the batcher (:mod:`.continuous` where the engine joins rows mid-flight, else
:class:`~.batcher.DynamicBatcher`); an error in one request is that
request's 4xx/5xx answer, never the server's end.
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..data.text import decode_tokens
from .continuous import make_batcher
from .metrics import Metrics
from .openai import add_openai_routes
from .requests import RequestError, ServeSettings, decode_texts, read_request
from .schemas import GenerateRequest

log = logging.getLogger("hybridformer.serve")


def error_response(status: int, message: str) -> JSONResponse:
    kind = {401: "authentication_error", 404: "not_found_error", 413: "request_too_large"}.get(
        status, "invalid_request_error" if status < 500 else "server_error")
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


def create_app(decoder, settings: ServeSettings) -> FastAPI:
    """A FastAPI app serving ``decoder`` (from :func:`~hybridformer.engines.load_engine`) under ``settings``."""
    metrics = Metrics()
    batcher = make_batcher(decoder, metrics, batching=settings.batching, max_batch_tokens=settings.max_batch_tokens,
                           max_rows=settings.max_batch_rows, max_wait_ms=settings.max_wait_ms)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.close()  # after uvicorn has let in-flight requests finish

    app = FastAPI(title="hybridformer", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.decoder, app.state.settings, app.state.metrics, app.state.batcher = decoder, settings, metrics, batcher

    @app.middleware("http")
    async def guard(request: Request, call_next) -> Response:
        start, route = time.monotonic(), request.url.path
        request.state.id, request.state.tokens, request.state.prompt = request_id(request), None, None
        metrics.in_flight += 1
        try:
            if route != "/health" and settings.api_key is not None and not _authorized(request, settings.api_key):
                response = error_response(401, "missing or wrong API key: send 'Authorization: Bearer KEY'")
            else:
                response = await call_next(request)
        except RequestError as exc:
            response = error_response(exc.status, exc.message)
        except Exception as exc:  # noqa: BLE001 - one request's failure is its own 500, never the server's end
            log.exception("request %s to %s failed", request.state.id, route)
            response = error_response(500, f"internal error ({type(exc).__name__}); the server is still running")
        response.headers["x-request-id"] = request.state.id

        def done() -> None:  # once the last byte is sent: a streamed answer's latency and tokens are known then
            metrics.in_flight -= 1
            seconds = time.monotonic() - start
            metrics.request(route if route in ROUTES else "other", response.status_code, seconds)
            access_line(request, response.status_code, seconds, settings.log_prompts)

        body = getattr(response, "body_iterator", None)
        if body is None:
            done()
            return response

        async def sent():
            try:
                async for chunk in body:
                    yield chunk
            finally:
                done()

        response.body_iterator = sent()
        return response

    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError) -> JSONResponse:
        return error_response(exc.status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            routes = ", ".join(r for r in ROUTES if any(getattr(x, "path", None) == r for x in app.routes))
            return error_response(404, f"no route {request.url.path} for this {decoder.config.arch} model; "
                                       f"routes: {routes}")
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request to %s failed", request.url.path)
        return error_response(500, f"internal error ({type(exc).__name__}); the server is still running")

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "engine": settings.engine, "arch": decoder.config.arch}

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.post("/v1/generate")
    async def generate(request: Request) -> dict:
        body = await read_request(request, GenerateRequest, settings)
        request.state.prompt = body.inputs
        outputs = await decode_texts(app, body.inputs, body.options())
        request.state.tokens = sum(map(len, outputs))
        return {"outputs": [decode_tokens(decoder.tokenizer, ids) for ids in outputs]}

    if not decoder.config.is_seq2seq:
        add_openai_routes(app)
    return app


def request_id(request: Request) -> str:
    """The client's ``X-Request-Id`` when it is a short plain token (safe to log), else a fresh one."""
    given = request.headers.get("x-request-id", "")
    return given if 0 < len(given) <= 64 and given.isascii() and all(c.isalnum() or c in "-_.:" for c in given) \
        else uuid.uuid4().hex


def access_line(request: Request, status: int, seconds: float, log_prompts: bool) -> None:
    """One log line per request: client, method, route, status, latency, output tokens, request id (and the prompt
    only with ``--log-prompts``: prompts are the users' data)."""
    client = f"{request.client.host}:{request.client.port}" if request.client else "-"
    tokens = request.state.tokens
    line = (f"{client} {request.method} {request.url.path} {status} {seconds * 1000:.1f}ms "
            f"tokens={'-' if tokens is None else tokens} id={request.state.id}")
    if log_prompts and request.state.prompt is not None:
        line += f" prompt={request.state.prompt!r:.500}"
    log.info(line)


ROUTES = ("/health", "/metrics", "/v1/generate", "/v1/models", "/v1/completions", "/v1/chat/completions")


def _authorized(request: Request, key: str) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    # compare_digest takes the same time whether the first or the last byte differs
    return hmac.compare_digest(token.strip().encode(), key.encode()) and scheme.lower() == "bearer"
