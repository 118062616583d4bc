"""Continued training of a longified checkpoint (``train.init_from``) with the longified model config."""

from __future__ import annotations

import torch

from hybridformer import load_checkpoint, train
from hybridformer.longify import longify


def test_training_continues_from_a_longified_checkpoint(tmp_path, tiny_config):
    base = train(tiny_config("train.max_steps=2"), tmp_path / "base").checkpoint
    long = longify(base, tmp_path / "long", attention="sliding_window:window=4,chunk_size=4", global_tokens=1)
    args = ("train.max_steps=1", "train.lr=1e-9", "train.warmup_steps=0", "model.encoder.attention.name=sliding_window",
            "model.encoder.attention.window=4", "model.encoder.attention.chunk_size=4",
            "model.encoder.attention.num_global=1", f"train.init_from={long}")
    tuned = load_checkpoint(train(tiny_config(*args), tmp_path / "tuned").checkpoint)
    start = load_checkpoint(long)
    assert tuned.config.encoder.attention == start.config.encoder.attention
    for name, tensor in start.model.state_dict().items():
        torch.testing.assert_close(tuned.model.state_dict()[name], tensor, atol=1e-6, rtol=0)
