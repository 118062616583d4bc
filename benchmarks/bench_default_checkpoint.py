"""The load tests' benchmark model: the throughput benchmark's default seq2seq, randomly initialised, with the
Multi30k BPE tokenizer (8,000 ids, learned from the English and German training text as `train` does).

    python benchmarks/bench_default_checkpoint.py runs/bench-default
"""

from __future__ import annotations

import argparse

import torch

from hybridformer import ModelConfig, build_model, save_checkpoint
from hybridformer.data.tokenizer import train_tokenizer_files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--data", default="../shared/data/multi30k")
    args = parser.parse_args()
    tokenizer = train_tokenizer_files([f"{args.data}/train.en.gz", f"{args.data}/train.de.gz"], 8000)
    cfg = ModelConfig(vocab_size=8000, d_model=256, heads=4, ffn_dim=1024, dropout=0.0, encoder={"layers": 3},
                      decoder={"layers": 3})
    torch.manual_seed(0)
    print(save_checkpoint(args.out, build_model(cfg).eval(), cfg, tokenizer))


if __name__ == "__main__":
    main()
