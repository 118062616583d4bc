"""Prompts of different lengths decoded together (one batched prefill) against one at a time, interleaved.

    OMP_NUM_THREADS=1 python benchmarks/ragged_prefill.py CKPT --new-tokens 16 --rounds 3

Four chat prompts of different lengths, greedy, ``--new-tokens`` each (EOS allowed), through the torch engine:
``together`` is one ``decode_batch`` of all four, ``alone`` four calls of one prompt each. Both must give the
same tokens. Reports median CPU time (``time.process_time``, robust on a shared machine) and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hybridformer.engines import GenerationOptions, load_engine

QUESTIONS = ["What is the capital of France?",
             "Write one sentence about the sea.",
             "Explain in two sentences why the sky is blue, for a child who asks at bedtime.",
             "List three fruits."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    engine = load_engine(args.checkpoint)
    prompts = [engine.tokenizer.encode(engine.chat_template.prompt(q) if engine.chat_template else q,
                                       add_special_tokens=False).ids for q in QUESTIONS]
    opts = GenerationOptions(beam=1, max_len_a=0.0, max_len_b=args.new_tokens)
    contenders = {"together": lambda: engine.decode_batch(prompts, opts),
                  "alone": lambda: [engine.decode_batch([p], opts)[0] for p in prompts]}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    outputs = {}
    for _ in range(args.rounds):
        for name, run in contenders.items():
            begin = time.process_time()
            outputs[name] = run()
            times[name].append(time.process_time() - begin)
    assert outputs["together"] == outputs["alone"], "batched prefill changed the outputs"
    together, alone = (statistics.median(times[name]) for name in contenders)
    print(f"prompt lengths {[len(p) for p in prompts]}, {args.new_tokens} new tokens, 1 thread, "
          f"median of {args.rounds}: together {together:.2f} CPU s, one at a time {alone:.2f} CPU s, "
          f"speed-up {alone / together:.2f}x; identical tokens")


if __name__ == "__main__":
    main()
