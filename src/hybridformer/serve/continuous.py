"""Continuous batching (Orca, Yu et al., 2022; as vLLM and TGI do it): one running decode batch that requests join
and leave at step boundaries.

Once the previous prefill is in, the worker admits the queued requests that fit (in arrival order, within
``max_rows`` rows and ``max_batch_tokens`` tokens held: every running row's prompt and output so far, plus the new
prompts; together within ``PREFILL_TOKENS``, padding included, a longer request alone) and feeds their prompts at
most ``PREFILL_TOKENS`` tokens per step, one chunk between two decoding steps (chunked prefill, Agrawal et al., 2024,
Sarathi): a long prompt stalls the running rows for one chunk, never for its whole prefill. Each request is
prefilled in passes of its own, cut where it would be cut alone, so its numbers never depend on its neighbours
(bf16 products turn the last bit into other answers); prefill is bound by arithmetic on a CPU, so a joint pass
would gain nothing. Once its prompts are in, its rows join the running batch (``engine.join``). Each step picks
every row's next token as that request alone would (its own penalties, its own seeded generator), hands it over,
and a row that ends (EOS, budget, stop string, the caller gone) leaves at once. So an answer never waits for a
longer one.

Requests the running batch cannot reproduce exactly — beam search, n-gram blocking, a sampled request whose
prompts differ in length (alone they are sampled group by group) — are decoded between two steps as the dynamic
batcher decodes them (with the queued requests of the same options). An engine that cannot join rows
(``engine.joins`` False: CTranslate2) gets the :class:`~.batcher.DynamicBatcher` instead (:func:`make_batcher`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..decoding.logits import argmax_rows, penalized
from ..decoding.sampling import sample_tokens
from ..engines.rows import RowEmitter
from .batcher import DynamicBatcher, Job, _resolve
from .metrics import Metrics

PREFILL_TOKENS = 512  # prompt tokens (rows x columns) fed between two decoding steps


@dataclass
class Running:
    """A request in the running batch: its rows' outputs, emitter, penalty counts and sampling generator."""

    job: Job
    emitter: RowEmitter
    outputs: list[list[int]]
    generator: torch.Generator | None = None
    counts: Tensor | None = None  # (rows, vocab) tokens each row generated, where the penalties apply
    done: set[int] = field(default_factory=set)  # rows that left

    def pick(self, log_probs: Tensor, rows: list[int]) -> Tensor:
        """The next token of ``rows`` (this request's rows still running) from their log-probs (len(rows), vocab),
        as the request decoded alone picks it: a sample draws for all the request's rows at once from its
        generator (a row that left draws EOS), so each row gets the random numbers it would get alone."""
        opts = self.job.opts
        if self.counts is not None:
            log_probs = penalized(log_probs, self.counts[rows], opts.presence_penalty, opts.frequency_penalty)
        if not opts.sample:
            return argmax_rows(log_probs)
        every = torch.full((self.job.rows, log_probs.shape[-1]), float("-inf"), device=log_probs.device)
        every[:, self.emitter.eos_id] = 0.0
        every[rows] = log_probs
        drawn = sample_tokens(every, temperature=opts.temperature, top_k=opts.top_k, top_p=opts.top_p,
                              generator=self.generator)
        return drawn[rows]


@dataclass
class Filling:
    """A request being prefilled in passes of its own: its chunks, and how many are left."""

    entry: Running
    chunks: Iterator[tuple[Tensor, Any]]
    left: int


