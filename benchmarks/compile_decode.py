"""Does the compiled decoding step pay? Per-step CPU time of eager and compiled greedy decoding, interleaved.

Decodes once compiled (compile + ``--tokens`` tokens, wall clock), checks the tokens equal eager's, then
times eager and compiled greedy decoding round by round (process CPU time per step, 1 thread), and finally one
long compiled run that must not recompile (``TORCH_LOGS=recompiles`` shows any).

    python benchmarks/compile_decode.py CKPT [--format fp32|bf16|int8-weight|int4] [--batch 1] [--tokens 40]
"""

from __future__ import annotations

import argparse
import time

import torch

from hybridformer import load_checkpoint
from hybridformer.compress import quantize_model
from hybridformer.decoding import ModelScorer, greedy_search


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("--format", default="fp32")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ckpt = load_checkpoint(args.checkpoint)
    model, cfg = ckpt.model, ckpt.config
    if args.format != "fp32":
        model, cfg = quantize_model(model, cfg, args.format)
    prompt = torch.randint(4, cfg.vocab_size, (args.batch, args.prompt_len), generator=torch.Generator().manual_seed(0))

    def run(scorer: ModelScorer, tokens: int) -> tuple[list[list[int]], float]:
        start = time.process_time()
        out = greedy_search(scorer, scorer.init_state(None), prompt, eos_id=-1, max_new_tokens=tokens)
        return out, (time.process_time() - start) / tokens * 1000

    eager, compiled = ModelScorer(model), ModelScorer(model, compile=True)
    reference, _ = run(eager, args.tokens)
    start = time.time()
    identical = run(compiled, args.tokens)[0] == reference
    print(f"compile + {args.tokens} tokens: {time.time() - start:.0f} s wall; tokens identical to eager: {identical}")
    for round_ in range(args.rounds):
        ms = {name: run(scorer, args.tokens)[1] for name, scorer in (("eager", eager), ("compiled", compiled))}
        print(f"round {round_ + 1}: eager {ms['eager']:.1f} ms/step, compiled {ms['compiled']:.1f} ms/step "
              f"({ms['eager'] / ms['compiled']:.2f}x), CPU time")
    start = time.time()
    run(compiled, 300)
    print(f"300 compiled tokens: {time.time() - start:.0f} s wall")


if __name__ == "__main__":
    main()
