"""Where the continuous batcher's CPU goes: ``bench serve``'s chat workload driven in process (no HTTP) by closed-loop
clients through the real ContinuousBatcher, with the engine's prefill/step/join/keep CPU time and the rows per step.

    python benchmarks/serve/profile_continuous.py CKPT CLIENTS[,CLIENTS...] REQUESTS [MAX_BATCH_TOKENS]
"""

from __future__ import annotations

import asyncio
import collections
import os
import sys
import time
from pathlib import Path

import torch

from hybridformer.bench.serve import chat_workload, read_sentences
from hybridformer.data.text import encode_source
from hybridformer.engines import GenerationOptions, load_engine
from hybridformer.serve.continuous import ContinuousBatcher
from hybridformer.serve.metrics import Metrics
from hybridformer.serve.openai import chat_prompt
from hybridformer.serve.schemas import Message

torch.set_num_threads(1)
DATA = Path(os.environ.get("HYBRIDFORMER_DATA", "/work/shared/data"))


def main(ckpt: str, clients: list[int], count: int, budget: int) -> None:
    engine = load_engine(ckpt)
    work = chat_workload(read_sentences(DATA / "multi30k/test_2016_flickr.en.gz", 1000), count, (20, 400), (16, 128))
    sources = [encode_source(engine.tokenizer, chat_prompt([Message(role="user", content=text)], engine.chat_template),
                             engine.config) for text, _ in work]
    print("prompt tokens: mean", sum(map(len, sources)) / count, "min", min(map(len, sources)), "max",
          max(map(len, sources)))
    cpu, calls, rows = collections.Counter(), collections.Counter(), collections.Counter()
    for name in ("prefill_chunks", "step", "join", "keep"):
        inner = getattr(engine, name)

        def timed(*args, _inner=inner, _name=name):
            began = time.thread_time()
            out = _inner(*args)
            if _name == "prefill_chunks":  # a generator: time each chunk
                out = list(out)
            cpu[_name] += time.thread_time() - began
            calls[_name] += 1
            if _name == "step":
                rows[len(args[1])] += 1
            return iter(out) if _name == "prefill_chunks" else out

        setattr(engine, name, timed)

    async def run(concurrency: int):
        batcher = ContinuousBatcher(engine, Metrics(), max_batch_tokens=budget, max_rows=32, max_wait_ms=10)
        batcher.start()
        queue, outputs = iter(range(count)), {}

        async def client():
            for i in queue:
                opts = GenerationOptions.parse({"beam": 1, "max_len_a": 0, "max_len_b": work[i][1]})
                outputs[i] = (await batcher.submit([sources[i]], opts))[0]

        wall, used = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        wall, used = time.perf_counter() - wall, time.process_time() - used
        await batcher.close()
        return wall, used, outputs

    reference = None
    for concurrency in clients:
        cpu.clear(), calls.clear(), rows.clear()
        wall, used, outputs = asyncio.run(run(concurrency))
        reference = reference or outputs
        tokens = sum(map(len, outputs.values()))
        wrong = sum(outputs[i] != reference[i] for i in outputs)
        print(f"clients {concurrency}: wall {wall:.1f} s, CPU {used:.1f} s, {tokens} tokens, "
              f"{tokens / used:.1f} tok/CPU-s, wrong {wrong}")
        print("  rows per step: mean", round(sum(k * v for k, v in rows.items()) / max(1, sum(rows.values())), 1),
              sorted(rows.items()))
        spent = {k: (round(cpu[k], 2), calls[k]) for k in cpu}
        print("  CPU s (calls):", spent, "rest", round(used - sum(cpu.values()), 2))


if __name__ == "__main__":
    main(sys.argv[1], [int(c) for c in sys.argv[2].split(",")], int(sys.argv[3]),
         int(sys.argv[4]) if len(sys.argv) > 4 else 4096)
