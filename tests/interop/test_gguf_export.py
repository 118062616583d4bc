"""``export --to gguf``: llama.cpp names, permutation and vocabulary, checked by reading the file back with
``convert`` (f32: identical weights, config and token ids) and by refusing what llama.cpp cannot run."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("gguf")
pytest.importorskip("transformers")

from hybridformer import ModelConfig, build_model, convert, save_checkpoint  # noqa: E402
from hybridformer.checkpoint import load_tokenizer, load_weights  # noqa: E402
from hybridformer.errors import ConfigError  # noqa: E402
from hybridformer.interop.gguf import hf_name, permute, unpermute  # noqa: E402
from hybridformer.interop.gguf_export import export_gguf  # noqa: E402

from ..conftest import TINY_TEXT, assert_one_line_error, run_entry  # noqa: E402

LAYOUTS = {
    "llama": dict(attention_bias=False),
    "qwen2": dict(attention_bias=False, qkv_bias=True),
}


@pytest.fixture(scope="module")
def byte_bpe():
    """A byte-level BPE tokenizer (GPT-2 style) trained in-test: <pad>=0, <s>=1, </s>=2."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(TINY_TEXT, trainer)
    return tokenizer


def checkpoint(path, tokenizer, **overrides):
    cfg = ModelConfig(**{**dict(arch="decoder_lm", vocab_size=tokenizer.get_vocab_size(), d_model=32, heads=4,
                                kv_heads=2, ffn_dim=64, dropout=0.0, activation="swiglu", norm="rmsnorm",
                                position="rope", embed_scale=False, ffn_bias=False, decoder={"layers": 2}),
                         **overrides})
    model = build_model(cfg).eval()
    with torch.no_grad():  # norms away from 1, so a mixed-up norm shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return save_checkpoint(path, model, cfg, tokenizer)


def test_the_reader_inverts_the_gguf_packages_names_and_permutation():
    from gguf import MODEL_ARCH, get_tensor_name_map

    names = get_tensor_name_map(MODEL_ARCH.LLAMA, 4)
    for hf in ("model.layers.3.self_attn.q_proj.weight", "model.layers.0.mlp.down_proj.weight",
               "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"):
        assert hf_name(names.get_name(hf, try_suffixes=(".weight",))) == hf
    weight = torch.randn(24, 5)
    assert torch.equal(unpermute(permute(weight, 3), 3), weight)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_f32_export_round_trips_through_convert(tmp_path, byte_bpe, layout):
    source = checkpoint(tmp_path / "ckpt", byte_bpe, **LAYOUTS[layout])
    calls = []
    file = export_gguf(source, tmp_path / "model.gguf", progress=lambda done, total: calls.append((done, total)))
    back = convert(file, tmp_path / "back")
    ours, theirs = load_weights(source), load_weights(back)
    assert set(ours) == set(theirs)
    assert calls == [(done, len(calls)) for done in range(1, len(calls) + 1)] and len(calls) >= len(ours)
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name
    before, after = (json.loads((p / "config.json").read_text()) for p in (source, back))
    assert after.pop("norm_eps") == pytest.approx(before.pop("norm_eps"), rel=1e-6)  # GGUF stores a float32
    assert {k: (v, after.get(k)) for k, v in before.items() if after.get(k) != v} == {}
    text = "the cat sat on the mat, 42 times!"
    assert load_tokenizer(back).encode(text).ids == byte_bpe.encode(text).ids


