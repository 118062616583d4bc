"""LM prompts of different lengths share dynamic batches on both engines (answers still equal lone ones and
``generate``'s), and ``stream: true`` delivers the answer token by token while it is decoded."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch
from conftest import TINY_TEXT
from serve.test_server import OPTIONS, post, running_server, served_models  # noqa: F401 - served_models: fixture

from hybridformer import ModelConfig, build_model, generate
from hybridformer.data.text import encode_source
from hybridformer.engines import GenerationOptions, load_engine

pytest.importorskip("fastapi", reason="the serve extra (pip install 'hybridformer[serve]') is not installed")

# prompts of 10 different token lengths (1 to 13 tokens)
PROMPTS = ["the", "the cat", "a dog", "the cat sat", "a dog ran", "the bird sang a", "the cat sat on the mat",
           "we read a good book", "ein hund lief im park der vogel", "die katze sass auf der matte"]
ENGINES = ["torch", pytest.param("ct2", marks=pytest.mark.skipif(
    pytest.importorskip("importlib").util.find_spec("ctranslate2") is None, reason="ctranslate2 is not installed"))]


@pytest.mark.parametrize("position", ["rope", "learned", "sinusoidal", "alibi", "t5"])
def test_ragged_lm_batch_equals_lone_prompts(tiny_tokenizer, position, one_thread):
    from hybridformer.checkpoint import Checkpoint

    cfg = ModelConfig(arch="decoder_lm", vocab_size=tiny_tokenizer.get_vocab_size(), d_model=16, heads=2, ffn_dim=32,
                      dropout=0.0, decoder={"layers": 2}, position=position, max_positions=40)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.5)
    decoder = load_engine(Checkpoint(model, cfg, tiny_tokenizer, "tiny"))
    opts = GenerationOptions.parse({"beam": 1, "max_len_a": 0.0, "max_len_b": 12})
    sources = [encode_source(tiny_tokenizer, line, cfg) for line in PROMPTS]
    assert len({len(s) for s in sources}) == len(sources)
    alone = [decoder.decode_batch([s], opts)[0] for s in sources]
    streamed: list[tuple[int, int]] = []
    assert decoder.stream(sources, opts, emit=lambda row, token, _: streamed.append((row, token))) == alone
    assert [[t for r, t in streamed if r == row] for row in range(len(sources))] == alone
    assert sum(map(len, alone)) > 20
    first_rows = [r for r, _ in streamed[: len(sources)]]
    assert len(set(first_rows)) > 1, "tokens came row by row, not step by step"


@pytest.mark.parametrize("engine", ENGINES)
def test_prompts_of_different_lengths_are_batched_together(served_models, tiny_tokenizer, engine):  # noqa: F811
    ckpt = served_models["decoder_lm"]
    cfg = load_engine(ckpt).config
    assert len({len(encode_source(tiny_tokenizer, p, cfg)) for p in PROMPTS}) == len(PROMPTS)
    expected = list(generate(ckpt, PROMPTS, engine=engine, **OPTIONS))
    with running_server(ckpt, engine=engine, max_wait_ms=300) as url:
        for _ in range(2):  # bounded load: 2 rounds of 10 concurrent clients
            with ThreadPoolExecutor(len(PROMPTS)) as pool:
                answers = list(pool.map(lambda p: post(url, "/v1/generate", {"inputs": [p]} | OPTIONS), PROMPTS))
            assert [a.status_code for a in answers] == [200] * len(PROMPTS)
            assert [a.json()["outputs"][0] for a in answers] == expected
        metrics = httpx.get(url + "/metrics").text
    assert any(expected)
    lines = metrics.splitlines()
    alone = int(next(x for x in lines if x.startswith('hybridformer_batch_requests_bucket{le="1"}')).split()[-1])
    batches = int(next(x for x in lines if x.startswith("hybridformer_batch_requests_count")).split()[-1])
    assert alone < batches and batches < 2 * len(PROMPTS), (alone, batches)  # prompts of distinct lengths merged


class Gate:
    """Holds the decoding before its ``at``-th step until the client has read a piece of text: the server can
    only get past it in time if the stream delivers while the answer is still being decoded."""

    def __init__(self, at: int = 4, timeout: float = 30.0) -> None:
        self.at, self.timeout = at, timeout
        self.read, self.armed, self.steps, self.held = threading.Event(), False, 0, []

    def arm(self) -> None:
        self.read.clear()
        self.armed, self.steps = True, 0

    def step(self) -> None:
        if not self.armed:
            return
        self.steps += 1
        if self.steps == self.at:
            self.held.append(self.read.wait(self.timeout))  # False: nothing was streamed before the end
            self.armed = False


class GatedScorer:
    """The torch engine's scorer behind a :class:`Gate` (the loop has emitted every earlier token)."""

    def __init__(self, inner, gate: Gate) -> None:
        self.inner, self.gate = inner, gate
        self.left_padding = inner.left_padding

    def init_state(self, src, start=None):
        return self.inner.init_state(src, start)

    def step(self, state, prev_tokens):
        self.gate.step()
        return self.inner.step(state, prev_tokens)

    def reorder(self, state, beam_index):
        return self.inner.reorder(state, beam_index)


