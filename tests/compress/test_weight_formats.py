"""int8 / int4 / bf16 linears: each format's decoding step against the eager fp32 step, within the
tolerance its precision allows; exact save/load round trips; every command loads the result."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors import safe_open
from torch import nn

from hybridformer import ModelConfig, build_model, load_checkpoint, save_checkpoint
from hybridformer.attention.base import AttentionKernel
from hybridformer.compress import FORMATS, SCHEMES, quantize_model, state_size
from hybridformer.decoding import ModelScorer
from hybridformer.errors import ConfigError
from hybridformer.longify import longify
from hybridformer.quantized import BF16Linear, fast_bf16, packed_linear
from hybridformer.train.setup import fine_tune_defaults

from ..conftest import assert_one_line_error, run_cli, run_entry

# log-probabilities of the quantized model against fp32, as (largest error / largest value, cosine similarity):
# int8 weights and activations ~1%, int8 weights with bf16 activations less, 4-bit weights ~10% (groups of 32),
# bf16's 8-bit mantissa ~0.5%
TOLERANCE = {"int8": (0.05, 0.999), "int8-weight": (0.03, 0.9995), "int4": (0.25, 0.98), "bf16": (0.02, 0.9999)}
ARCHS = {
    "transformer": dict(position="rope", kv_heads=2),
    "conformer": dict(encoder={"layers": 1, "layer": "conformer"}),
    "decoder_lm": dict(arch="decoder_lm", position="rope", kv_heads=2),
    "sliding_window": dict(arch="decoder_lm", position="rope",
                           decoder={"layers": 2, "attention": {"name": "sliding_window", "window": 4}}),
}


def tiny(arch: str) -> ModelConfig:
    # shapes the int4 kernel takes: input features a multiple of 32, output features of 16
    base = dict(vocab_size=48, d_model=64, heads=4, ffn_dim=128, dropout=0.0, encoder={"layers": 1},
                decoder={"layers": 2})
    return ModelConfig(**{**base, **ARCHS[arch]})


def step_logits(model: nn.Module, config: ModelConfig, prompt: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of a few cached decoding steps (teacher-forced on ``prompt``), stacked."""
    scorer = ModelScorer(model)
    if config.arch == "decoder_lm":
        state, tokens = scorer.init_state(prompt[:, :1]), prompt[:, 1:]
    else:
        state, tokens = scorer.init_state(prompt), prompt
    out = []
    for i in range(tokens.shape[1]):
        log_probs, state = scorer.step(state, tokens[:, : i + 1])
        out.append(log_probs)
    return torch.stack(out, 1)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("arch", ARCHS)
def test_quantized_step_stays_close_to_the_fp32_step(arch, scheme):
    config = tiny(arch)
    model = build_model(config).eval()
    prompt = torch.randint(3, 48, (2, 6))
    with torch.no_grad():
        expected = step_logits(model, config, prompt)
        quantized, new_config = quantize_model(copy.deepcopy(model), config, scheme)
        got = step_logits(quantized, new_config, prompt)
    assert not any(type(m) is nn.Linear for m in quantized.modules())
    finite = expected.isfinite()  # the padding token is masked (-inf) in both
    assert torch.equal(finite, got.isfinite())
    got, expected = got[finite], expected[finite]
    relative, cosine = TOLERANCE[scheme]
    assert (got - expected).abs().max() <= relative * expected.abs().max()
    assert nn.functional.cosine_similarity(got.flatten(), expected.flatten(), dim=0) > cosine


@pytest.mark.skipif(not fast_bf16(), reason="oneDNN's bf16 product needs bf16 units (AVX-512 BF16/AMX); without them "
                    "bf16 weights multiply in fp32, batch-exact only as far as the fp32 engine is")
