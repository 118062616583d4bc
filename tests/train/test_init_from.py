"""``train.init_from``: a run starts from another checkpoint's weights (fine-tuning, distillation students)."""

from __future__ import annotations

import pytest
import torch

from hybridformer import train
from hybridformer.checkpoint import load_weights
from hybridformer.errors import ConfigError


def test_init_from_starts_at_the_checkpoint(tmp_path, tiny_config):
    base = train(tiny_config("train.max_steps=2"), tmp_path / "base").checkpoint
    tuned = train(tiny_config("train.max_steps=1", "train.lr=1e-9", "train.warmup_steps=0",
                              f"train.init_from={base}"), tmp_path / "tuned").checkpoint
    start, after = load_weights(base), load_weights(tuned)
    assert all(torch.allclose(start[k], after[k], atol=1e-6) for k in start)
    fresh = load_weights(train(tiny_config("train.max_steps=1", "train.lr=1e-9", "train.warmup_steps=0"),
                               tmp_path / "fresh").checkpoint)
    assert not all(torch.allclose(start[k], fresh[k], atol=1e-6) for k in start)
    with pytest.raises(ConfigError, match="init_from: model config differs .* d_model"):
        train(tiny_config("train.max_steps=1", "model.d_model=16", f"train.init_from={base}"), tmp_path / "bad")
