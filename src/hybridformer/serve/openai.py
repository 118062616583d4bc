"""OpenAI-compatible routes for language models: ``/v1/models``, ``/v1/completions``, ``/v1/chat/completions``.

Existing clients (the ``openai`` package, curl scripts) work unchanged. ``temperature: 0`` is greedy
search; otherwise nucleus sampling with ``top_p``. With ``stream: true`` the answer comes as
server-sent events (``data: {chunk}`` ... ``data: [DONE]``) while it is being decoded: the batcher
hands over each output token as the engine chooses it (torch: one cached decoding step; ct2: its
per-token callback), and :class:`~.textstream.TextStream` turns tokens into text pieces that add up
to the non-streamed answer.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from ..data.chat import ChatTemplate
from ..engines import GenerationOptions
from .app import RequestError, prepare, read_request, submit
from .schemas import ChatRequest, CompletionRequest, Message
from .textstream import TextStream

DEFAULT_MAX_TOKENS = 16  # OpenAI's default for completions
Chunk = Callable[[int, str | None, str | None], dict]  # (choice index, text or None, finish_reason) -> event


def add_openai_routes(app: FastAPI) -> None:
    settings, decoder = app.state.settings, app.state.decoder

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": settings.model_name, "object": "model", "created": 0,
                                            "owned_by": "hybridformer"}]}

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await read_request(request, CompletionRequest, settings)
        prompts = body.prompts()
        sources, opts = prepare(app, prompts, body.options(DEFAULT_MAX_TOKENS))
        budget = body.max_tokens or DEFAULT_MAX_TOKENS
        ident, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            def chunk(index: int, text: str | None, reason: str | None) -> dict:
                return {"id": ident, "object": "text_completion", "created": created, "model": settings.model_name,
                        "choices": [{"index": index, "text": text or "", "finish_reason": reason, "logprobs": None}]}

            return _sse(_stream(app, sources, opts, budget, body.stops(), chunk))
        outputs = await submit(app, sources, opts)
        finals = [TextStream(decoder.tokenizer, body.stops()).finish(ids, budget) for ids in outputs]
        return {"id": ident, "object": "text_completion", "created": created, "model": settings.model_name,
                "usage": _usage(decoder, prompts, outputs),
                "choices": [{"index": i, "text": text, "finish_reason": reason, "logprobs": None}
                            for i, (_, text, reason) in enumerate(finals)]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await read_request(request, ChatRequest, settings)
        prompt = chat_prompt(body.messages, decoder.chat_template)
        sources, opts = prepare(app, [prompt], body.options(DEFAULT_MAX_TOKENS * 32))
        budget = body.max_tokens or body.max_completion_tokens or DEFAULT_MAX_TOKENS * 32
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            def chunk(index: int, text: str | None, reason: str | None) -> dict:
                delta = {} if text is None else {"content": text}
                return {"id": ident, "object": "chat.completion.chunk", "created": created,
                        "model": settings.model_name,
                        "choices": [{"index": index, "delta": delta, "finish_reason": reason, "logprobs": None}]}

            head = chunk(0, "", None)
            head["choices"][0]["delta"]["role"] = "assistant"
            return _sse(_stream(app, sources, opts, budget, body.stops(), chunk, head))
        outputs = await submit(app, sources, opts)
        _, text, reason = TextStream(decoder.tokenizer, body.stops()).finish(outputs[0], budget)
        return {"id": ident, "object": "chat.completion", "created": created, "model": settings.model_name,
                "usage": _usage(decoder, [prompt], outputs),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": reason, "logprobs": None}]}


def chat_prompt(messages: list[Message], template: ChatTemplate | None) -> str:
    """The conversation as one prompt: the model's chat template (kept from its source by ``convert``) when it
    has one, else ChatML (``<|im_start|>role ... <|im_end|>``) ending in an open assistant turn."""
    turns = [m.model_dump() for m in messages]
    if template is not None:
        return template.render(turns)
    text = "".join(f"<|im_start|>{t['role']}\n{t['content']}<|im_end|>\n" for t in turns)
    return text + "<|im_start|>assistant\n"


async def _stream(app: FastAPI, sources: list[list[int]], opts: GenerationOptions, budget: int, stops: list[str],
                  chunk: Chunk, head: dict | None = None) -> AsyncIterator[dict]:
    """Events of a streamed answer: ``head``, then text pieces as the tokens are decoded, then each choice's
    rest and finish_reason (an error event if the decoding failed)."""
    loop, tokens = asyncio.get_running_loop(), asyncio.Queue()

    def on_token(row: int, token: int) -> None:  # the worker thread; the loop keeps the order
        loop.call_soon_threadsafe(tokens.put_nowait, (row, token))

    task = asyncio.ensure_future(submit(app, sources, opts, on_token))
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved even if the client left
    texts = [TextStream(app.state.decoder.tokenizer, stops) for _ in sources]
    if head is not None:
        yield head
    while not task.done() or not tokens.empty():
        if tokens.empty():
            getter = asyncio.ensure_future(tokens.get())
            await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                continue
            row, token = getter.result()
        else:
            row, token = tokens.get_nowait()
        piece = texts[row].push(token)
        if piece:
            yield chunk(row, piece, None)
    try:
        outputs = task.result()
    except RequestError as exc:
        yield {"error": {"message": exc.message, "type": "invalid_request_error", "code": exc.status}}
        return
    except Exception as exc:  # noqa: BLE001 - the stream has started: the error is its last event
        yield {"error": {"message": f"internal error ({type(exc).__name__})", "type": "server_error", "code": 500}}
        return
    for row, ids in enumerate(outputs):
        rest, _, reason = texts[row].finish(ids, budget)
        if rest:
            yield chunk(row, rest, None)
        yield chunk(row, None, reason)


def _usage(decoder, prompts: list[str], outputs: list[list[int]]) -> dict:
    prompt_tokens = sum(len(decoder.tokenizer.encode(p, add_special_tokens=False).ids) for p in prompts)
    completion = sum(len(o) for o in outputs)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion}


def _sse(events: AsyncIterator[dict]) -> StreamingResponse:
    async def body() -> AsyncIterator[str]:
        async for event in events:
            yield f"data: {json.dumps(event)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream")