# llama.cpp's gemma3: a global layer every sixth, local RoPE base 10k, queries scaled by 1/sqrt(head_dim)
GEMMA3 = dict(num_hidden_layers=6, layer_types=None, query_pre_attn_scalar=16,
              rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                               "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}})
MODERN = {"qwen3": {"attention_bias": False}, "gemma3": GEMMA3, "lfm2": {}}  # llama.cpp's qwen3: no o_proj bias


@pytest.mark.parametrize("kind", MODERN)
def test_modern_layouts_round_trip_through_gguf(tmp_path, byte_bpe, kind):
    """Qwen3 (QK-norm), Gemma 3 (sandwich 1 + w norms, local/global layers) and LFM2 (short convolutions, per-layer
    KV head counts) converted from transformers, written as GGUF and converted back: the same model in f32."""
    from interop.hf_tiny import save_tiny

    torch.manual_seed(0)
    _, folder = save_tiny(kind, tmp_path / "hf", vocab_size=byte_bpe.get_vocab_size(), **MODERN[kind])
    byte_bpe.save(str(folder / "tokenizer.json"))
    source = convert(folder, tmp_path / "ckpt")
    back = convert(export_gguf(source, tmp_path / "model.gguf"), tmp_path / "back")
    ours, theirs = load_weights(source), load_weights(back)
    assert set(ours) == set(theirs)
    for name in ours:  # Gemma's norms pass through 1 + w as llama.cpp stores them: one rounding
        torch.testing.assert_close(theirs[name], ours[name], rtol=0, atol=3e-7 if kind == "gemma3" else 0)
    before, after = (json.loads((p / "config.json").read_text()) for p in (source, back))
    assert after.pop("norm_eps") == pytest.approx(before.pop("norm_eps"), rel=1e-6)
    assert {k: (v, after.get(k)) for k, v in before.items() if after.get(k) != v} == {}


@pytest.mark.parametrize("kind", ["falcon-h1", "falcon-h1-nonorm"])
def test_falcon_h1_round_trips_through_gguf(tmp_path, byte_bpe, kind):
    """Falcon-H1 as llama.cpp's converter writes it (A = -exp(A_log), (heads, 1) shapes, grouped norm, the embedding
    and head multipliers folded into their weights): converted back, the same model (A_log within float32
    rounding; the scan's chunk size, a speed knob, is not in GGUF)."""
    from interop.hf_tiny import save_tiny

    from hybridformer import load_checkpoint

    torch.manual_seed(0)
    _, folder = save_tiny(kind, tmp_path / "hf", vocab_size=byte_bpe.get_vocab_size(), mamba_norm_before_gate=False,
                          mamba_proj_bias=False, projectors_bias=False, attention_bias=False)  # llama.cpp's: none
    byte_bpe.save(str(folder / "tokenizer.json"))
    source = load_checkpoint(convert(folder, tmp_path / "ckpt"))
    back = load_checkpoint(convert(export_gguf(source.path, tmp_path / "model.gguf"), tmp_path / "back"))
    tokens = torch.randint(3, byte_bpe.get_vocab_size(), (2, 11))
    with torch.no_grad():
        assert (back.model(tokens) - source.model(tokens)).abs().max() < 1e-5
    assert back.config.decoder.ssm.output_norm == source.config.decoder.ssm.output_norm
    assert back.config.decoder.layer == "parallel_mamba2"


def test_q8_0_is_smaller_and_close(tmp_path, byte_bpe):
    source = checkpoint(tmp_path / "ckpt", byte_bpe, attention_bias=False)
    f32 = export_gguf(source, tmp_path / "f32.gguf")
    q8 = export_gguf(source, tmp_path / "q8.gguf", quantization="q8_0")
    assert q8.stat().st_size < 0.6 * f32.stat().st_size
    ours, theirs = load_weights(source), load_weights(convert(q8, tmp_path / "back"))
    for name in ours:
        assert (ours[name] - theirs[name]).abs().max() <= 0.01 * ours[name].abs().max() + 1e-6, name


def test_what_llama_cpp_cannot_run_is_refused(tmp_path, byte_bpe, tiny_tokenizer):
    window = checkpoint(tmp_path / "window", byte_bpe, attention_bias=False,
                        decoder={"layers": 1, "attention": {"name": "sliding_window", "window": 8}})
    with pytest.raises(ConfigError, match="attends to the whole context"):
        export_gguf(window, tmp_path / "w.gguf")
    conv = checkpoint(tmp_path / "conv", byte_bpe, attention_bias=False, decoder={"layers": 1, "layer": "conformer"})
    with pytest.raises(ConfigError, match="decoder.layer='conformer'"):
        export_gguf(conv, tmp_path / "c.gguf")
    spm = checkpoint(tmp_path / "spm", tiny_tokenizer, attention_bias=False)
    result = run_entry("export", spm, "--to", "gguf", "--quantization", "q8_0", "--out", tmp_path / "s.gguf")
    assert_one_line_error(result, 2, "byte-level BPE")
    assert not (tmp_path / "s.gguf").exists()


def test_granite_hybrid_round_trips_through_gguf(tmp_path, byte_bpe):
    """Granite-4.0-H as llama.cpp's granitehybrid: Mamba-2 layers marked by 0 key/value heads, the fused FFN split
    into ffn_gate and ffn_up, q/k permuted, the multipliers as *_scale keys, RoPE switched on by
    rope.scaling.finetuned. Converted back: the same tensors (A_log within float32 rounding of -exp) and model."""
    from interop.hf_tiny import save_tiny

    from hybridformer import load_checkpoint

    torch.manual_seed(0)
    _, folder = save_tiny("granite-hybrid", tmp_path / "hf", vocab_size=byte_bpe.get_vocab_size())
    byte_bpe.save(str(folder / "tokenizer.json"))
    source = load_checkpoint(convert(folder, tmp_path / "ckpt"))
    file = export_gguf(source.path, tmp_path / "model.gguf")
    from gguf import GGUFReader

    names = {t.name for t in GGUFReader(str(file)).tensors}
    assert {"blk.0.ffn_gate.weight", "blk.0.ffn_up.weight", "blk.0.ffn_down.weight", "blk.0.ssm_dt.bias",
            "blk.1.attn_q.weight"} <= names and not any("shexp" in n for n in names)
    back = load_checkpoint(convert(file, tmp_path / "back"))
    ours, theirs = load_weights(source.path), load_weights(back.path)
    assert set(ours) == set(theirs)
    for name in ours:
        torch.testing.assert_close(theirs[name], ours[name], rtol=1e-6 if name.endswith("A_log") else 0, atol=0)
    before, after = source.config, back.config
    assert after.decoder.layer_types == before.decoder.layer_types == {1: "transformer"}
    assert (after.position, after.embed_multiplier, after.output_scale) == ("rope", 1.5, before.output_scale)
    assert after.score_scale == pytest.approx(0.3) and after.residual_multiplier == pytest.approx(0.7)
    tokens = torch.randint(3, byte_bpe.get_vocab_size(), (2, 9))
    with torch.no_grad():
        assert (back.model(tokens) - source.model(tokens)).abs().max() < 1e-5


def test_gpt2_round_trips_through_gguf(tmp_path, byte_bpe):
    """GPT-2 as llama.cpp's gpt2: learned positions, LayerNorms with biases, the Conv1D weights transposed; the
    pad outside the vocabulary stays outside. Converted back: identical weights and config."""
    from interop.hf_tiny import save_tiny

    torch.manual_seed(0)
    _, folder = save_tiny("gpt2", tmp_path / "hf", vocab_size=byte_bpe.get_vocab_size(), bos_token_id=2,
                          eos_token_id=2)
    byte_bpe.save(str(folder / "tokenizer.json"))
    source = convert(folder, tmp_path / "ckpt")
    back = convert(export_gguf(source, tmp_path / "model.gguf"), tmp_path / "back")
    ours, theirs = load_weights(source), load_weights(back)
    assert set(ours) == set(theirs)
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name
    before, after = (json.loads((p / "config.json").read_text()) for p in (source, back))
    assert after.pop("norm_eps") == pytest.approx(before.pop("norm_eps"), rel=1e-6)
    assert {k: (v, after.get(k)) for k, v in before.items() if after.get(k) != v} == {}


def test_layouts_llama_cpp_reads_otherwise_are_refused_in_one_line(tmp_path, byte_bpe):
    """Phi-3 has no GGUF layout here; what llama.cpp's gemma3 (a global layer every sixth), granitehybrid (no Mamba-2
    projection biases), gpt2 (the tanh GELU), qwen3 (no output-projection bias) and falcon-h1 (no attention biases)
    fix cannot be written otherwise."""
    from interop.hf_tiny import save_tiny

    variants = {"phi3": {}, "gemma3": {}, "granite-hybrid": {"mamba_proj_bias": True},
                "gpt2": {"activation_function": "gelu"}, "qwen3": {"attention_bias": True},
                "falcon-h1": {"mamba_norm_before_gate": False, "mamba_proj_bias": False, "projectors_bias": False}}
    for kind, overrides in variants.items():
        _, folder = save_tiny(kind, tmp_path / kind, vocab_size=byte_bpe.get_vocab_size(), **overrides)
        byte_bpe.save(str(folder / "tokenizer.json"))
        convert(folder, tmp_path / f"{kind}-ckpt")
    result = run_entry("export", tmp_path / "phi3-ckpt", "--to", "gguf", "--out", tmp_path / "f.gguf")
    assert_one_line_error(result, 2, "export --to gguf writes the layouts")
    for kind, message in (("gemma3", "a global layer every 6th"), ("granite-hybrid", "no in/out projection biases"),
                          ("gpt2", "tanh GELU"), ("qwen3", "no output-projection bias"),
                          ("falcon-h1", "ignores the attention biases")):
        with pytest.raises(ConfigError, match=message):
            export_gguf(tmp_path / f"{kind}-ckpt", tmp_path / f"{kind}.gguf")
        assert not (tmp_path / f"{kind}.gguf").exists()
    assert not (tmp_path / "f.gguf").exists()