class ContinuousBatcher(DynamicBatcher):
    """``await batcher.submit(sources, opts)`` -> output token ids per source, as if decoded alone."""

    def __init__(self, decoder, metrics: Metrics, *, max_batch_tokens: int = 4096, max_rows: int = 32,
                 max_wait_ms: float = 5.0) -> None:
        super().__init__(decoder, metrics, max_batch_tokens=max_batch_tokens, max_wait_ms=max_wait_ms)
        self.max_rows = max_rows
        self.state, self.log_probs = None, None  # the running batch: decoding state, next-token log-probs
        self.rows: list[tuple[Running, int]] = []  # batch row -> (request, its row)
        self.filling: list[Filling] = []  # requests being prefilled

    def joins(self, job: Job) -> bool:
        """Whether the running batch decodes ``job`` exactly as alone."""
        opts = job.opts
        if opts.beam_size != 1 or opts.no_repeat_ngram:
            return False
        return not opts.sample or (len({len(s) for s in job.sources}) == 1 and job.tokens <= self.max_batch_tokens)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self.pending or self.rows or self.filling or not self.closing:
            if not self.pending and not self.rows and not self.filling:
                self.wakeup.clear()
                await self.wakeup.wait()
                continue
            if self.pending and not self.rows and not self.filling:  # idle: the first request waits for company
                await self._gather(self.pending[0])
                if self.closing and not self.pending:  # close() dropped the queue
                    continue
            if self.pending and not self.joins(self.pending[0]):  # dynamically batched, between two steps
                await loop.run_in_executor(self.executor, self._run, self._take(self.pending[0]), loop)
                continue
            await loop.run_in_executor(self.executor, self._tick, self._admit(), loop)

    def _admit(self) -> list[Job]:
        """The queued requests to prefill now, once the previous ones have joined: in arrival order, within the row
        cap and the token budget (the first always joins an empty batch), and together within ``PREFILL_TOKENS``
        (rows x longest prompt; the first alone may be longer: it goes in chunks)."""
        if self.filling:
            return []
        rows = len(self.rows)
        tokens = sum(len(entry.job.sources[row]) + len(entry.outputs[row]) for entry, row in self.rows)
        admitted: list[Job] = []
        new_rows = longest = 0  # this prefill
        for job in self.pending:
            if self.closing or not self.joins(job):
                break
            if (rows or admitted) and (rows + job.rows > self.max_rows or tokens + job.tokens > self.max_batch_tokens):
                break
            longest = max(longest, *map(len, job.sources))
            if admitted and (new_rows + job.rows) * longest > PREFILL_TOKENS:
                break
            admitted.append(job)
            rows, tokens, new_rows = rows + job.rows, tokens + job.tokens, new_rows + job.rows
        self.pending = self.pending[len(admitted):]
        self.metrics.queued -= sum(job.rows for job in admitted)
        return admitted

    def _tick(self, admitted: list[Job], loop: asyncio.AbstractEventLoop) -> None:
        """Worker thread: one chunk of the prompts being prefilled (their rows join once they are in), then one
        decoding step. A failure fails the requests it touched (the prefill's, or the running batch's), never the
        server."""
        if admitted:  # requests admitted together (each prefilled in passes of its own)
            sources = [s for job in admitted for s in job.sources]
            self.metrics.batch(len(admitted), len(sources), sum(map(len, sources)), 0)
        for job in admitted:
            try:
                entry = self._start(job)
            except Exception as exc:  # noqa: BLE001 - handed to the caller; the server goes on
                loop.call_soon_threadsafe(_resolve, job.future, None, exc)
                continue
            columns = max(1, PREFILL_TOKENS // job.rows)
            chunks = math.ceil(max(map(len, job.sources)) / columns)
            self.filling.append(Filling(entry, self.decoder.prefill_chunks(job.sources, columns), chunks))
        if self.filling:
            self._fill(loop)
        if not self.rows:
            return
        try:
            self._step(loop)
        except Exception as exc:  # noqa: BLE001 - handed to the callers; the server goes on
            for entry in {id(e): e for e, _ in self.rows}.values():
                loop.call_soon_threadsafe(_resolve, entry.job.future, None, exc)
            self.state, self.log_probs, self.rows = None, None, []
        self.metrics.running = len(self.rows)

    def _fill(self, loop: asyncio.AbstractEventLoop) -> None:
        """Feed the next chunk of each request being prefilled; a request whose prompts are in joins the running
        batch. A chunk that fails fails only its request."""
        for filling in list(self.filling):
            try:
                log_probs, state = next(filling.chunks)
            except Exception as exc:  # noqa: BLE001 - handed to the caller; the server goes on
                self.filling.remove(filling)
                loop.call_soon_threadsafe(_resolve, filling.entry.job.future, None, exc)
                continue
            filling.left -= 1
            if not filling.left:
                self.filling.remove(filling)
                self._join(filling.entry, log_probs, state)

    def _join(self, entry: Running, log_probs: Tensor, state: Any) -> None:
        """Append the prefilled rows of ``entry`` to the running batch."""
        if self.state is None:
            self.state, self.log_probs = state, log_probs
        else:
            self.state, self.log_probs = self.decoder.join(self.state, state), torch.cat([self.log_probs, log_probs])
        self.rows += [(entry, row) for row in range(entry.job.rows)]

    def _start(self, job: Job) -> Running:
        opts, decoder = job.opts, self.decoder
        counts = [0] * job.rows

        def emit(row: int, token: int, log_probs: Tensor | None) -> bool:
            counts[row] += 1
            return job.stream(row, token, counts[row] - 1, log_probs) or self.closing

        entry = Running(job, RowEmitter(emit, decoder.budgets(job.sources, opts), decoder.config.eos_ids),
                        [[] for _ in job.sources])
        if opts.sample:
            entry.generator = torch.Generator(device=decoder.device)
            entry.generator.manual_seed(opts.seed if opts.seed is not None else int(torch.seed() % 2**63))
        if opts.presence_penalty or opts.frequency_penalty:
            entry.counts = torch.zeros(job.rows, decoder.config.vocab_size, device=decoder.device)
        return entry

    def _step(self, loop: asyncio.AbstractEventLoop) -> None:
        """Pick every row's token, hand it over, let ended rows leave, feed the rest one step."""
        tokens = torch.empty(len(self.rows), dtype=torch.long, device=self.log_probs.device)
        for entry in {id(e): e for e, _ in self.rows}.values():
            index = [i for i, (e, _) in enumerate(self.rows) if e is entry]
            tokens[index] = entry.pick(self.log_probs[index], [self.rows[i][1] for i in index])
        keep = []
        for i, ((entry, row), token) in enumerate(zip(self.rows, tokens.tolist(), strict=True)):
            if self._hand_over(entry, row, token, self.log_probs[i]):
                entry.done.add(row)
                if len(entry.done) == entry.job.rows:
                    self._finish(entry, loop)
            else:
                keep.append(i)
        if len(keep) < len(self.rows):
            self.rows = [self.rows[i] for i in keep]
            if not keep:
                self.state = self.log_probs = None
                return
            self.state = self.decoder.keep(self.state, torch.tensor(keep, device=tokens.device))
        self.log_probs, self.state = self.decoder.step(self.state, tokens[keep])

    def _hand_over(self, entry: Running, row: int, token: int, log_probs: Tensor) -> bool:
        """Row ``row`` of ``entry`` chose ``token``; True when the row ends (EOS, budget, stop, the caller gone)."""
        if entry.emitter.ended[row]:  # a budget of 0
            return True
        if token not in entry.emitter.eos_ids:  # any EOS (an end-of-turn too) ends the row unsaid
            entry.outputs[row].append(token)
            if entry.counts is not None:
                entry.counts[row, token] += 1
        return entry.emitter.token(row, token, log_probs) or entry.job.future.done()

    def _finish(self, entry: Running, loop: asyncio.AbstractEventLoop) -> None:
        job = entry.job
        self.metrics.decoded(sum(map(len, entry.outputs)))
        self.metrics.first_token((job.first_token or time.monotonic()) - job.arrived)
        loop.call_soon_threadsafe(_resolve, job.future, entry.outputs, None)


def make_batcher(decoder, metrics: Metrics, *, batching: bool, max_batch_tokens: int, max_rows: int,
                 max_wait_ms: float) -> DynamicBatcher:
    """Continuous batching where the engine joins rows mid-flight, else dynamic batching (``batching`` off: one
    request at a time); ``metrics.mode`` says which runs."""
    if batching and decoder.joins:
        metrics.mode = "continuous"
        return ContinuousBatcher(decoder, metrics, max_batch_tokens=max_batch_tokens, max_rows=max_rows,
                                 max_wait_ms=max_wait_ms)
    metrics.mode = "dynamic" if batching else "off"
    return DynamicBatcher(decoder, metrics, max_batch_tokens=max_batch_tokens, max_wait_ms=max_wait_ms,
                          batching=batching)
