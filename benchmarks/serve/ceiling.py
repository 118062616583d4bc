"""The most a 16-client server can gain over one client, from the engine's own costs on `bench serve`'s chat traffic.

A request costs its prompt's prefill plus one decoding step per answer token. Alone, each step is a one-row step;
under 16 clients at best every step carries 16 rows and a row pays a 16th of it. So, in CPU time (1 thread),

    ceiling = (P * prefill + A * step(1)) / (P * prefill + A * step(16) / 16)

with P and A the mean prompt and answer (tokens). The torch engine's rows are joined one by one into one running
batch, as the server joins them (prompts of different lengths); CTranslate2 gets its best case, 16 copies of one
prompt (no forced tails). No ramp, no tail, no HTTP: a real server stays below this.

    python benchmarks/serve/ceiling.py CKPT|CT2_EXPORT torch|ct2 [ANSWER_TOKENS]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

from hybridformer.bench.serve import chat_workload, read_sentences
from hybridformer.data.text import encode_source
from hybridformer.engines import load_engine
from hybridformer.serve.openai import chat_prompt
from hybridformer.serve.schemas import Message

torch.set_num_threads(1)
DATA = Path(os.environ.get("HYBRIDFORMER_DATA", "/work/shared/data"))
ROWS = (1, 4, 16)


def torch_costs(engine, prompts: list[list[int]]) -> tuple[float, dict[int, float]]:
    """Prefill CPU seconds per prompt token (one prompt at a time) and a running batch's step at each row count."""
    began = time.thread_time()
    for prompt in prompts[:8]:
        engine.prefill([prompt])
    prefill = (time.thread_time() - began) / sum(map(len, prompts[:8]))
    steps = {}
    for rows in ROWS:
        batch, state = engine.prefill([prompts[0]])
        for prompt in prompts[1:rows]:
            log_probs, joining = engine.prefill([prompt])
            batch, state = torch.cat([batch, log_probs]), engine.join(state, joining)
        tokens = batch.argmax(-1)
        for warm in (True, False):
            began = time.thread_time()
            for _ in range(2 if warm else 8):
                batch, state = engine.step(state, tokens)
                tokens = batch.argmax(-1)
        steps[rows] = (time.thread_time() - began) / 8
    return prefill, steps


def ct2_costs(engine, prompts: list[list[int]]) -> tuple[float, dict[int, float]]:
    """The same from CTranslate2's generate_batch (process CPU time: it decodes on its own thread)."""
    def cpu(batch: list[list[str]], length: int) -> float:
        run = lambda: engine.model.generate_batch(batch, max_length=length, min_length=length,  # noqa: E731
                                                  include_prompt_in_result=False)
        run()
        began = time.process_time()
        run()
        return time.process_time() - began

    prompt = engine.tokens(prompts[0])
    prefill = cpu([prompt], 1) / len(prompt)
    return prefill, {rows: (cpu([prompt] * rows, 33) - cpu([prompt] * rows, 1)) / 32 for rows in ROWS}


def main(checkpoint: str, engine_name: str, answer: float) -> None:
    engine = load_engine(checkpoint, engine=engine_name)
    work = chat_workload(read_sentences(DATA / "multi30k/test_2016_flickr.en.gz", 5000), 32, (15, 300), (16, 128))
    prompts = [encode_source(engine.tokenizer, chat_prompt([Message(role="user", content=text)],
                                                           engine.chat_template), engine.config) for text, _ in work]
    mean_prompt = sum(map(len, prompts)) / len(prompts)
    prefill, steps = (torch_costs if engine_name == "torch" else ct2_costs)(engine, prompts)
    one = mean_prompt * prefill + answer * steps[1]
    sixteen = mean_prompt * prefill + answer * steps[16] / 16
    print(f"{checkpoint} ({engine_name}): prefill {prefill * 1000:.2f} ms/token; step "
          + ", ".join(f"{rows} rows {s * 1000:.1f} ms" for rows, s in steps.items())
          + f"; P={mean_prompt:.0f}, A={answer:.0f}: CPU per request alone {one:.2f} s, in 16 rows {sixteen:.2f} s; "
          f"ceiling {one / sixteen:.2f}x (free prefill: {16 * steps[1] / steps[16]:.2f}x)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 67.0)
