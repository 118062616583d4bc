"""A small DecoderLM learns real text (tinyshakespeare, bytes) with every causal mechanism."""

from __future__ import annotations

import pytest
import torch
from conftest import require_data

from hybridformer import ModelConfig, build_model

MECHANISMS = [
    ("full", {}), ("chunked", {"chunk_size": 8}), ("sliding_window", {"window": 8, "num_global": 1}),
    ("block_sparse", {"block_size": 8, "num_random_blocks": 1}), ("linear", {"chunk_size": 16}),
    ("performer", {"feature_dim": 32, "chunk_size": 16}),
]


@pytest.mark.parametrize("name,opts", MECHANISMS)
def test_loss_falls_on_tinyshakespeare(name: str, opts: dict) -> None:
    text = require_data("tinyshakespeare", "input.txt").read_bytes()[:200_000]
    data = torch.tensor(list(text)) + 3  # bytes after pad/bos/eos
    cfg = ModelConfig(arch="decoder_lm", vocab_size=259, d_model=32, heads=4, ffn_dim=64, dropout=0.0,
                      position="rope", decoder={"layers": 2, "attention": {"name": name, **opts}})
    model = build_model(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(20):
        starts = torch.randint(0, len(data) - 33, (8,), generator=generator)
        batch = torch.stack([data[s : s + 33] for s in starts.tolist()])
        logits = model(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 1.0, (name, losses)
