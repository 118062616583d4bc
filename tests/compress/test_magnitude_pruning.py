"""Unstructured magnitude pruning: exact sparsity, largest weights kept, masks held while fine-tuning."""

from __future__ import annotations

import pytest
import torch

from hybridformer import ModelConfig, build_model, load_checkpoint, save_checkpoint
from hybridformer.compress import (
    iterative_magnitude_prune,
    magnitude_prune,
    make_permanent,
    sparsity,
    sparsity_schedule,
)
from hybridformer.compress.heads import batch_loss
from hybridformer.compress.magnitude import prunable_weights
from hybridformer.errors import ConfigError


def tiny_model():
    config = ModelConfig(vocab_size=40, d_model=32, heads=4, ffn_dim=48, dropout=0.0,
                         encoder={"layers": 1}, decoder={"layers": 1})
    return build_model(config).eval(), config


@pytest.mark.parametrize("target", [0.3, 0.5, 0.9])
def test_global_pruning_reaches_sparsity_and_keeps_largest(target):
    model, _ = tiny_model()
    original = {name: layer.weight.detach().clone() for name, layer in prunable_weights(model).items()}
    magnitude_prune(model, target)
    assert abs(sparsity(model) - target) < 0.01
    kept = torch.cat([original[n][layer.weight != 0].abs() for n, layer in prunable_weights(model).items()])
    pruned = torch.cat([original[n][layer.weight == 0].abs() for n, layer in prunable_weights(model).items()])
    assert kept.min() >= pruned.max()
    for name, layer in prunable_weights(model).items():  # kept weights are untouched
        nonzero = layer.weight != 0
        assert torch.equal(layer.weight[nonzero], original[name][nonzero])


def test_layer_scope_prunes_every_layer_to_the_target():
    model, _ = tiny_model()
    original = {name: layer.weight.detach().clone() for name, layer in prunable_weights(model).items()}
    magnitude_prune(model, 0.6, scope="layer")
    for name, layer in prunable_weights(model).items():
        zero = layer.weight == 0
        assert abs(zero.float().mean().item() - 0.6) < 0.01
        assert original[name][~zero].abs().min() >= original[name][zero].abs().max()


def test_embeddings_and_tied_output_stay_dense():
    model, _ = tiny_model()
    magnitude_prune(model, 0.8)
    assert "output" not in prunable_weights(model)
    assert bool((model.src_embed.weight[3:] != 0).all())


def test_masks_survive_fine_tuning_and_schedule_reaches_target(tmp_path):
    model, config = tiny_model()
    batch = (torch.randint(3, 40, (2, 6)), torch.randint(3, 40, (2, 5)))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    seen = []

    def finetune(m, phase, target):
        m.train()
        for _ in range(2):
            optimizer.zero_grad()
            batch_loss(m, batch).backward()
            optimizer.step()
        seen.append(sparsity(m))  # masked weights stay zero in the forward while fine-tuning

    reached = iterative_magnitude_prune(model, 0.7, 3, finetune)
    schedule = sparsity_schedule(0.7, 3)
    assert schedule[-1] == pytest.approx(0.7) and schedule == sorted(schedule)
    assert all(abs(r - s) < 0.01 for r, s in zip(reached, schedule, strict=True))
    assert all(abs(r - s) < 0.01 for r, s in zip(seen, schedule, strict=True))
    assert not any("weight_orig" in k or "weight_mask" in k for k in model.state_dict())
    save_checkpoint(tmp_path / "sparse", model, config)
    assert abs(sparsity(load_checkpoint(tmp_path / "sparse").model) - 0.7) < 0.01


def test_temporary_masks_then_permanent():
    model, _ = tiny_model()
    magnitude_prune(model, 0.5, permanent=False)
    assert any(k.endswith("weight_mask") for k in model.state_dict())
    make_permanent(model)
    assert not any(k.endswith("weight_mask") for k in model.state_dict())
    assert abs(sparsity(model) - 0.5) < 0.01


def test_bad_sparsity_is_a_clear_error():
    model, _ = tiny_model()
    with pytest.raises(ConfigError, match="sparsity"):
        magnitude_prune(model, 1.5)
    with pytest.raises(ConfigError, match="scope"):
        magnitude_prune(model, 0.5, scope="row")
