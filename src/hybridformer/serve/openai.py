"""OpenAI-compatible routes for language models: ``/v1/models``, ``/v1/completions``, ``/v1/chat/completions``.

Existing clients (the ``openai`` package, curl scripts) work unchanged. ``temperature: 0`` is greedy
search; otherwise nucleus sampling with ``top_p``. With ``stream: true`` the answer comes as
server-sent events (``data: {chunk}`` ... ``data: [DONE]``) while it is being decoded: the batcher
hands over each output token as the engine chooses it (torch: one cached decoding step; ct2: its
per-token callback), and :class:`~.textstream.TextStream` turns tokens into text pieces that add up
to the non-streamed answer. A ``stop`` string ends that choice's decoding at the step it shows up (the
batcher's ``on_token`` answers True), so usage counts only the tokens decoded up to it. ``n`` decodes the
prompt n times in one batch; ``logprobs`` come from the step that chose each token (torch engine).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from torch import Tensor

from ..data.chat import ChatTemplate
from ..engines import GenerationOptions
from .requests import RequestError, prepare, read_request, submit
from .schemas import ChatRequest, CompletionRequest, Message, _OpenAIRequest
from .textstream import TextStream

DEFAULT_MAX_TOKENS = 16  # OpenAI's default for completions
CHAT_MAX_TOKENS = 512  # a chat answer's default budget (capped by --max-new-tokens)
Event = Callable[[int, str | None, str | None, list], dict]  # (choice, text or None, finish_reason, logprobs)


@dataclass
class Choice:
    """One decoded row of an answer, followed in the worker thread: its text (stop strings) and log-probabilities."""

    text: TextStream
    top: int | None  # alternatives per token; None: no log-probabilities
    records: list[tuple[str, float, list[tuple[int, float]]]] = field(default_factory=list)  # (text, logprob, top)
    reported: int = 0  # records already sent with a streamed piece

    def take(self, token: int, log_probs: Tensor | None) -> str:
        """The text piece ``token`` completes (often ''), after noting its log-probabilities."""
        before = self.text.text
        piece = self.text.push(token)
        if self.top is not None and log_probs is not None:
            top = log_probs.topk(self.top) if self.top else None
            alternatives = [] if top is None else list(zip(top.indices.tolist(), top.values.tolist(), strict=True))
            after = self.text.text  # the token's text in context (a lone token may decode differently)
            text = after[len(before):] if after.startswith(before) else self.text.tokenizer.decode([token])
            self.records.append((text, float(log_probs[token]), alternatives))
        return piece

    def unreported(self) -> list:
        records, self.reported = self.records[self.reported:], len(self.records)
        return records


def add_openai_routes(app: FastAPI) -> None:
    settings, decoder = app.state.settings, app.state.decoder

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": settings.model_name, "object": "model", "created": 0,
                                            "owned_by": "hybridformer"}]}

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await read_request(request, CompletionRequest, settings)
        prompts = request.state.prompt = body.prompts()

        def event(index: int, text: str | None, reason: str | None, records: list) -> dict:
            logprobs = None if body.logprobs is None else completion_logprobs(decoder.tokenizer, records)
            return {"index": index, "text": text or "", "finish_reason": reason, "logprobs": logprobs}

        return await answer(request, body, prompts, DEFAULT_MAX_TOKENS, "cmpl", "text_completion", event)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await read_request(request, ChatRequest, settings)
        prompt = request.state.prompt = chat_prompt(body.messages, decoder.chat_template)

        def event(index: int, text: str | None, reason: str | None, records: list) -> dict:
            logprobs = None if not body.logprobs else {"content": chat_logprobs(decoder.tokenizer, records),
                                                       "refusal": None}
            if not body.stream:
                message = {"role": "assistant", "content": text, "refusal": None}
                return {"index": index, "message": message, "finish_reason": reason, "logprobs": logprobs}
            delta = {} if text is None else {"content": text}
            return {"index": index, "delta": delta, "finish_reason": reason, "logprobs": logprobs}

        default = min(CHAT_MAX_TOKENS, settings.max_new_tokens)
        return await answer(request, body, [prompt], default, "chatcmpl", "chat.completion", event)


async def answer(request: Request, body: _OpenAIRequest, prompts: list[str], default_budget: int, prefix: str,
                 kind: str, event: Event):
    """The completion of every prompt ``body.n`` times (choice ``i·n + j``), whole or as server-sent events."""
    app = request.app
    decoder, settings = app.state.decoder, app.state.settings
    check_engine(body, settings.engine)
    rows = [p for p in prompts for _ in range(body.n)]
    sources, opts = prepare(app, rows, body.options(default_budget))
    budget, top = body.budget(default_budget), body.top_logprobs_count()
    choices = [Choice(TextStream(decoder.tokenizer, body.stops()), top) for _ in rows]
    head = {"id": f"{prefix}-{uuid.uuid4().hex}", "created": int(time.time()),
            "model": body.model or settings.model_name, "system_fingerprint": None}
    prompt_tokens = sum(len(s) for s in sources[:: body.n])
    if body.stream:
        usage = prompt_tokens if body.stream_options is not None and body.stream_options.include_usage else None
        kind += ".chunk" if kind == "chat.completion" else ""
        return _sse(_stream(request, sources, opts, budget, choices, event, head | {"object": kind}, usage))
    follow = body.stops() or top is not None
    outputs = await submit(app, sources, opts, _follower(choices) if follow else None)
    request.state.tokens = sum(map(len, outputs))
    finals = [choice.text.finish(ids, budget) for choice, ids in zip(choices, outputs, strict=True)]
    return head | {"object": kind, "usage": _usage(prompt_tokens, outputs),
                   "choices": [event(i, text, reason, choice.records)
                               for i, ((_, text, reason), choice) in enumerate(zip(finals, choices, strict=True))]}


def check_engine(body: _OpenAIRequest, engine: str) -> None:
    """What the ct2 engine cannot do is a 400 naming the field (CTranslate2 hands out neither the distribution
    nor a hook on it)."""
    if engine == "torch":
        return
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(body, name):
            raise RequestError(400, f"{name}: not supported on the {engine} engine; serve with --engine torch")
    if body.top_logprobs_count() is not None:
        raise RequestError(400, f"logprobs: not supported on the {engine} engine; serve with --engine torch")


def _follower(choices: list[Choice], forward: Callable[[int, str, list], None] | None = None):
    """The batcher's ``on_token``: each row's choice takes the token; True (end the row) once a stop string showed."""

    def on_token(row: int, token: int, log_probs: Tensor | None) -> bool:
        choice = choices[row]
        piece = choice.take(token, log_probs)
        if piece and forward is not None:
            forward(row, piece, choice.unreported())
        return choice.text.stopped

    return on_token


def chat_prompt(messages: list[Message], template: ChatTemplate | None) -> str:
    """The conversation as one prompt: the model's chat template (kept from its source by ``convert``) when it
    has one, else ChatML (``<|im_start|>role ... <|im_end|>``) ending in an open assistant turn."""
    turns = [m.turn() for m in messages]
    if template is not None:
        return template.render(turns)
    text = "".join(f"<|im_start|>{t['role']}\n{t['content']}<|im_end|>\n" for t in turns)
    return text + "<|im_start|>assistant\n"


async def _stream(request: Request, sources: list[list[int]], opts: GenerationOptions, budget: int,
                  choices: list[Choice], event: Event, head: dict, prompt_tokens: int | None) -> AsyncIterator[dict]:
    """Chunks of a streamed answer: each choice's role (chat), text pieces as the tokens are decoded, then each
    choice's rest and finish_reason, and a last chunk with the usage when asked (``prompt_tokens`` not None;
    an error event if the decoding failed)."""
    app, loop, pieces = request.app, asyncio.get_running_loop(), asyncio.Queue()

    def forward(row: int, piece: str, records: list) -> None:  # the worker thread; the loop keeps the order
        loop.call_soon_threadsafe(pieces.put_nowait, (row, piece, records))

    def chunk(choice: dict) -> dict:
        return head | {"choices": [choice], "usage": None}

    task = asyncio.ensure_future(submit(app, sources, opts, _follower(choices, forward)))
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved even if the client left
    if head["object"] == "chat.completion.chunk":
        for row in range(len(choices)):
            first = event(row, "", None, [])
            first["delta"]["role"] = "assistant"
            yield chunk(first)
    while not task.done() or not pieces.empty():
        if pieces.empty():
            getter = asyncio.ensure_future(pieces.get())
            await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                continue
            row, piece, records = getter.result()
        else:
            row, piece, records = pieces.get_nowait()
        yield chunk(event(row, piece, None, records))
    try:
        outputs = task.result()
    except RequestError as exc:
        yield {"error": {"message": exc.message, "type": "invalid_request_error", "code": exc.status}}
        return
    except Exception as exc:  # noqa: BLE001 - the stream has started: the error is its last event
        yield {"error": {"message": f"internal error ({type(exc).__name__})", "type": "server_error", "code": 500}}
        return
    request.state.tokens = sum(map(len, outputs))
    for row, ids in enumerate(outputs):
        rest, _, reason = choices[row].text.finish(ids, budget)
        records = choices[row].unreported()
        if rest or records:
            yield chunk(event(row, rest, None, records))
        yield chunk(event(row, None, reason, []))
    if prompt_tokens is not None:
        yield head | {"choices": [], "usage": _usage(prompt_tokens, outputs)}


def _usage(prompt_tokens: int, outputs: list[list[int]]) -> dict:
    """Tokens read (each prompt once) and decoded; a choice a stop string ended counts only the tokens decoded
    up to it."""
    completion = sum(len(o) for o in outputs)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion}


def chat_logprobs(tokenizer, records: list) -> list[dict]:
    """The chat API's ``logprobs.content``: per token its text, bytes, log-probability and the top alternatives
    (an alternative's text is its text alone)."""
    def entry(text: str, logprob: float) -> dict:
        return {"token": text, "bytes": list(text.encode()), "logprob": logprob}

    return [entry(text, logprob) | {"top_logprobs": [entry(tokenizer.decode([t]), lp) for t, lp in top]}
            for text, logprob, top in records]


def completion_logprobs(tokenizer, records: list) -> dict:
    """The legacy completions API's ``logprobs``: parallel lists of tokens, log-probabilities, top maps, offsets."""
    texts = [text for text, _, _ in records]
    offsets = [sum(len(t) for t in texts[:i]) for i in range(len(texts))]
    return {"tokens": texts, "token_logprobs": [lp for _, lp, _ in records], "text_offset": offsets,
            "top_logprobs": [{tokenizer.decode([t]): lp for t, lp in top} for _, _, top in records]}


def _sse(events: AsyncIterator[dict]) -> StreamingResponse:
    async def body() -> AsyncIterator[str]:
        async for event in events:
            yield f"data: {json.dumps(event)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream")
