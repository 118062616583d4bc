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


def test_fine_tuning_a_head_pruned_checkpoint_keeps_its_pruned_shape(tmp_path, tiny_config):
    from hybridformer import load_checkpoint, save_checkpoint
    from hybridformer.compress import attention_modules, prune_heads

    base = load_checkpoint(train(tiny_config("train.max_steps=2"), tmp_path / "base").checkpoint)
    importance = {name: torch.arange(float(m.heads)) for name, m in attention_modules(base.model).items()}
    config = prune_heads(base.model, base.config, 0.5, importance)
    save_checkpoint(tmp_path / "pruned", base.model, config, tokenizer=base.tokenizer)

    args = ("train.max_steps=2", "train.save_every=1", f"train.init_from={tmp_path / 'pruned'}")
    tuned = load_checkpoint(train(tiny_config(*args), tmp_path / "tuned").checkpoint)
    assert tuned.config.pruned_heads == config.pruned_heads
    assert sum(p.numel() for p in tuned.model.parameters()) == sum(p.numel() for p in base.model.parameters())
    resumed = train(tiny_config(*args[1:], "train.max_steps=3"), tmp_path / "tuned", resume=True)
    assert load_checkpoint(resumed.checkpoint).config.pruned_heads == config.pruned_heads
