"""How much of a recipe's padded training batches is padding: the most that packing examples into full blocks
(with document masking) could save, before its extra attention across each block is paid for.

    python benchmarks/padding_share.py configs/scitldr-smollm2.yaml --set train.init_from=runs/smollm2
"""

from __future__ import annotations

import argparse
import json

from hybridformer.config import ExperimentConfig, load_config
from hybridformer.data.batching import make_batches
from hybridformer.train.objectives import objective_for
from hybridformer.train.setup import get_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides, ExperimentConfig)
    objective = objective_for(cfg)
    raw = objective.read()
    train, _ = objective.examples(raw, get_tokenizer(cfg, raw, None), lambda _: None)
    sizes = [example.size for example in train]
    batches = make_batches(sizes, cfg.data.max_tokens, seed=cfg.train.seed, epoch=0)
    padded = sum(len(batch) * max(sizes[i] for i in batch) for batch in batches)
    print(json.dumps({"examples": len(sizes), "tokens": sum(sizes), "padded_tokens": padded,
                      "padding_share": round(1 - sum(sizes) / padded, 4), "batches": len(batches),
                      "rows_per_batch": round(len(sizes) / len(batches), 1),
                      "mean_length": round(sum(sizes) / len(sizes)), "longest": max(sizes)}))


if __name__ == "__main__":
    main()