class GatedGenerator:
    """A CTranslate2 Generator whose per-token callback passes a :class:`Gate` first (the decoding waits on it)."""

    def __init__(self, inner, gate: Gate) -> None:
        self.inner, self.gate = inner, gate

    def generate_batch(self, *args, callback=None, **kwargs):
        def gated(step) -> bool:
            self.gate.step()
            return callback(step) if callback is not None else False

        return self.inner.generate_batch(*args, callback=gated, **kwargs)


def gate_decoding(app, gate: Gate) -> None:
    decoder = app.state.decoder
    if hasattr(decoder, "scorer"):
        decoder.scorer = GatedScorer(decoder.scorer, gate)
    else:
        decoder.model = GatedGenerator(decoder.model, gate)


def streamed(url: str, route: str, body: dict, gate: Gate, text_of) -> list[str]:
    """The data of each server-sent event; the gate opens when the first piece of text has been read."""
    gate.arm()
    events = []
    with httpx.stream("POST", url + route, content=json.dumps(body), timeout=120) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(line.removeprefix("data: "))
                if events[-1] != "[DONE]" and text_of(json.loads(events[-1])):
                    gate.read.set()
    return events


@pytest.mark.parametrize("engine", ENGINES)
def test_stream_arrives_token_by_token(served_models, engine):  # noqa: F811
    ckpt, gate = served_models["decoder_lm"], Gate()
    completion = {"prompt": TINY_TEXT[0], "max_tokens": 8, "temperature": 0}
    chat = {"messages": [{"role": "user", "content": TINY_TEXT[1]}], "max_tokens": 8, "temperature": 0}
    with running_server(ckpt, engine=engine, prepare=lambda app: gate_decoding(app, gate)) as url:
        whole = post(url, "/v1/completions", completion).json()["choices"][0]["text"]
        whole_chat = post(url, "/v1/chat/completions", chat).json()["choices"][0]["message"]["content"]
        events = streamed(url, "/v1/completions", completion | {"stream": True}, gate,
                          lambda e: e["choices"][0]["text"])
        chat_events = streamed(url, "/v1/chat/completions", chat | {"stream": True}, gate,
                               lambda e: e["choices"][0]["delta"].get("content"))
    # a piece of text reached the client before the 4th token was decoded, in both streams
    assert gate.held == [True, True]
    assert events[-1] == "[DONE]" and chat_events[-1] == "[DONE]"
    chunks = [json.loads(data)["choices"][0] for data in events[:-1]]
    pieces = [c["text"] for c in chunks if c["text"]]
    assert len(pieces) >= 3 and chunks[-1]["finish_reason"] and not chunks[-1]["text"]
    assert "".join(pieces) == whole and whole
    deltas = [json.loads(data)["choices"][0]["delta"] for data in chat_events[:-1]]
    assert deltas[0]["role"] == "assistant" and len([d for d in deltas if d.get("content")]) >= 3
    assert "".join(d.get("content", "") for d in deltas) == whole_chat and whole_chat
