"""Head gates, Michel et al. importance and structured head pruning, against masking as the oracle."""

from __future__ import annotations

import pytest
import torch

from hybridformer import ModelConfig, build_model, load_checkpoint, save_checkpoint
from hybridformer.compress import (
    HeadGates,
    attention_modules,
    batch_loss,
    head_importance,
    keep_heads,
    prune_heads,
    select_heads,
    state_size,
    weight_importance,
)
from hybridformer.decoding import ModelScorer, greedy_search
from hybridformer.errors import ConfigError

VOCAB = 40


def tiny(**overrides) -> ModelConfig:
    base = dict(vocab_size=VOCAB, d_model=32, heads=4, ffn_dim=48, dropout=0.0,
                encoder={"layers": 2}, decoder={"layers": 2})
    return ModelConfig(**{**base, **overrides})


def seq2seq_batch() -> tuple[torch.Tensor, torch.Tensor]:
    src, tgt = torch.randint(3, VOCAB, (3, 9)), torch.randint(3, VOCAB, (3, 7))
    src[1, -3:] = 0  # padding
    tgt[:, 0] = 1
    return src, tgt


def run(model, config, batch):
    return model(*batch) if config.is_seq2seq else model(batch)


def masked_outputs(model, config, kept: dict[str, list[int]], batch):
    """The oracle: the unpruned model with the gates of the removed heads set to zero."""
    with HeadGates(model) as gates, torch.no_grad():
        for name, heads in kept.items():
            gates[name].zero_()[heads] = 1.0
        return run(model, config, batch)


def greedy(model, config, batch, steps=6):
    scorer = ModelScorer(model)
    src = batch[0] if config.is_seq2seq else None
    prefix = torch.full((3, 1), config.bos_id) if config.is_seq2seq else batch[:, :3]
    return greedy_search(scorer, scorer.init_state(src), prefix, eos_id=-1, max_new_tokens=steps)


def test_pruning_zero_heads_changes_nothing():
    config = tiny(kv_heads=2)
    model = build_model(config).eval()
    batch = seq2seq_batch()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    expected = model(*batch)
    new_config = prune_heads(model, config, 0.0, head_importance(model, [batch]))
    assert new_config == config and new_config.pruned_heads is None
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(model(*batch), expected)


@pytest.mark.parametrize("overrides", [
    dict(kv_heads=None, position="sinusoidal"),  # MHA: single heads, self and cross attention
    dict(kv_heads=2, position="rope"),  # GQA: whole groups
    dict(kv_heads=None, position="alibi"),  # per-head score bias narrowed to the kept heads
    dict(arch="decoder_lm", kv_heads=None, position="t5"),
    dict(arch="decoder_lm", kv_heads=2, position="rope",  # per-head feature maps and gates narrowed too
         decoder={"layers": 2, "attention": {"name": "window_linear", "window": 3, "feature_dim": 4}}),
])
def test_pruned_model_equals_masked_heads(overrides):
    config = tiny(**overrides)
    model = build_model(config).eval()
    batch = seq2seq_batch() if config.is_seq2seq else torch.randint(3, VOCAB, (3, 10))
    kept = select_heads(model, weight_importance(model), 0.5)
    expected = masked_outputs(model, config, kept, batch)
    with HeadGates(model) as gates:
        for name, heads in kept.items():
            gates[name].zero_()[heads] = 1.0
        expected_tokens = greedy(model, config, batch)
    new_config = prune_heads(model, config, 0.5, weight_importance(model))
    assert sum(m.heads for m in attention_modules(model).values()) < 4 * len(kept)
    torch.testing.assert_close(run(model, config, batch), expected, rtol=1e-5, atol=1e-5)
    assert greedy(model, config, batch) == expected_tokens  # incremental decoding through the caches
    assert new_config.pruned_heads == {n: h for n, h in kept.items() if len(h) < 4}


