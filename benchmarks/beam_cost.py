"""What a beam-search pass over a seq2seq checkpoint costs, and where it goes (1 thread, CPU ms per batch).

Random source ids, EOS suppressed, so every pass makes exactly ``--new-tokens`` tokens whatever the weights. First
the whole pass (``process_time``, min and median of ``--repeats``), then one pass with ``perf_counter`` around each
part: the int8 layers and their kernel calls, attention calls, cache reorders, the log-softmax and the ranking of
extensions. Only the package's public pieces are used, so the same script times an older checkout:

    OMP_NUM_THREADS=1 python benchmarks/beam_cost.py CKPT --format int8 --repeats 5
    OMP_NUM_THREADS=1 PYTHONPATH=../old/src python benchmarks/beam_cost.py CKPT --format fp32   # another commit
"""

from __future__ import annotations

import argparse
import collections
import copy
import random
import statistics
import time

import torch

from hybridformer import cache as cache_module
from hybridformer import load_checkpoint, quantized
from hybridformer.bench.peers import NoEarlyEnd
from hybridformer.compress import quantize_model
from hybridformer.decoding import ModelScorer, beam, scorer

# (module, attribute, part): each is timed where it exists in the checkout being measured
PARTS = [
    (quantized.Int8Linear, "forward", "int8 layers"),
    (quantized.Int8Linear, "product", "of which int8 kernels"),
    (cache_module.KVCache, "reorder", "self-attention cache reorders"),
    (cache_module.StaticKV, "reorder", "source key reorders"),
    (scorer, "output_log_probs", "log-softmax"),
    (beam, "best_extensions", "ranking extensions"),
    (torch.nn.functional, "scaled_dot_product_attention", "attention"),
]


def timed(totals: collections.Counter, part: str, function):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[part] += time.perf_counter() - start
    return wrapper


def instrument(totals: collections.Counter) -> None:
    for owner, name, part in PARTS:
        if hasattr(owner, name):
            setattr(owner, name, timed(totals, part, getattr(owner, name)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--format", default="int8", help="fp32 or a quantize scheme (int8, bf16, ...)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--source-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ckpt = load_checkpoint(args.checkpoint)
    model, cfg = ckpt.model, ckpt.config
    if not cfg.is_seq2seq:
        parser.error(f"{args.checkpoint} is not a sequence-to-sequence model")
    if args.format != "fp32":
        model, cfg = quantize_model(copy.deepcopy(model), cfg, args.format)
    search = NoEarlyEnd(ModelScorer(model), cfg.eos_ids)
    rng = random.Random(0)
    sources = torch.tensor([[rng.randrange(4, cfg.vocab_size) for _ in range(args.source_len)]
                            for _ in range(args.batch)])

    def run() -> None:
        start = torch.full((args.batch, 1), cfg.start_id)
        beam.beam_search(search, search.init_state(sources), start, beam=args.beam, eos_id=cfg.eos_id,
                         max_len=args.new_tokens, at_budget="stop")

    run()  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.process_time()
        run()
        times.append((time.process_time() - start) * 1e3)
    print(f"{args.format} beam {args.beam}, batch {args.batch}, {args.new_tokens} tokens: CPU ms per batch "
          f"min {min(times):.0f}, median {statistics.median(times):.0f} ({args.repeats} passes)")
    totals: collections.Counter = collections.Counter()
    instrument(totals)
    start = time.perf_counter()
    run()
    whole = (time.perf_counter() - start) * 1e3
    print(f"one timed pass, {whole:.0f} ms: " + ", ".join(f"{part} {seconds * 1e3:.0f}"
                                                        for part, seconds in totals.most_common()))


if __name__ == "__main__":
    main()
