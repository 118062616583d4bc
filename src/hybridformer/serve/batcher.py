"""Dynamic batching: requests that arrive within ``max_wait_ms`` of each other are decoded together.

One worker thread owns the model; the event loop only queues jobs and hands back results, so
``/health`` and ``/metrics`` answer while a batch decodes. Jobs merge only when their decoding
options are equal (a batch is one search), up to ``max_batch_tokens`` input tokens. Language-model
prompts of different lengths merge under greedy search (the engine's ``stream`` decodes them in one
batch); under beam search or n-gram blocking an
LM job merges only with jobs of its prompt length. Sampling jobs always decode alone, from their
own seeded generator, so a caller's sample never depends on who else was in the queue. A job with
``on_token`` receives each of its output tokens (in the worker thread) as soon as it is chosen, with the
step's log-probabilities where the engine has them, and may answer True to end that row there (a stop string).
If a merged batch fails, each of its jobs is retried alone: one bad request can only fail itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace

import torch
from torch import Tensor

from ..engines import GenerationOptions
from ..engines.rows import ragged_ok
from .metrics import Metrics


def options_key(opts: GenerationOptions) -> tuple:
    """Requests whose options share this key may be decoded in one batch (batch_tokens aside)."""
    return tuple(sorted((k, v) for k, v in asdict(opts).items() if k != "batch_tokens"))  # batch_tokens: the server's

OnToken = Callable[[int, int, Tensor | None], bool | None]  # (input, token, log-probs) -> end input; worker thread


@dataclass
class Job:
    sources: list[list[int]]
    opts: GenerationOptions
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)
    on_token: OnToken | None = None
    streamed: dict[int, int] = field(default_factory=dict)  # tokens handed to on_token per input
    stopped: set[int] = field(default_factory=set)  # inputs on_token ended
    first_token: float | None = None  # when the first output token of any input was chosen

    def stream(self, row: int, token: int, index: int, log_probs: Tensor | None) -> bool:
        """Token ``index`` of input ``row``; a retry after a failed merged batch repeats what was already sent."""
        if self.first_token is None:
            self.first_token = time.monotonic()
        if self.on_token is not None and index >= self.streamed.get(row, 0):
            self.streamed[row] = index + 1
            if self.on_token(row, token, log_probs):
                self.stopped.add(row)
        return row in self.stopped

    @property
    def rows(self) -> int:
        return len(self.sources)

    @property
    def tokens(self) -> int:
        return sum(len(s) for s in self.sources)

    @property
    def solo(self) -> bool:
        return self.opts.sample


class DynamicBatcher:
    """``await batcher.submit(sources, opts)`` -> output token ids per source, as if decoded alone."""

    def __init__(self, decoder, metrics: Metrics, *, max_batch_tokens: int = 4096, max_wait_ms: float = 5.0,
                 batching: bool = True) -> None:
        self.decoder, self.metrics = decoder, metrics
        self.max_batch_tokens, self.max_wait = max_batch_tokens, max_wait_ms / 1000.0
        self.batching = batching
        self.pending: list[Job] = []
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hybridformer-decode")
        self.wakeup: asyncio.Event | None = None
        self.task: asyncio.Task | None = None
        self.closing = False

    def start(self) -> None:
        self.wakeup = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        """Stop the worker. The server calls this after its drain deadline, when no caller waits any more: queued
        jobs are dropped, and the batch being decoded ends at its next step (each row is stopped)."""
        self.closing = True
        for job in self.pending:
            job.future.cancel()
        self.metrics.queued -= sum(job.rows for job in self.pending)
        self.pending = []
        if self.wakeup is not None:
            self.wakeup.set()
        if self.task is not None:
            await self.task
        self.executor.shutdown(wait=True)

    async def submit(self, sources: list[list[int]], opts: GenerationOptions,
                     on_token: OnToken | None = None) -> list[list[int]]:
        opts = replace(opts, batch_tokens=self.max_batch_tokens)
        job = Job(sources, opts, asyncio.get_running_loop().create_future(), on_token=on_token)
        self.pending.append(job)
        self.metrics.queued += job.rows
        self.wakeup.set()
        return await job.future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self.pending or not self.closing:
            if not self.pending:
                self.wakeup.clear()
                await self.wakeup.wait()
                continue
            first = self.pending[0]
            if self.batching and not first.solo:
                await self._gather(first)
            if self.closing:  # close() dropped the queue
                continue
            batch = self._take(first)
            await loop.run_in_executor(self.executor, self._run, batch, loop)

    async def _gather(self, first: Job) -> None:
        """Wait until ``max_wait`` after the first job arrived, or until the token budget is full."""
        while not self.closing:
            remaining = first.arrived + self.max_wait - time.monotonic()
            if remaining <= 0 or sum(j.tokens for j in self._mates(first)) >= self.max_batch_tokens:
                return
            self.wakeup.clear()
            try:
                await asyncio.wait_for(self.wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _mates(self, first: Job) -> list[Job]:
        key = self._key(first)
        return [j for j in self.pending if not j.solo and self._key(j) == key]

    def _key(self, job: Job) -> tuple:
        """Jobs with the same key may share a batch: equal options and prompt shapes (:meth:`_shape`), except the
        output budget of a language model under greedy search (prefix-consistent: the batch runs to the largest
        budget and each row stops at its own, so chat requests need not share ``max_tokens``)."""
        opts = replace(job.opts, max_len_a=None, max_len_b=None) if self._own_budgets(job.opts) else job.opts
        return options_key(opts), self._shape(job)

    def _own_budgets(self, opts: GenerationOptions) -> bool:
        return not self.decoder.config.is_seq2seq and ragged_ok(opts)

    def _shape(self, job: Job) -> int | None:
        """Which jobs' inputs can share a batch: any, but LM prompts under beam search or n-gram blocking
        only with prompts of their length (one offset for all rows)."""
        if self.decoder.config.is_seq2seq or ragged_ok(job.opts):
            return None
        lengths = {len(s) for s in job.sources}
        return lengths.pop() if len(lengths) == 1 else -id(job)

    def _take(self, first: Job) -> list[Job]:
        """``first`` plus the queued jobs with its options, in arrival order, within the token budget."""
        batch, tokens = [first], first.tokens
        if self.batching and not first.solo:
            for job in self._mates(first)[1:]:
                if tokens + job.tokens > self.max_batch_tokens:
                    break
                batch.append(job)
                tokens += job.tokens
        taken = {id(j) for j in batch}
        self.pending = [j for j in self.pending if id(j) not in taken]
        self.metrics.queued -= sum(j.rows for j in batch)
        return batch

    def _run(self, batch: list[Job], loop: asyncio.AbstractEventLoop) -> None:
        """Decode a batch in the worker thread and resolve each job's future on the event loop."""
        try:
            results = self._decode(batch)
        except Exception as exc:  # noqa: BLE001 - handed to the caller; the server goes on
            if len(batch) == 1:
                loop.call_soon_threadsafe(_resolve, batch[0].future, None, exc)
            else:  # retry alone, so that only the failing job sees its error
                for job in batch:
                    self._run([job], loop)
            return
        for job, outputs in zip(batch, results, strict=True):
            loop.call_soon_threadsafe(_resolve, job.future, outputs, None)

    def _decode(self, batch: list[Job]) -> list[list[list[int]]]:
        sources = [s for job in batch for s in job.sources]
        opts, own = batch[0].opts, None
        if len(batch) > 1 and self._own_budgets(opts):  # the largest budget for the batch, each row its own
            a, b = zip(*(job.opts.length_budget(False) for job in batch), strict=True)
            opts = replace(opts, max_len_a=max(a), max_len_b=max(b))
            own = [n for job in batch for n in self.decoder.budgets(job.sources, job.opts)]
        generator = None
        if opts.sample:
            generator = torch.Generator(device=self.decoder.device)
            generator.manual_seed(opts.seed if opts.seed is not None else int(torch.seed() % 2**63))
        owners = [(job, row) for job in batch for row in range(len(job.sources))]
        counts = [0] * len(owners)

        def emit(flat: int, token: int, log_probs: Tensor | None) -> bool:
            job, row = owners[flat]
            counts[flat] += 1
            ended = own is not None and counts[flat] >= own[flat]
            return job.stream(row, token, counts[flat] - 1, log_probs) or self.closing or ended

        self.metrics.running = len(sources)
        try:
            outputs = self.decoder.stream(sources, opts, generator, emit)
        finally:
            self.metrics.running = 0
        self.metrics.batch(len(batch), len(sources), sum(map(len, sources)), sum(map(len, outputs)))
        for job in batch:
            self.metrics.first_token((job.first_token or time.monotonic()) - job.arrived)
        split, start = [], 0
        for job in batch:
            split.append(outputs[start: start + len(job.sources)])
            start += len(job.sources)
        return split


def _resolve(future: asyncio.Future, result, error: BaseException | None) -> None:
    if future.done():  # the caller went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
