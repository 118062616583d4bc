"""RoPE scaling against Hugging Face's own init functions (``ROPE_INIT_FUNCTIONS``), and the new
ModelConfig fields' defaults (old configs build the same models)."""

from __future__ import annotations

import pytest
import torch

from hybridformer import ModelConfig, build_model
from hybridformer.config import parse_config
from hybridformer.errors import ConfigError
from hybridformer.position import LearnedPositions, RotaryEmbedding

transformers = pytest.importorskip("transformers")
from transformers import LlamaConfig  # noqa: E402
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS  # noqa: E402

HEAD_DIM, BASE, MAX_POS = 16, 5000.0, 64

CASES = [
    ({"rope_type": "linear", "factor": 4.0}, {"type": "linear", "factor": 4.0}),
    ({"rope_type": "dynamic", "factor": 2.0}, {"type": "dynamic", "factor": 2.0}),
    ({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": 32},
     {"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_positions": 32}),
    ({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32},
     {"type": "yarn", "factor": 4.0, "original_max_positions": 32}),
    ({"rope_type": "yarn", "factor": 3.0, "beta_fast": 16, "beta_slow": 2, "attention_factor": 1.3,
      "original_max_position_embeddings": 16},
     {"type": "yarn", "factor": 3.0, "beta_fast": 16, "beta_slow": 2, "attention_factor": 1.3,
      "original_max_positions": 16}),
]


def _hf_config(rope: dict) -> LlamaConfig:
    return LlamaConfig(hidden_size=HEAD_DIM * 2, num_attention_heads=2, max_position_embeddings=MAX_POS,
                       rope_parameters={"rope_theta": BASE, **rope})


def _ours(scaling: dict) -> RotaryEmbedding:
    cfg = ModelConfig(arch="decoder_lm", d_model=HEAD_DIM * 2, heads=2, position="rope", rope_base=BASE,
                      max_positions=MAX_POS, rope_scaling=scaling)
    return build_model(cfg).decoder.rope


@pytest.mark.parametrize(("hf", "ours"), CASES, ids=[c[0]["rope_type"] + str(i) for i, c in enumerate(CASES)])
def test_scaled_frequencies_equal_transformers(hf: dict, ours: dict) -> None:
    rope = _ours(ours)
    config = _hf_config(hf)
    for seq_len in (8, MAX_POS, 3 * MAX_POS):  # dynamic scaling starts past max_position_embeddings
        inv_freq, factor = ROPE_INIT_FUNCTIONS[hf["rope_type"]](config, None, seq_len=seq_len)
        positions = torch.arange(seq_len)
        rotation = rope(positions)
        angles = positions.float()[:, None] * inv_freq[None]
        angles = torch.cat([angles, angles], dim=-1)
        assert torch.equal(rotation.cos, angles.cos() * factor)
        assert torch.equal(rotation.sin, angles.sin() * factor)
    assert rope.attention_factor == ROPE_INIT_FUNCTIONS[hf["rope_type"]](config, None)[1]


def test_plain_rope_equals_transformers_default() -> None:
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    hf = LlamaRotaryEmbedding(LlamaConfig(hidden_size=HEAD_DIM * 2, num_attention_heads=2,
                                          rope_parameters={"rope_type": "default", "rope_theta": BASE}))
    positions = torch.arange(40)
    cos, sin = hf(torch.zeros(1), positions[None])
    rotation = RotaryEmbedding(HEAD_DIM, BASE)(positions)
    assert torch.equal(rotation.cos, cos[0]) and torch.equal(rotation.sin, sin[0])


def test_ntk_scales_the_base() -> None:
    ntk = RotaryEmbedding(HEAD_DIM, BASE, scaling="ntk", factor=4.0)
    plain = RotaryEmbedding(HEAD_DIM, BASE * 4.0 ** (HEAD_DIM / (HEAD_DIM - 2)))
    assert torch.equal(ntk.inv_freq, plain.inv_freq)
    assert ntk.inv_freq[0] == 1.0 and ntk.inv_freq[-1] < RotaryEmbedding(HEAD_DIM, BASE).inv_freq[-1]


def test_defaults_build_identical_models() -> None:
    """Configs without the new fields build the same parameters (names, shapes) and outputs as before."""
    torch.manual_seed(0)
    old = ModelConfig(arch="decoder_lm", vocab_size=50, d_model=32, heads=4, ffn_dim=64, position="learned",
                      max_positions=20, dropout=0.0)
    model = build_model(old)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["decoder.absolute.table.weight"] == (20, 32)
    assert all(k + ".bias" in shapes or not k.endswith("proj") for k in shapes)  # biases still there
    assert "decoder.layers.0.sublayers.0.body.qkv_proj.bias" in shapes
    assert model.decoder.layers[0].sublayers[0].norm.eps == 1e-5


def test_explicit_head_dim_and_biases() -> None:
    cfg = ModelConfig(arch="decoder_lm", vocab_size=50, d_model=24, heads=4, kv_heads=2, head_dim=8, ffn_dim=48,
                      position="rope", attention_bias=False, qkv_bias=True, ffn_bias=False, norm="rmsnorm",
                      norm_eps=1e-6, activation="swiglu", dropout=0.0)
    model = build_model(cfg).eval()
    attn = model.decoder.layers[0].sublayers[0].body
    assert attn.qkv_proj.weight.shape == ((4 + 2 * 2) * 8, 24) and attn.qkv_proj.bias is not None
    assert attn.out_proj.weight.shape == (24, 32) and attn.out_proj.bias is None
    assert model.decoder.layers[0].sublayers[1].body.linear1.bias is None
    assert model(torch.randint(3, 50, (2, 7))).shape == (2, 7, 50)


def test_position_offset_reads_later_rows() -> None:
    table = LearnedPositions(10, 4, offset=2)
    assert table.table.num_embeddings == 12
    assert torch.equal(table(torch.arange(3)), table.table.weight[2:5])
    with pytest.raises(ValueError, match="max_positions=10"):
        table(torch.arange(11))


@pytest.mark.parametrize(("data", "match"), [
    ({"position": "sinusoidal", "rope_scaling": {"type": "linear", "factor": 2}}, "rope_scaling applies"),
    ({"position": "rope", "rope_scaling": {"type": "su", "factor": 2}}, "rope_scaling.type"),
    ({"position": "rope", "rope_scaling": {"type": "longrope", "factor": 2}}, "longrope needs both"),
    ({"position": "rope", "rope_scaling": {"type": "linear", "factor": 0}}, "rope_scaling.factor"),
    ({"position": "rope", "heads": 4, "d_model": 32, "head_dim": 7}, "even head dimension"),
])
def test_bad_rope_settings_are_config_errors(data: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_config(ModelConfig, data)