def test_a_bf16_row_gets_the_same_bits_alone_as_in_a_batch(one_thread):
    """oneDNN sums a one-row bf16 product in another order than a several-row one (seen at SmolLM2's 1536 -> 576
    projection with heavy-tailed activations), which would make a served row's answer depend on its company."""
    gen = torch.Generator().manual_seed(0)
    layer = BF16Linear.from_linear(nn.Linear(1536, 576))
    for _ in range(20):
        rows = torch.randn(4, 1, 1536, generator=gen) * torch.randn(4, 1, 1536, generator=gen).mul(2).exp()
        with torch.no_grad():
            together = layer(rows)
            assert all(torch.equal(layer(rows[i : i + 1]), together[i : i + 1]) for i in range(4))
    expected = nn.functional.linear(rows.bfloat16(), layer.state_dict()["weight"], layer.bias).float()
    torch.testing.assert_close(together, expected, atol=0.02 * expected.abs().max(), rtol=0)

def test_bf16_weights_run_on_a_cpu_without_onednn_bf16(monkeypatch):
    """Without AVX-512 oneDNN has no bf16 product (it failed to create its primitive): the layer holds the bf16
    values once, in fp32, and multiplies in fp32 (emulated bf16 GEMMs crawl, and casting the weight in every call
    was 3.3x slower than fp32), and still saves the same bf16 tensors."""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    linear = nn.Linear(24, 10)
    layer = BF16Linear.from_linear(linear)
    assert layer.weight is None and torch.equal(layer.packed().t(), linear.weight.bfloat16().float())
    x = torch.randn(3, 5, 24)
    with torch.no_grad():
        bf16 = [t.bfloat16().float() for t in (x, linear.weight, linear.bias)]
        out = layer(x)  # fp32 sums of the bf16 values, in MKL's order for its layout: to bf16 rounding
        torch.testing.assert_close(out, nn.functional.linear(*bf16).bfloat16().float(), rtol=8e-3, atol=1e-6)
        assert torch.equal(copy.deepcopy(layer)(x), out)  # a copy holds and computes the same
        again = BF16Linear(24, 10)
        again.load_state_dict(layer.state_dict())
        assert torch.equal(again(x), out)
    assert torch.equal(layer.state_dict()["weight"], linear.weight.bfloat16())


@pytest.mark.parametrize("scheme", SCHEMES)
def test_quantized_checkpoint_round_trips_exactly(tmp_path, scheme, monkeypatch):
    config = tiny("decoder_lm")
    model = build_model(config).eval()
    float_bytes = state_size(model)[1]
    quantized, new_config = quantize_model(model, config, scheme)
    tokens = torch.randint(3, 48, (2, 7))
    expected = quantized(tokens)
    save_checkpoint(tmp_path / scheme, quantized, new_config)
    packs = []
    fmt = FORMATS[SCHEMES[scheme]]
    if hasattr(fmt, "repack"):
        monkeypatch.setattr(fmt, "repack", lambda self, repack=fmt.repack: packs.append(self) or repack(self))
    monkeypatch.setattr(fmt, "from_linear", None)  # loading builds empty layers: nothing quantizes the random init
    loaded = load_checkpoint(tmp_path / scheme)
    if hasattr(fmt, "repack"):  # the loader's one call per layer packs that layer, once
        assert len(packs) == sum(isinstance(m, fmt) for m in loaded.model.modules())
    kernels = [m for m in loaded.model.modules() if isinstance(m, AttentionKernel)]
    bf16_products = scheme in ("bf16", "int4") and fast_bf16()  # where bf16 GEMMs run in hardware
    assert kernels and all(m.product_dtype == (torch.bfloat16 if bf16_products else None) for m in kernels)
    if scheme == "bf16":  # the packed (or, without bf16 units, fp32) copy is the only one
        assert all(m.weight is None for m in loaded.model.modules() if isinstance(m, fmt))
    layer = loaded.model.decoder.layers[0].sublayers[-1].body
    assert loaded.config.quantization == SCHEMES[scheme]
    assert any(isinstance(m, FORMATS[SCHEMES[scheme]]) for m in layer.modules())
    assert torch.equal(loaded.model(tokens), expected)
    assert state_size(loaded.model)[1] < float_bytes
    with safe_open(str(tmp_path / scheme / "model.safetensors"), "pt") as handle:
        dtypes = {handle.get_slice(name).get_dtype() for name in handle.keys()}
    assert {"int4": "U8", "int8": "I8", "int8-weight": "I8", "bf16": "BF16"}[scheme] in dtypes


