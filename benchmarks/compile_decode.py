"""Does ``torch.compile`` of the decoding step pay on this CPU? Compile time against the per-token gain.

Compiles ``model.decode`` (inductor, ``dynamic=True`` so the growing cache does not recompile every
step), decodes once (compile + ``--tokens`` tokens, wall clock), checks the tokens equal eager's, then
times eager and compiled greedy decoding interleaved (CPU time, best of ``--repeats``), batch 1.

    python benchmarks/compile_decode.py CKPT [--tokens 40] [--prompt-len 8] [--repeats 2]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from hybridformer import load_checkpoint
from hybridformer.decoding import ModelScorer, greedy_search


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--prompt-len", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ckpt = load_checkpoint(args.checkpoint)
    prompt = torch.randint(4, ckpt.config.vocab_size, (1, args.prompt_len))

    def run(model) -> list[list[int]]:
        scorer = ModelScorer(model)
        return greedy_search(scorer, scorer.init_state(None), prompt, eos_id=-1, max_new_tokens=args.tokens)

    eager = ckpt.model
    reference = run(eager)
    compiled = copy.copy(eager)
    compiled.decode = torch.compile(eager.decode, dynamic=True)
    start = time.time()
    identical = run(compiled) == reference
    print(f"compile + {args.tokens} tokens: {time.time() - start:.1f} s wall; tokens identical to eager: {identical}")
    best = {"eager": float("inf"), "compiled": float("inf")}
    for _ in range(args.repeats):
        for name, model in (("eager", eager), ("compiled", compiled)):
            start = time.process_time()
            run(model)
            best[name] = min(best[name], time.process_time() - start)
    for name, seconds in best.items():
        print(f"{name}: {args.tokens / seconds:.1f} tok/s (CPU time)")


if __name__ == "__main__":
    main()
