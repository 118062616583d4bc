"""``prune_checkpoint`` / ``quantize_checkpoint``: what the CLI commands call, used from Python."""

from __future__ import annotations

import json

import pytest
from compress.test_compress_cli import make_checkpoint

from hybridformer import ConfigError, load_checkpoint
from hybridformer.compress import prune_checkpoint, quantize_checkpoint


def test_prune_then_quantize_records_each_step(tmp_path):
    base = make_checkpoint(tmp_path / "base")
    pruned = prune_checkpoint(base, tmp_path / "pruned", heads=0.5)
    assert pruned.heads_left == 6 and pruned.numel[1] < pruned.numel[0]
    assert load_checkpoint(pruned.path).config.pruned_heads
    int8 = quantize_checkpoint(pruned.path, tmp_path / "int8")
    assert int8.size_bytes[1] < int8.size_bytes[0]
    notes = json.loads((int8.path / "meta.json").read_text())["compression"]
    assert [n["method"] for n in notes] == ["heads", "dynamic_int8"]
    assert notes[0]["importance"] == "weight_norm" and notes[1]["source"] == str(pruned.path)
    with pytest.raises(ConfigError, match="is quantized; prune the float checkpoint"):
        prune_checkpoint(int8.path, tmp_path / "again", sparsity_target=0.5)
    with pytest.raises(ConfigError, match="exactly one of --heads"):
        prune_checkpoint(base, tmp_path / "x", heads=0.5, sparsity_target=0.5)
