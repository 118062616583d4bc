"""Sanity-scale quality check of every layer type: a tiny character LM on tinyshakespeare.

Not a quality benchmark (that comes with the training pipeline): a few hundred steps on CPU to
show every layer type learns as a causal decoder, and that none does suspiciously well (a
decoder that leaks the future reaches near-zero loss). Numbers go to docs/RESULTS.md.

    PYTHONPATH=src python benchmarks/conv_tinyshakespeare.py --steps 150
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from hybridformer import ModelConfig, build_model
from hybridformer.blocks import LAYERS

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare" / "input.txt"


def batches(ids: torch.Tensor, length: int, batch: int, generator: torch.Generator) -> torch.Tensor:
    starts = torch.randint(0, len(ids) - length - 1, (batch,), generator=generator)
    return torch.stack([ids[s : s + length + 1] for s in starts.tolist()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--layers", default=",".join(LAYERS))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not DATA.exists():
        raise SystemExit(f"tinyshakespeare not found at {DATA} (needs ../shared/data beside the checkout)")
    torch.set_num_threads(args.threads)
    text = DATA.read_text(encoding="utf-8")
    chars = sorted(set(text))
    lookup = {c: i + 3 for i, c in enumerate(chars)}  # 0..2 are pad/bos/eos
    ids = torch.tensor([lookup[c] for c in text])
    split = int(0.9 * len(ids))
    train_ids, val_ids = ids[:split], ids[split:]
    print("| layer | params | train s | val loss (nats/char) | val bpc |\n|---|---|---|---|---|")
    for layer in args.layers.split(","):
        torch.manual_seed(0)
        cfg = ModelConfig(arch="decoder_lm", vocab_size=len(chars) + 3, d_model=64, heads=4, ffn_dim=128,
                          dropout=0.0, position="rope",
                          decoder={"layers": 2, "layer": layer, "conv": {"kernel_size": 7, "heads": 4}})
        model = build_model(cfg)
        optim = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
        gen = torch.Generator().manual_seed(0)
        start = time.perf_counter()
        for _ in range(args.steps):
            seq = batches(train_ids, args.length, args.batch, gen)
            loss = F.cross_entropy(model(seq[:, :-1]).flatten(0, 1), seq[:, 1:].flatten())
            optim.zero_grad()
            loss.backward()
            optim.step()
        seconds = time.perf_counter() - start
        model.eval()
        val_gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            losses = [F.cross_entropy(model(s[:, :-1]).flatten(0, 1), s[:, 1:].flatten()).item()
                      for s in (batches(val_ids, args.length, 32, val_gen) for _ in range(8))]
        val = sum(losses) / len(losses)
        params = sum(p.numel() for p in model.parameters())
        print(f"| {layer} | {params / 1e3:.0f}k | {seconds:.0f} | {val:.3f} | {val / math.log(2):.3f} |", flush=True)


if __name__ == "__main__":
    main()