@pytest.mark.parametrize("fmt", ["dynamic_int8", "bf16", "int4"])
def test_packed_product_is_an_opaque_op_the_compiler_can_trace(fmt):
    """``packed_linear(x, key)`` (what a compiled step calls) is the layer's product, with a fake implementation
    for tracing; a copied layer has a key of its own (its packed weight is packed again)."""
    torch.manual_seed(0)
    layer = FORMATS[fmt].from_linear(nn.Linear(64, 32))
    x = torch.randn(3, 64).to(torch.bfloat16 if fmt != "dynamic_int8" else torch.float32)
    torch.library.opcheck(packed_linear, (x, layer.key), test_utils=("test_schema", "test_faketensor"))
    twin = copy.deepcopy(layer)
    assert twin.key != layer.key
    assert torch.equal(packed_linear(x, twin.key), layer.product(x))


def test_int4_keeps_layers_the_kernel_cannot_take_in_float():
    config = ModelConfig(arch="decoder_lm", vocab_size=40, d_model=32, heads=2, ffn_dim=48, dropout=0.0,
                         decoder={"layers": 1})
    model, _ = quantize_model(build_model(config).eval(), config, "int4")
    kinds = {name: type(m).__name__ for name, m in model.named_modules() if "Linear" in type(m).__name__}
    assert kinds["output"] == "Linear"  # 40 output features: not a multiple of 16
    assert "Int4Linear" in kinds.values()


def test_unknown_scheme_is_refused():
    config = tiny("decoder_lm")
    with pytest.raises(ConfigError, match="--scheme must be one of int8, int8-weight, int4, bf16"):
        quantize_model(build_model(config), config, "fp8")


def test_fine_tuning_a_quantized_checkpoint_is_refused(tmp_path):
    config = tiny("decoder_lm")
    model, new_config = quantize_model(build_model(config).eval(), config, "int8")
    save_checkpoint(tmp_path / "int8", model, new_config)
    with pytest.raises(ConfigError, match="train.init_from: .* holds dynamic_int8 weights"):
        fine_tune_defaults({"train": {"init_from": str(tmp_path / "int8")}})


def test_longify_keeps_the_weight_format(tmp_path):
    config = tiny("decoder_lm")
    model, new_config = quantize_model(build_model(config).eval(), config, "int8")
    save_checkpoint(tmp_path / "int8", model, new_config)
    longify(tmp_path / "int8", tmp_path / "long", attention="sliding_window:window=4")
    long = load_checkpoint(tmp_path / "long")
    tokens = torch.randint(3, 48, (1, 4))  # shorter than the window: the same attention as before
    assert long.config.quantization == "dynamic_int8"
    assert torch.equal(long.model(tokens), model(tokens))


def test_quantize_cli_then_generate_and_evaluate(tmp_path, tiny_checkpoint, monkeypatch, capsys):
    base = tiny_checkpoint("decoder_lm", d_model=32, ffn_dim=64)
    result = run_entry("quantize", base, "--scheme", "int4", "--out", tmp_path / "int4")
    assert result.returncode == 0, result.stderr
    assert "saved" in result.stdout and result.stderr == ""  # torchao's import notices stay quiet
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the cat\na dog\n")
    code, out, err = run_cli(monkeypatch, capsys, "generate", tmp_path / "int4", "--input", prompts,
                             "--max-len-b", "3", "--beam", "2")
    assert code == 0 and len(out.splitlines()) == 2, err
    code, out, err = run_cli(monkeypatch, capsys, "evaluate", tmp_path / "int4", "--ref", prompts, "--metric", "ppl")
    assert code == 0, err
    bad = run_entry("quantize", base, "--scheme", "fp8", "--out", tmp_path / "fp8")
    assert_one_line_error(bad, 2, "--scheme")
