"""Continuous batching: every request gets exactly what it gets decoded alone — greedy and seeded sampling, n,
penalties, stop, mixed prompt lengths, requests that join a running batch mid-flight — for several cache kinds;
requests it cannot reproduce go through dynamic batching; an engine that cannot join rows gets dynamic batching."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
import torch
from engines.test_prefill import ARCHITECTURES, engine_for

from hybridformer.engines import GenerationOptions
from hybridformer.serve import continuous
from hybridformer.serve.batcher import DynamicBatcher
from hybridformer.serve.continuous import ContinuousBatcher, make_batcher
from hybridformer.serve.metrics import Metrics

KINDS = ["rope", "sliding-window", "layer-shortconv", "layer-mamba2"]


def greedy(budget: int, **extra) -> GenerationOptions:
    return GenerationOptions(beam=1, max_len_a=0.0, max_len_b=budget, **extra)


def sampled(budget: int, seed: int) -> GenerationOptions:
    return GenerationOptions(sample=True, top_k=20, max_len_a=0.0, max_len_b=budget, seed=seed)


@dataclass
class Request:
    sources: list[list[int]]
    opts: GenerationOptions
    stop_after: int | None = None  # row 0 stops after this many tokens (a stop string)
    company: list[int] = field(default_factory=list)  # rows running beside it when its tokens came

    def on_token(self, batcher=None):
        seen = [0] * len(self.sources)

        def hook(row: int, token: int, log_probs) -> bool:
            seen[row] += 1
            if batcher is not None:
                self.company.append(len(batcher.rows))
            return row == 0 and seen[row] == self.stop_after

        return hook

    def alone(self, engine) -> list[list[int]]:
        generator = None
        if self.opts.sample:
            generator = torch.Generator().manual_seed(self.opts.seed)
        return engine.stream(self.sources, self.opts, generator, self.on_token())


FIRST = [Request([[5, 6, 7, 8, 9], [10, 11]], greedy(12)),
         Request([[12, 13, 14]] * 3, sampled(8, seed=7)),  # n = 3
         Request([[15, 16, 17, 18]], greedy(8, presence_penalty=0.7, frequency_penalty=0.5)),
         Request([[19, 20], [21, 22, 23, 24, 25, 26]], greedy(10), stop_after=3),
         Request([[27, 28, 29], [30]], GenerationOptions(beam=2, max_len_a=0.0, max_len_b=5))]  # dynamic
LATE = [Request([[31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45]], sampled(6, seed=3)),
        Request([[46]], greedy(6)), Request([[47, 48]] * 2, sampled(5, seed=11))]


def spread(engine):
    """Weights spread wide, so that greedy choices are tie-free and samples varied."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in engine.scorer.model.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    return engine


def serve_all(engine, first: list[Request], late: list[Request], **limits) -> tuple[list, object]:
    """Submit ``first`` at once and ``late`` when the first request's third token is chosen (mid-flight)."""

    for request in first + late:
        request.company.clear()

    async def main():
        batcher = make_batcher(engine, Metrics(), batching=True, max_wait_ms=1.0,
                               **({"max_batch_tokens": 4096, "max_rows": 32} | limits))
        batcher.start()
        loop, late_tasks = asyncio.get_running_loop(), []
        trigger = first[0].on_token(batcher)

        def first_hook(row, token, log_probs):
            if len(first[0].company) == 2:
                loop.call_soon_threadsafe(lambda: late_tasks.extend(
                    asyncio.ensure_future(batcher.submit(r.sources, r.opts, r.on_token(batcher))) for r in late))
            return trigger(row, token, log_probs)

        hooks = [first_hook] + [r.on_token(batcher) for r in first[1:]]
        outputs = await asyncio.gather(*(batcher.submit(r.sources, r.opts, h) for r, h in zip(first, hooks,
                                                                                               strict=True)))
        for _ in range(500):
            if len(late_tasks) == len(late):
                break
            await asyncio.sleep(0.01)
        outputs += await asyncio.gather(*late_tasks)
        await batcher.close()
        return outputs, batcher

    return asyncio.run(main())


@pytest.mark.parametrize("prefill_tokens", [512, 3])  # 3: prompts go in 3 tokens per step (chunked prefill)
@pytest.mark.parametrize("kind", KINDS)
def test_each_request_gets_what_it_gets_alone(tiny_tokenizer, kind, prefill_tokens, monkeypatch, one_thread):
    monkeypatch.setattr(continuous, "PREFILL_TOKENS", prefill_tokens)
    engine = spread(engine_for(tiny_tokenizer, **ARCHITECTURES[kind]))
    outputs, batcher = serve_all(engine, FIRST, LATE)
    assert isinstance(batcher, ContinuousBatcher) and batcher.metrics.mode == "continuous"
    for request, got in zip(FIRST + LATE, outputs, strict=True):
        assert got == request.alone(engine), request
    assert len(set(map(tuple, outputs[1]))) > 1, "the n samples of one request should differ"
    assert len(outputs[3][0]) == 3 and len(outputs[3][1]) > 3, "the stop ends only its row"
    assert max(LATE[0].company) > 1, "a late request decoded beside the running ones"
    assert batcher.metrics.queued == 0 and not batcher.rows


