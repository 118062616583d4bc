"""The trade-off experiment's helpers: variant checkpoints that load, speed measurement, the plot."""

from __future__ import annotations

import torch

from hybridformer import ModelConfig, build_model, load_checkpoint, save_checkpoint
from hybridformer.bench.tradeoff import decode_speed, make_variants, plot_tradeoff
from hybridformer.compress import attention_modules, sparsity


def test_make_variants_decode_speed_and_plot(tmp_path):
    config = ModelConfig(vocab_size=30, d_model=32, heads=4, ffn_dim=48, dropout=0.0,
                         encoder={"layers": 1}, decoder={"layers": 1})
    save_checkpoint(tmp_path / "base", build_model(config), config)
    batches = [(torch.randint(3, 30, (2, 6)), torch.randint(3, 30, (2, 5)))]
    written = make_variants(tmp_path / "base", tmp_path / "variants", head_fractions=[0.25],
                            sparsities=[0.5], batches=batches)
    assert set(written) == {"heads-0.25", "sparsity-0.5", "int8"}
    pruned = load_checkpoint(written["heads-0.25"]).model
    assert sum(m.heads for m in attention_modules(pruned).values()) == 12 - 3
    assert abs(sparsity(load_checkpoint(written["sparsity-0.5"]).model) - 0.5) < 0.01
    speed = decode_speed(load_checkpoint(written["int8"]).model, [batches[0][0]], bos_id=1, eos_id=2,
                         max_new_tokens=4)
    assert speed > 0
    rows = [{"method": "float", "bleu": 30.0, "tokens_per_s": 100.0},
            {"method": "heads", "amount": 0.25, "bleu": 29.5, "tokens_per_s": 110.0},
            {"method": "sparsity", "amount": 0.5, "bleu": 29.0, "tokens_per_s": 100.0},
            {"method": "int8", "bleu": 29.8, "tokens_per_s": 180.0}]
    path = plot_tradeoff(rows, tmp_path / "plot.png")
    assert path.stat().st_size > 1000
