"""Dynamic int8 quantization: PyTorch's numerics, close to float, exact save/load round trip."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

from hybridformer import ModelConfig, build_model, load_checkpoint, quantized, save_checkpoint
from hybridformer.compress import Int8Linear, quantize_dynamic_int8, quantize_model, state_size
from hybridformer.decoding import ModelScorer, greedy_search
from hybridformer.errors import ConfigError
from hybridformer.quantized import CLIP_RATIOS, int8_per_channel


def tiny(**overrides) -> ModelConfig:
    base = dict(vocab_size=40, d_model=32, heads=4, kv_heads=2, ffn_dim=64, dropout=0.0, position="rope",
                encoder={"layers": 2}, decoder={"layers": 2})
    return ModelConfig(**{**base, **overrides})


def batch():
    src, tgt = torch.randint(3, 40, (3, 9)), torch.randint(3, 40, (3, 6))
    src[2, -4:] = 0
    return src, tgt


@pytest.mark.parametrize("vnni", [True, False])
def test_int8_linear_matches_pytorch_dynamic_quantization(monkeypatch, vnni):
    """With VNNI: torch.ao's weights and kernel call, exactly, with 8-bit activations. Without: the weights keep
    7 bits (the observer's values for the range [-64, 63]), so the activations can keep 8 (see the next test)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    monkeypatch.setattr(quantized, "_VNNI", vnni)
    float_model = nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = quantize_dynamic(float_model, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
    ours = copy.deepcopy(float_model)
    ours[0], ours[2] = (Int8Linear.from_linear(layer) for layer in (float_model[0], float_model[2]))
    weight, _ = reference[0]._packed_params._weight_bias()
    peak = float_model[0].weight.abs().amax(1)
    if vnni:
        assert torch.equal(ours[0].weight_int8, weight.int_repr())
        assert torch.equal(ours[0].weight_scale, weight.q_per_channel_scales())
        packed = reference[0]._packed_params._packed_params
    else:
        assert torch.equal(ours[0].weight_int8.abs().amax(1), torch.full((24,), 63, dtype=torch.int8))  # peaks kept
        torch.testing.assert_close(ours[0].weight_scale.float(), peak / 63)
        expected = (float_model[0].weight / (peak / 63)[:, None]).round()
        assert (ours[0].weight_int8.float() - expected).abs().max() <= 1 and ours[0].weight_int8.abs().max() <= 63
        packed = ours[0].packed()
    assert ours[0].reduce_range is False  # 8-bit activations either way
    x = torch.randn(1, 16)  # one row (a decoding step at batch 1): the kernel call as torch.ao makes it
    assert torch.equal(ours[0](x), torch.ops.quantized.linear_dynamic(x, packed, False))
    assert not ours[0].bias.requires_grad
    assert torch.equal(copy.deepcopy(ours)(x), ours(x))  # ensembles/benchmarks copy models


def test_weights_give_up_a_bit_without_vnni_unless_asked_for_8(monkeypatch):
    """Without VNNI the weights keep 7 bits (the activations then keep 8); SmoothQuant moves the activations'
    outliers into the weights, so a calibrated model asks for 8-bit weights (and its activations keep 7)."""
    from hybridformer.quantized import quantize_linears

    monkeypatch.setattr(quantized, "_VNNI", False)
    linear = nn.Linear(16, 24)
    plain = quantize_linears(nn.Sequential(copy.deepcopy(linear)), "dynamic_int8")[0]
    smoothed = quantize_linears(nn.Sequential(copy.deepcopy(linear)), "dynamic_int8", weight_bits=8)[0]
    assert plain.weight_int8.abs().max() == 63 and not plain.reduce_range
    assert smoothed.weight_int8.abs().max() >= 127 and smoothed.reduce_range


def test_int8_products_do_not_saturate():
    """The worst case for FBGEMM's int16 pair sums without VNNI: every weight at a row's peak, every activation at
    its largest. Weights quantized here (7 bits without VNNI) take 8-bit activations and stay exact to rounding; 8-bit
    weights (a VNNI CPU's checkpoint, or SmoothQuant's) take 7-bit activations where the CPU has no VNNI. Either
    with 8 bits on both sides saturates on such a CPU (65 instead of 188 here)."""
    linear = nn.Linear(64, 4, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([1.0, -1.0, 1.0, 1.0])[:, None].expand(4, 64))
    x = torch.full((1, 64), 3.0)
    x[0, 0] = -1.0  # a zero point away from 0, so the large activations quantize near 255
    expected = x @ linear.weight.T
    quantized_here = Int8Linear.from_linear(linear)
    eight_bit = Int8Linear.from_linear(linear, weight_bits=8)
    assert eight_bit.weight_int8.abs().max() == 127 and eight_bit.reduce_range == (not quantized._VNNI)
    for layer in (quantized_here, eight_bit):
        torch.testing.assert_close(layer(x), expected, rtol=0.02, atol=0.05)


def test_clip_search_picks_the_scale_of_least_error():
    # heavy-tailed rows, as trained weights are
    torch.manual_seed(0)
    weight = torch.distributions.Laplace(0.0, 0.02).sample((3, 2048))
    values, scale = int8_per_channel(weight, clip=True)
    peak_values, peak_scale = int8_per_channel(weight, clip=False)
    assert torch.equal(peak_scale, weight.abs().amax(1) / 127.5)

    def error(values, scale):
        return ((values.float() * scale[:, None] - weight) ** 2).sum(1)

    assert (error(values, scale) <= error(peak_values, peak_scale)).all()
    assert (error(values, scale) < 0.98 * error(peak_values, peak_scale)).any()  # a row clipped at a gain
    for ratio in CLIP_RATIOS:  # by hand: no candidate scale does better than the chosen one
        trial_scale = peak_scale * ratio
        trial = (weight / trial_scale[:, None]).round().clamp(-128, 127)
        assert (error(trial, trial_scale) >= error(values, scale) - 1e-9).all()


def test_int8_activations_get_one_scale_per_row():
    layer = quantize_dynamic_int8(nn.Sequential(nn.Linear(64, 32)))[0]
    x = torch.randn(12, 64) * torch.tensor([[1e-3], [1.0], [1e3]]).repeat(4, 1)  # rows of very different sizes
    expected = x @ (layer.weight_int8.float() * layer.weight_scale[:, None].float()).T + layer.bias
    # each row keeps ~1% accuracy: with one scale for all rows the small ones would quantize to zero
    assert ((layer(x) - expected).norm(dim=-1) / expected.norm(dim=-1)).max() < 0.02


def test_int8_rows_share_one_scale_only_while_their_peaks_lie_within_2x():
    """Many rows (a beam step) share the kernel's one scale while none would lose more than one bit by it."""
    layer = quantize_dynamic_int8(nn.Sequential(nn.Linear(64, 32)))[0]
    x = torch.randn(12, 64)
    x = x / x.abs().amax(-1, keepdim=True)  # every row's peak is 1
    close, apart = x * torch.linspace(1.0, 1.9, 12)[:, None], x * torch.linspace(1.0, 2.5, 12)[:, None]
    assert torch.equal(layer(close), layer.multiply(close))
    assert not torch.equal(layer(apart), layer.multiply(apart))  # rescaled row by row
    assert torch.equal(layer(apart[:8]), layer.multiply(apart[:8]))  # a decoding step's few rows always share


def test_quantized_model_stays_close_to_float():
    config = tiny()
    model = build_model(config).eval()
    src, tgt = batch()
    expected = model(src, tgt)
    quantized, new_config = quantize_model(copy.deepcopy(model), config)
    got = quantized(src, tgt)
    assert new_config.quantization == "dynamic_int8"
    assert not any(isinstance(m, nn.Linear) for m in quantized.modules())
    # int8 weights and activations: errors of about 1% of the logit scale, not exact equality
    assert (got - expected).abs().max() <= 0.05 * expected.abs().max()
    assert torch.nn.functional.cosine_similarity(got.flatten(), expected.flatten(), dim=0) > 0.999


def test_quantized_checkpoint_round_trips_and_decodes(tmp_path):
    config = tiny()
    model = build_model(config).eval()
    _, float_bytes = state_size(model)
    quantized, new_config = quantize_model(model, config)
    src, tgt = batch()
    expected = quantized(src, tgt)
    save_checkpoint(tmp_path / "int8", quantized, new_config)
    loaded = load_checkpoint(tmp_path / "int8")
    assert loaded.config.quantization == "dynamic_int8"
    assert isinstance(loaded.model.decoder.layers[0].sublayers[0].body.qkv_proj, Int8Linear)
    assert torch.equal(loaded.model(src, tgt), expected)
    assert state_size(loaded.model)[1] < float_bytes
    scorer = ModelScorer(loaded.model)
    tokens = greedy_search(scorer, scorer.init_state(src), torch.full((3, 1), 1), eos_id=2, max_new_tokens=5)
    assert len(tokens) == 3


def test_pruned_then_quantized_round_trips(tmp_path):
    from hybridformer.compress import prune_heads, weight_importance

    config = tiny(arch="decoder_lm", position="alibi")
    model = build_model(config).eval()
    config = prune_heads(model, config, 0.5, weight_importance(model))
    model, config = quantize_model(model, config)
    tokens = torch.randint(3, 40, (2, 8))
    save_checkpoint(tmp_path / "both", model, config)
    assert torch.equal(load_checkpoint(tmp_path / "both").model(tokens), model(tokens))
    with pytest.raises(ConfigError, match="already quantized"):
        quantize_model(model, config)
    with pytest.raises(ConfigError, match="quantized"):
        prune_heads(model, config, 0.5, {})