@pytest.mark.parametrize("prefill_tokens", [512, 4])  # 4: every request admitted on its own
def test_row_cap_and_token_budget_hold_requests_back(tiny_tokenizer, prefill_tokens, monkeypatch, one_thread):
    monkeypatch.setattr(continuous, "PREFILL_TOKENS", prefill_tokens)
    engine = spread(engine_for(tiny_tokenizer, **ARCHITECTURES["rope"]))
    first = [Request([[5, 6, 7]], greedy(6)), Request([[8, 9]], greedy(6)), Request([[10, 11, 12, 13]], greedy(6))]
    outputs, batcher = serve_all(engine, first, [], max_rows=2, max_batch_tokens=6)
    for request, got in zip(first, outputs, strict=True):
        assert got == request.alone(engine)
    assert max(c for r in first for c in r.company) <= 2
    assert batcher.metrics.batch_requests.count == (2 if prefill_tokens == 512 else 3)  # admissions


def test_a_long_prompt_goes_in_chunks_while_the_batch_decodes(tiny_tokenizer, monkeypatch, one_thread):
    """Chunked prefill: 3 prompt tokens per step, so the late 15-token prompt goes in over 5 chunks with a decoding
    step of the running rows between each two, and joins them mid-flight with the answer it gets alone."""
    monkeypatch.setattr(continuous, "PREFILL_TOKENS", 3)
    engine = spread(engine_for(tiny_tokenizer, **ARCHITECTURES["rope"]))
    steps, chunk_steps = [], []  # decoding steps so far; per prefill, the steps done before each of its chunks
    step, chunks = engine.step, engine.prefill_chunks

    def counted(rows, columns):
        chunk_steps.append([])
        for out in chunks(rows, columns):
            chunk_steps[-1].append(len(steps))
            yield out

    monkeypatch.setattr(engine, "step", lambda state, tokens: steps.append(len(tokens)) or step(state, tokens))
    monkeypatch.setattr(engine, "prefill_chunks", counted)
    first, late = [Request([[5, 6, 7, 8]], greedy(16))], [LATE[0]]
    outputs, _ = serve_all(engine, first, late)
    long = next(marks for marks in chunk_steps if len(marks) == 5)
    assert long == sorted(set(long)), long  # a step between every two chunks
    monkeypatch.setattr(engine, "prefill_chunks", chunks)
    for request, got in zip(first + late, outputs, strict=True):
        assert got == request.alone(engine)
    assert max(late[0].company) == 2


def test_an_engine_that_cannot_join_rows_gets_dynamic_batching():
    metrics = Metrics()
    decoder = SimpleNamespace(joins=False)  # CTranslate2
    batcher = make_batcher(decoder, metrics, batching=True, max_batch_tokens=64, max_rows=4, max_wait_ms=1.0)
    assert type(batcher) is DynamicBatcher and metrics.mode == "dynamic"
    make_batcher(decoder, metrics, batching=False, max_batch_tokens=64, max_rows=4, max_wait_ms=1.0)
    assert metrics.mode == "off"


def test_dynamic_batching_merges_greedy_requests_of_different_budgets(tiny_tokenizer, one_thread):
    """Chat requests rarely share ``max_tokens``: greedy ones still share a dynamic batch, run to the largest budget,
    each row stopping at its own, and each gets what it gets alone."""
    engine = spread(engine_for(tiny_tokenizer, **ARCHITECTURES["rope"]))
    requests = [Request([[5, 6, 7]], greedy(3)), Request([[8, 9]], greedy(9)), Request([[10, 11, 12, 13]], greedy(6))]

    async def main():
        batcher = DynamicBatcher(engine, Metrics(), max_batch_tokens=4096, max_wait_ms=300.0)
        batcher.start()
        outputs = await asyncio.gather(*(batcher.submit(r.sources, r.opts) for r in requests))
        await batcher.close()
        return outputs, batcher.metrics

    outputs, metrics = asyncio.run(main())
    assert outputs == [r.alone(engine) for r in requests]
    assert [len(rows[0]) for rows in outputs] == [3, 9, 6] and metrics.batch_requests.count == 1
