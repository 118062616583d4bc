"""Tiny experiment configs for trainer tests (seconds on a CPU)."""

from __future__ import annotations

import pytest

from hybridformer.config import ExperimentConfig, load_config

TINY = [
    "data.builtin=numbers", "data.builtin_train=200", "data.builtin_valid=30", "data.max_tokens=600",
    "model.d_model=32", "model.heads=2", "model.ffn_dim=64", "model.encoder.layers=1", "model.decoder.layers=1",
    "model.dropout=0.1", "train.warmup_steps=4", "train.lr=0.003", "train.log_every=1", "train.eval_every=4",
]


def tiny(*overrides: str) -> ExperimentConfig:
    return load_config(None, TINY + list(overrides), ExperimentConfig)


@pytest.fixture
def tiny_config():
    return tiny


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every trainer test runs on one thread (see tests/conftest.py::one_thread)."""