def test_pruned_model_is_smaller_and_round_trips(tmp_path):
    config = tiny(kv_heads=2)
    model = build_model(config).eval()
    batch = seq2seq_batch()
    numel_before, _ = state_size(model)
    new_config = prune_heads(model, config, 0.5, head_importance(model, [batch]))
    numel_after, _ = state_size(model)
    assert numel_after < numel_before
    expected = model(*batch)
    save_checkpoint(tmp_path / "pruned", model, new_config)
    loaded = load_checkpoint(tmp_path / "pruned")
    assert loaded.config.pruned_heads == new_config.pruned_heads
    assert state_size(loaded.model)[0] == numel_after
    assert torch.equal(loaded.model(*batch), expected)


def test_gqa_prunes_whole_groups_least_important_first():
    config = tiny(heads=4, kv_heads=2, encoder={"layers": 1}, decoder={"layers": 1})
    model = build_model(config).eval()
    names = list(attention_modules(model))
    importance = {name: torch.tensor([5.0, 5.0, 1.0, 1.0]) for name in names}
    importance[names[0]] = torch.tensor([0.1, 0.1, 9.0, 9.0])  # group 0 is the weak one here
    kept = select_heads(model, importance, 0.5)
    assert kept[names[0]] == [2, 3] and all(kept[n] == [0, 1] for n in names[1:])
    module = attention_modules(model)[names[0]]
    with pytest.raises(ConfigError, match="whole key/value groups"):
        keep_heads(module, [0, 2])
    keep_heads(module, [2, 3])
    d = module.head_dim
    assert (module.heads, module.kv_heads) == (2, 1)
    assert module.qkv_proj.weight.shape == ((2 + 2 * 1) * d, 32) and module.out_proj.weight.shape == (32, 2 * d)


def test_prune_again_keeps_original_head_ids(tmp_path):
    config = tiny(encoder={"layers": 1}, decoder={"layers": 1})
    model = build_model(config).eval()
    batch = seq2seq_batch()
    config = prune_heads(model, config, 0.25, weight_importance(model))
    config = prune_heads(model, config, 0.25, weight_importance(model))
    kept = {name: module.heads for name, module in attention_modules(model).items()}
    assert sum(kept.values()) == 12 - 3 - 2  # the fraction counts the heads still there: 25% of 12, then of 9
    assert {name: len(heads) for name, heads in config.pruned_heads.items()} == {
        name: n for name, n in kept.items() if n < 4}
    save_checkpoint(tmp_path / "p2", model, config)
    assert torch.equal(load_checkpoint(tmp_path / "p2").model(*batch), model(*batch))


def test_importance_matches_finite_differences():
    """|∂L/∂ξ_h| from autograd against a central difference of the loss in the gate."""
    config = tiny(encoder={"layers": 1}, decoder={"layers": 1})
    model = build_model(config).eval().double()
    batch = seq2seq_batch()
    importance = head_importance(model, [batch])
    name, head, eps = "decoder.layers.0.sublayers.1.body", 2, 1e-5
    losses = []
    with HeadGates(model) as gates, torch.no_grad():
        for sign in (1, -1):
            gates[name][head] = 1 + sign * eps
            losses.append(float(batch_loss(model, batch)))
    assert importance[name][head].item() == pytest.approx(abs(losses[0] - losses[1]) / (2 * eps), rel=1e-4)


def test_bad_pruned_heads_config_is_a_clear_error():
    config = tiny(pruned_heads={"decoder.layers.9.sublayers.0.body": [0]})
    with pytest.raises(ConfigError, match="not an attention module"):
        build_model(config)
    with pytest.raises(ConfigError, match="distinct heads"):
        build_model(tiny(pruned_heads={"encoder.layers.0.sublayers.0.body": [7]}))


def test_narrowed_alibi_keeps_its_slopes_for_the_folded_kernel_path():
    from hybridformer.attention import ALiBi, build_attention
    from hybridformer.attention.head_subset import HeadSubsetKernel

    alibi = ALiBi(4)
    positions = torch.arange(6)
    bias = alibi(positions, positions)
    narrowed = HeadSubsetKernel(build_attention("full"), [0, 2])._narrow(bias)
    torch.testing.assert_close(narrowed.slopes, bias.slopes[[0, 2]])
    torch.testing.assert_close(narrowed.dense(), bias.dense()[[0, 2]])
