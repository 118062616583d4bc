"""Greedy and beam decoding speed of the torch and ct2 engines on one checkpoint, interleaved, one thread.

    python benchmarks/ct2_engine_speed.py CKPT --sentences ../shared/data/multi30k/test_2016_flickr.en.gz -n 200

Both engines decode the same sentences with the same options through ``hybridformer.generate``
(the ct2 engine from a float32 and an int8 export made once beforehand); each (engine, search) is
timed ``--repeats`` times, interleaved, and the best run is reported with the greedy agreement.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from hybridformer import generate
from hybridformer.bench.serve import read_sentences
from hybridformer.engines.ct2 import load_ct2_engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--sentences", default="../shared/data/multi30k/test_2016_flickr.en.gz")
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = read_sentences(args.sentences, args.n)
    for quantization in ("float32", "int8"):  # export once, outside the timing
        load_ct2_engine(args.checkpoint, quantization=quantization, threads=1)
    contenders = {"torch fp32": {"engine": "torch"},
                  "ct2 float32": {"engine": "ct2", "quantization": "float32"},
                  "ct2 int8": {"engine": "ct2", "quantization": "int8"}}
    searches = {"greedy": {"beam": 1}, "beam 4": {"beam": 4}}
    best: dict[tuple[str, str], float] = {}
    outputs: dict[tuple[str, str], list[str]] = {}
    for _ in range(args.repeats):
        for search, options in searches.items():
            for name, engine in contenders.items():
                start = time.perf_counter()
                outputs[name, search] = list(generate(args.checkpoint, lines, **engine, **options))
                seconds = time.perf_counter() - start
                best[name, search] = min(best.get((name, search), float("inf")), seconds)
    rows = []
    for search in searches:
        base = best["torch fp32", search]
        for name in contenders:
            agree = sum(a == b for a, b in zip(outputs[name, search], outputs["torch fp32", search], strict=True))
            rows.append({"engine": name, "search": search, "seconds": round(best[name, search], 2),
                         "sentences_per_s": round(len(lines) / best[name, search], 1),
                         "speedup_vs_torch": round(base / best[name, search], 2),
                         "identical_to_torch": f"{agree}/{len(lines)}"})
    print(json.dumps({"checkpoint": args.checkpoint, "sentences": len(lines), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
