"""Issue 8's trade-off experiment: BLEU and greedy tokens/s of one Multi30k model vs heads pruned,
vs sparsity, and int8 — all variants from the same checkpoint, scored the same way.

    python benchmarks/compress_multi30k.py CKPT --out DIR [--sentences 500]

Writes DIR/tradeoff.json, DIR/tradeoff.md and DIR/tradeoff.png.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import torch

from hybridformer import evaluate, load_checkpoint
from hybridformer.bench.tradeoff import decode_speed, make_variants, plot_tradeoff
from hybridformer.compress.data import text_batches
from hybridformer.data.text import encode_source, pad

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "multi30k"


def lines(name: str, n: int) -> list[str]:
    with gzip.open(DATA / name, "rt", encoding="utf-8") as handle:
        return [line.rstrip("\n") for line, _ in zip(handle, range(n), strict=False)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--sentences", type=int, default=500)
    args = parser.parse_args()
    torch.manual_seed(0)
    src, ref = lines("test_2016_flickr.en.gz", args.sentences), lines("test_2016_flickr.de.gz", args.sentences)
    base = load_checkpoint(args.checkpoint)
    valid = [args.out / "valid.en", args.out / "valid.de"]
    args.out.mkdir(parents=True, exist_ok=True)
    valid[0].write_text("\n".join(lines("val.en.gz", 256)) + "\n")
    valid[1].write_text("\n".join(lines("val.de.gz", 256)) + "\n")
    batches = text_batches(base.tokenizer, base.config, valid, max_examples=256)
    variants = {"float": Path(args.checkpoint)} | make_variants(
        args.checkpoint, args.out / "variants", head_fractions=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        sparsities=[0.3, 0.5, 0.7], batches=batches)
    speed_src = [pad([encode_source(base.tokenizer, line, base.config) for line in src[i:i + 32]], 0)
                 for i in range(0, min(128, len(src)), 32)]
    rows = []
    for label, path in variants.items():
        ckpt = load_checkpoint(path)
        score = evaluate(path, src, ref, metric="bleu", beam=1, batch_tokens=8192)
        method, _, amount = label.partition("-")
        rows.append({"variant": label, "method": method, "amount": float(amount or 0.0), "bleu": score.score,
                     "signature": score.signature, "params": sum(p.numel() for p in ckpt.model.parameters()),
                     "tokens_per_s": decode_speed(ckpt.model, speed_src, bos_id=base.config.bos_id,
                                                  eos_id=base.config.eos_id)})
        print(json.dumps(rows[-1]), flush=True)
    (args.out / "tradeoff.json").write_text(json.dumps(rows, indent=2))
    float_row = rows[0]
    table = ["| variant | params | BLEU | Δ BLEU | greedy tok/s | × float |", "|---|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| {r['variant']} | {r['params'] / 1e6:.2f} M | {r['bleu']:.2f} | "
                     f"{r['bleu'] - float_row['bleu']:+.2f} | {r['tokens_per_s']:.0f} | "
                     f"{r['tokens_per_s'] / float_row['tokens_per_s']:.2f} |")
    (args.out / "tradeoff.md").write_text("\n".join(table) + f"\n\n{float_row['signature']}\n")
    plot_tradeoff(rows, args.out / "tradeoff.png")
    print("\n".join(table))


if __name__ == "__main__":
    main()
