"""Does the compiled decoding step pay? Per-step CPU time of eager and compiled greedy decoding, interleaved.

Decodes once compiled (compile + ``--tokens`` tokens, wall clock), checks the tokens equal eager's, then
times eager and compiled greedy decoding round by round (process CPU time per step, 1 thread), and finally one
long compiled run that must not recompile (``TORCH_LOGS=recompiles`` shows any).

    python benchmarks/compile_decode.py CKPT [--format fp32|bf16|int8|int8-weight|int4] [--batch 1] [--tokens 40]
        [--split]   # packed formats: the compiled step's time in the weight products, and the step without them
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager

import torch

from hybridformer import load_checkpoint
from hybridformer.compress import quantize_model
from hybridformer.decoding import ModelScorer, greedy_search
from hybridformer.quantized import _PackedLinear


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("--format", default="fp32")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--split", action="store_true", help="time the products inside the compiled step, then the "
                        "step with them replaced by empty outputs (packed formats: int8, bf16, int4)")
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
    if args.split:
        split(model, lambda tokens: run(compiled, tokens)[1] * tokens / 1e3, args.tokens)
    start = time.time()
    run(compiled, 300)
    print(f"300 compiled tokens: {time.time() - start:.0f} s wall")


@contextmanager
def patched_products(model: torch.nn.Module, product):
    """Every packed layer class of ``model`` multiplies through ``product(original, layer, x)`` meanwhile."""
    classes = {type(m) for m in model.modules() if isinstance(m, _PackedLinear)}
    originals = {cls: cls.product for cls in classes}
    for cls, original in originals.items():
        cls.product = lambda layer, x, original=original: product(original, layer, x)
    try:
        yield
    finally:
        for cls, original in originals.items():
            cls.product = original


def split(model: torch.nn.Module, run, tokens: int) -> None:
    """The compiled step's CPU ms in its packed products (timed around each call) and the step's CPU ms with every
    product returning an empty output at once (what the rest costs when the weights do not pass through the
    caches). Per step: a run of ``tokens`` + 1 tokens minus a run of 1 (the prompt pass)."""
    spent = [0]

    def timed(original, layer, x):
        start = time.thread_time_ns()
        out = original(layer, x)
        spent[0] += time.thread_time_ns() - start
        return out

    def per_step() -> tuple[float, float]:
        spent[0] = 0
        one = run(1)
        one_products = spent[0]
        spent[0] = 0
        many = run(tokens + 1)
        return (many - one) / tokens * 1e3, (spent[0] - one_products) / tokens / 1e6

    with patched_products(model, timed):
        per_step()  # the patched call is outside the graph: nothing recompiles, this only warms up
        step, products = per_step()
    with patched_products(model, lambda original, layer, x: x.new_empty(*x.shape[:-1], layer.out_features)):
        stubbed, _ = per_step()
    print(f"compiled step {step:.2f} ms: products {products:.2f} ms, the rest {step - products:.2f} ms; "
          f"with the products stubbed the step takes {stubbed:.2f} ms (CPU time)")


if __name__ == "__main__":
    main()
