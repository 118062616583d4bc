"""OpenAI-compatible routes for language models: ``/v1/models``, ``/v1/completions``, ``/v1/chat/completions``.

Existing clients (the ``openai`` package, curl scripts) work unchanged. ``temperature: 0`` is greedy
search; otherwise nucleus sampling with ``top_p``. With ``stream: true`` the answer comes as
server-sent events (``data: {chunk}`` ... ``data: [DONE]``), one event per output token; the
tokens are sent once the request's batch has been decoded.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from tokenizers import Tokenizer

from ..data.chat import ChatTemplate
from .app import decode_texts, read_request
from .schemas import ChatRequest, CompletionRequest, Message

DEFAULT_MAX_TOKENS = 16  # OpenAI's default for completions


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
        outputs = await decode_texts(app, prompts, body.options(DEFAULT_MAX_TOKENS))
        budget = body.max_tokens or DEFAULT_MAX_TOKENS
        choices = [_finish(decoder.tokenizer, ids, budget, body.stops()) for ids in outputs]
        usage = _usage(decoder, prompts, outputs)
        if body.stream:
            return _sse(_completion_chunks(choices, decoder.tokenizer, settings.model_name))
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": settings.model_name, "usage": usage,
                "choices": [{"index": i, "text": text, "finish_reason": reason, "logprobs": None}
                            for i, (text, reason, _) in enumerate(choices)]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await read_request(request, ChatRequest, settings)
        prompt = chat_prompt(body.messages, decoder.chat_template)
        outputs = await decode_texts(app, [prompt], body.options(DEFAULT_MAX_TOKENS * 32))
        budget = body.max_tokens or body.max_completion_tokens or DEFAULT_MAX_TOKENS * 32
        text, reason, pieces = _finish(decoder.tokenizer, outputs[0], budget, body.stops())
        if body.stream:
            return _sse(_chat_chunks(pieces, reason, settings.model_name))
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": settings.model_name, "usage": _usage(decoder, [prompt], outputs),
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


def _finish(tokenizer: Tokenizer, ids: list[int], budget: int, stops: list[str]) -> tuple[str, str, list[str]]:
    """(text, finish_reason, the text's pieces token by token), cut at the first stop string."""
    pieces, previous = [], ""
    for end in range(1, len(ids) + 1):
        current = tokenizer.decode(ids[:end], skip_special_tokens=True)
        pieces.append(current[len(previous):])
        previous = current
    text, reason = previous, "length" if len(ids) >= budget else "stop"
    cut = min((text.find(s) for s in stops if s and s in text), default=-1)
    if cut >= 0:
        text, reason, kept, total = text[:cut], "stop", [], 0
        for piece in pieces:
            if total + len(piece) > cut:
                kept.append(piece[: cut - total])
                break
            kept.append(piece)
            total += len(piece)
        pieces = [p for p in kept if p]
    return text, reason, pieces


def _usage(decoder, prompts: list[str], outputs: list[list[int]]) -> dict:
    prompt_tokens = sum(len(decoder.tokenizer.encode(p, add_special_tokens=False).ids) for p in prompts)
    completion = sum(len(o) for o in outputs)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion}


def _sse(events: Iterator[dict]) -> StreamingResponse:
    def body() -> Iterator[str]:
        for event in events:
            yield f"data: {json.dumps(event)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream")


def _completion_chunks(choices, tokenizer: Tokenizer, model: str) -> Iterator[dict]:
    ident, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    for index, (_, reason, pieces) in enumerate(choices):
        for piece in pieces:
            yield {"id": ident, "object": "text_completion", "created": created, "model": model,
                   "choices": [{"index": index, "text": piece, "finish_reason": None, "logprobs": None}]}
        yield {"id": ident, "object": "text_completion", "created": created, "model": model,
               "choices": [{"index": index, "text": "", "finish_reason": reason, "logprobs": None}]}


def _chat_chunks(pieces: list[str], reason: str, model: str) -> Iterator[dict]:
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: dict, finish: str | None) -> dict:
        return {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}

    yield chunk({"role": "assistant", "content": ""}, None)
    for piece in pieces:
        yield chunk({"content": piece}, None)
    yield chunk({}, reason)
