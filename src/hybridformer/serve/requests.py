"""The request plumbing every route shares: the server's settings, the body read and checked at the edge
(size, JSON, schema), inputs encoded and held to the limits, and decoding in the batcher. Its own module so that
the app and the OpenAI routes both build on it without importing each other.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass

from fastapi import FastAPI, Request
from pydantic import BaseModel, ValidationError

from ..data.text import encode_source
from ..engines import GenerationOptions
from ..errors import HybridformerError
from .schemas import Unhonoured

log = logging.getLogger("hybridformer.serve")


@dataclass
class ServeSettings:
    """The server's limits and batching; all fixed on the command line."""

    api_key: str | None = None
    max_batch_tokens: int = 4096  # dynamic: input tokens per batch; continuous: tokens the running batch holds
    max_batch_rows: int = 32  # continuous: rows (inputs) in the running batch
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for company
    batching: bool = True  # False: one request at a time (the load test's baseline)
    max_body_bytes: int = 1 << 20
    max_inputs: int = 64  # inputs (or prompts) per request
    max_input_tokens: int = 512  # tokens per input
    max_new_tokens: int = 512  # output tokens per input (the cap on a·len+b and max_tokens)
    engine: str = "torch"
    model_name: str = "hybridformer"
    log_prompts: bool = False  # the access log shows prompt text (off: prompts are the users' data)
    drain_timeout: float = 30.0  # SIGTERM: seconds in-flight requests get to finish
    max_connections: int | None = None  # open connections (None: below the descriptor limit)
    keep_alive_timeout: int = 5  # an idle keep-alive connection is closed after this many seconds
    header_timeout: float = 10.0  # a connection must send its request headers within this
    body_timeout: float = 30.0  # ... and its body within this (408)


class RequestError(Exception):
    """A request the server refuses: ``status`` (401/404/413/422) and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


async def read_request(request: Request, schema: type[BaseModel], settings: ServeSettings):
    """The body as ``schema``: 413 over the size cap, 422 for malformed JSON or a schema violation."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > settings.max_body_bytes:
        raise RequestError(413, f"request body over {settings.max_body_bytes} bytes")
    body = bytearray()
    try:
        async with asyncio.timeout(settings.body_timeout):
            async for chunk in request.stream():
                body += chunk
                if len(body) > settings.max_body_bytes:
                    raise RequestError(413, f"request body over {settings.max_body_bytes} bytes")
    except TimeoutError:
        log.warning("closed a request whose body did not arrive within %g s", settings.body_timeout)
        raise RequestError(408, f"the request body did not arrive within {settings.body_timeout:g} s") from None
    try:
        data = json.loads(body, parse_constant=_no_constant)
        json.dumps(data, ensure_ascii=False).encode()  # a lone surrogate (``"\ud800"``) is no text to encode
    except RecursionError:
        raise RequestError(400, "body is nested too deeply") from None
    except UnicodeEncodeError:
        raise RequestError(400, "body holds a lone UTF-16 surrogate escape (\\ud800-\\udfff): not text") from None
    except ValueError as exc:  # malformed JSON, invalid UTF-8, Infinity/NaN, an integer of > 4300 digits
        raise RequestError(422, f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RequestError(422, "body must be a JSON object")
    try:
        return schema.model_validate(data)
    except Unhonoured as exc:
        raise RequestError(400, str(exc)) from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise RequestError(422, problems) from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


async def decode_texts(app: FastAPI, texts: list[str], options: dict) -> list[list[int]]:
    """Encode ``texts`` like ``hybridformer generate`` does, check the limits (413), decode in the batcher."""
    sources, opts = prepare(app, texts, options)
    return await submit(app, sources, opts)


async def submit(app: FastAPI, sources: list[list[int]], opts: GenerationOptions,
                 on_token=None) -> list[list[int]]:
    """Decode checked sources in the batcher (``on_token(input, id)``: each token as it comes, worker thread)."""
    try:
        return await app.state.batcher.submit(sources, opts, on_token)
    except HybridformerError as exc:
        raise RequestError(422, str(exc)) from None


def prepare(app: FastAPI, texts: list[str], options: dict) -> tuple[list[list[int]], GenerationOptions]:
    """``texts`` encoded as ``generate`` does and the options parsed, within the limits (413) — before any
    answer starts, so that a streamed answer never fails on its input."""
    decoder, settings = app.state.decoder, app.state.settings
    if len(texts) > settings.max_inputs:
        raise RequestError(413, f"{len(texts)} inputs in one request; the limit is {settings.max_inputs}")
    try:
        opts = GenerationOptions.parse(options)
    except HybridformerError as exc:
        raise RequestError(422, str(exc)) from None
    sources = [encode_source(decoder.tokenizer, text, decoder.config) for text in texts]
    longest = max(len(s) for s in sources)
    if longest > settings.max_input_tokens:
        raise RequestError(413, f"an input of {longest} tokens; the limit is {settings.max_input_tokens}")
    a, b = opts.length_budget(decoder.config.is_seq2seq)
    if int(a * longest) + b > settings.max_new_tokens:
        raise RequestError(413, f"output budget max_len_a*len+max_len_b = {int(a * longest) + b} tokens; the "
                                f"limit is {settings.max_new_tokens}")
    return sources, opts
