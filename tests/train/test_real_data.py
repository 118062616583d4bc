"""A few hundred steps of a tiny model on real Multi30k lower the validation loss (skips without the data)."""

from __future__ import annotations

import pytest

from hybridformer import train
from hybridformer.config import ExperimentConfig, load_config
from tests.conftest import require_data


@pytest.mark.slow
def test_multi30k_tiny_model_learns(tmp_path):
    root = require_data("multi30k")
    config = load_config(None, [
        f"data.train_src={root / 'train.en.gz'}", f"data.train_tgt={root / 'train.de.gz'}",
        f"data.valid_src={root / 'val.en.gz'}", f"data.valid_tgt={root / 'val.de.gz'}",
        "data.vocab_size=1000", "data.max_tokens=1024", "data.limit_train=3000",
        "model.d_model=64", "model.heads=2", "model.ffn_dim=128", "model.encoder.layers=1", "model.decoder.layers=1",
        "model.dropout=0.0", "train.max_steps=200", "train.eval_every=20", "train.lr=0.003", "train.warmup_steps=20",
        "train.log_every=20",
    ], ExperimentConfig)
    train(config, tmp_path / "run")
    from hybridformer.train import read_metrics

    valid = [e["loss"] for e in read_metrics(tmp_path / "run" / "metrics.jsonl") if e["kind"] == "valid"]
    assert valid[-1] < valid[0] - 1.0, valid
