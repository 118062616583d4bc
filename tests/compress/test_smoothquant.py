"""SmoothQuant calibration before dynamic int8: exact folding in float, more accurate int8 on activation
outliers, and the `quantize --calibrate` command."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from hybridformer import ModelConfig, build_model, load_checkpoint
from hybridformer.compress import quantize_model
from hybridformer.compress.smooth import activation_peaks, smooth
from hybridformer.errors import ConfigError
from hybridformer.quantized import quantize_linears

from ..conftest import assert_one_line_error, run_entry

MODELS = {
    # GQA (a value head shared by two query heads), gated FFN, RMSNorm, tied vocabulary projection
    "decoder_lm": dict(arch="decoder_lm", position="rope", heads=4, kv_heads=2, activation="swiglu", norm="rmsnorm",
                       decoder={"layers": 2}),
    # LayerNorm with a bias, a plain ReLU FFN (left alone), cross-attention (left alone)
    "encoder_decoder": dict(encoder={"layers": 1}, decoder={"layers": 1}, heads=4),
}


def outlier_model(arch: str) -> tuple[nn.Module, ModelConfig]:
    """A tiny model whose activations have a few channels ~30x the rest (an LLM's outlier channels)."""
    torch.manual_seed(0)
    config = ModelConfig(**{**dict(vocab_size=48, d_model=64, ffn_dim=128, dropout=0.0), **MODELS[arch]})
    model = build_model(config).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
                module.weight[:3] *= 30.0
    return model, config


def forward(model: nn.Module, config: ModelConfig, tokens: torch.Tensor) -> torch.Tensor:
    return model(tokens) if config.arch == "decoder_lm" else model(tokens, tokens)


def calibration(config: ModelConfig) -> list:
    batches = [torch.randint(3, 48, (4, 12)) for _ in range(2)]
    return batches if config.arch == "decoder_lm" else [(b, b) for b in batches]


@pytest.mark.parametrize("arch", MODELS)
def test_smoothing_leaves_the_float_model_unchanged(arch):
    model, config = outlier_model(arch)
    tokens = torch.randint(3, 48, (2, 9))
    with torch.no_grad():
        expected = forward(model, config, tokens)
    smoothed = copy.deepcopy(model)
    embedding = smoothed.output.weight  # tied to the vocabulary projection
    before = embedding.clone()
    # per layer norm->qkv, values->out, norm->ffn (and up->down when gated), then final norm->vocabulary
    count = smooth(smoothed, activation_peaks(smoothed, calibration(config)), alpha=0.5)
    assert count == {"decoder_lm": 2 * 4 + 1, "encoder_decoder": 3 + 3 + 1}[arch]
    changed = [n for n, p in smoothed.named_parameters() if not torch.equal(p, model.get_parameter(n))]
    assert changed
    with torch.no_grad():
        got = forward(smoothed, config, tokens)
    assert (got - expected).abs().max() <= 1e-5 * max(1.0, expected.abs().max())
    assert torch.equal(embedding, before)  # the vocabulary projection was untied, the embedding kept


@pytest.mark.parametrize("arch", MODELS)
def test_calibration_makes_int8_more_accurate_on_outliers(arch):
    model, config = outlier_model(arch)
    tokens = torch.randint(3, 48, (2, 9))
    with torch.no_grad():
        expected = forward(model, config, tokens)
        # the same weight bits as the calibrated model (8), so only the smoothing differs (without VNNI an
        # uncalibrated model gets 7-bit weights and 8-bit activations: tests/compress/test_quantization.py)
        plain = quantize_linears(copy.deepcopy(model), "dynamic_int8", weight_bits=8)
        smoothed, new_config = quantize_model(copy.deepcopy(model), config, "int8", calibration=calibration(config))
        errors = [(forward(m, config, tokens) - expected).abs().max() for m in (plain, smoothed)]
    assert new_config.quantization == "dynamic_int8"  # the same format: smoothing changed only the weights
    assert errors[1] < 0.7 * errors[0]


def test_calibration_is_for_quantized_activations_only():
    model, config = outlier_model("decoder_lm")
    with pytest.raises(ConfigError, match="--calibrate applies to --scheme int8"):
        quantize_model(model, config, "bf16", calibration=calibration(config))
    with pytest.raises(ConfigError, match="--alpha must be between 0 and 1"):
        quantize_model(model, config, "int8", calibration=calibration(config), alpha=1.5)


def test_quantize_cli_calibrates_and_the_result_loads(tmp_path, tiny_checkpoint):
    base = tiny_checkpoint("decoder_lm", d_model=32, ffn_dim=64, activation="swiglu", norm="rmsnorm")
    text = tmp_path / "calibration.txt"
    text.write_text("the cat sat on the mat\na dog ran\n")
    result = run_entry("quantize", base, "--calibrate", text, "--alpha", "0.6", "--out", tmp_path / "int8")
    assert result.returncode == 0, result.stderr
    loaded = load_checkpoint(tmp_path / "int8")
    assert loaded.config.quantization == "dynamic_int8"
    note = json.loads((tmp_path / "int8" / "meta.json").read_text())["compression"][-1]
    assert note["smoothquant"] == {"alpha": 0.6, "calibration": [str(text)]}
    bad = run_entry("quantize", base, "--scheme", "int4", "--calibrate", text, "--out", tmp_path / "int4")
    assert_one_line_error(bad, 2, "--calibrate")
