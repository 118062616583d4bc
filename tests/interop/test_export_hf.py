"""``export --to hf``: HF -> hybridformer -> HF gives identical tensors, transformers loads the result with the
same logits, and checkpoints with layers Hugging Face cannot represent are refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from conftest import assert_one_line_error, run_entry  # noqa: E402
from interop.hf_tiny import padded_batch, save_tiny  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from hybridformer import ModelConfig, build_model, convert, save_checkpoint  # noqa: E402
from hybridformer.errors import ConfigError  # noqa: E402
from hybridformer.interop import export, hf_blockers  # noqa: E402


@pytest.mark.parametrize("kind", ["llama", "qwen2", "mistral", "llama-yarn", "gpt2", "lfm2", "granite-hybrid", "qwen3",
                                  "gemma3", "phi3", "phi3-longrope"])
def test_round_trip_identical_tensors_and_logits(kind: str, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    hf, folder = save_tiny(kind, tmp_path / "hf")
    convert(folder, tmp_path / "ours")
    export(tmp_path / "ours", tmp_path / "back", to="hf")
    original, exported = load_file(folder / "model.safetensors"), load_file(tmp_path / "back" / "model.safetensors")
    assert sorted(original) == sorted(exported)
    assert all(torch.equal(original[name], exported[name]) for name in original)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "back").eval()
    assert type(reloaded) is type(hf)
    tokens = padded_batch(96, 0, [11, 6])
    mask = tokens.ne(0).long()
    with torch.no_grad():
        assert torch.equal(reloaded(tokens, attention_mask=mask).logits, hf(tokens, attention_mask=mask).logits)


@pytest.mark.parametrize("kind", ["falcon-h1", "falcon-h1-nonorm"])
def test_falcon_h1_round_trip_with_its_multipliers_folded(kind: str, tmp_path: Path) -> None:
    """Conversion folds Falcon-H1's µP multipliers into the weights, so the export writes them as 1: the export
    computes what the original does, and converting it again gives our tensors back exactly."""
    from transformers import AutoModelForCausalLM

    hf, folder = save_tiny(kind, tmp_path / "hf")
    convert(folder, tmp_path / "ours")
    export(tmp_path / "ours", tmp_path / "back", to="hf")
    config = json.loads((tmp_path / "back" / "config.json").read_text())
    assert config["key_multiplier"] == 1.0 and config["ssm_multipliers"] == [1.0] * 5
    convert(tmp_path / "back", tmp_path / "again")
    ours, again = (load_file(tmp_path / name / "model.safetensors") for name in ("ours", "again"))
    assert sorted(ours) == sorted(again) and all(torch.equal(ours[name], again[name]) for name in ours)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "back").eval()
    tokens = padded_batch(96, 0, [11, 6])
    mask = tokens.ne(0)
    with torch.no_grad():
        diff = reloaded(tokens, attention_mask=mask.long()).logits - hf(tokens, attention_mask=mask.long()).logits
    assert diff[mask].abs().max() < 1e-4


def test_own_llama_style_model_exports(tmp_path: Path) -> None:
    """A model trained in the toolkit with a Llama layout becomes a transformers LlamaForCausalLM."""
    from transformers import AutoModelForCausalLM

    cfg = ModelConfig(arch="decoder_lm", vocab_size=64, d_model=32, heads=4, kv_heads=2, ffn_dim=48, dropout=0.0,
                      activation="swiglu", norm="rmsnorm", position="rope", embed_scale=False, attention_bias=False,
                      ffn_bias=False, tie_embeddings=False, decoder={"layers": 2})
    model = build_model(cfg).eval()
    save_checkpoint(tmp_path / "ckpt", model, cfg)
    result = run_entry("export", tmp_path / "ckpt", "--to", "hf", "--out", tmp_path / "hf")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    tokens = torch.randint(3, 64, (2, 9))
    with torch.no_grad():
        assert (hf(tokens).logits - model(tokens)).abs().max() < 1e-4


@pytest.mark.parametrize(("overrides", "named"), [
    ({"decoder": {"layers": 1, "layer": "conformer"}}, "decoder.layer='conformer'"),
    ({"decoder": {"layers": 1, "attention": {"name": "linear"}}}, "decoder.attention='linear'"),
    ({"residual": "deepnet", "norm_placement": "post"}, "residual='deepnet'"),
    ({"arch": "encoder_decoder"}, "arch='encoder_decoder'"),
    ({"position": "alibi"}, "position='alibi'"),
    ({"decoder": {"layers": 1, "attention": {"name": "full", "rope_base": 500.0}}}, "decoder.attention.rope_base"),
    ({"qk_norm": True}, "qk_norm=True"),
    ({"norm_placement": "sandwich"}, "norm_placement='sandwich'"),
    ({"decoder": {"layers": 2, "layer_rope_scaling": {1: {"type": "yarn", "factor": 2}}}},
     "decoder.layer_rope_scaling"),
])
def test_hybrid_layers_are_refused_by_name(overrides: dict, named: str, tmp_path: Path) -> None:
    base = dict(arch="decoder_lm", vocab_size=40, d_model=16, heads=2, ffn_dim=32, activation="swiglu",
                norm="rmsnorm", position="rope", embed_scale=False, attention_bias=False, ffn_bias=False,
                decoder={"layers": 1})
    cfg = ModelConfig(**(base | overrides))
    assert any(named in problem for problem in hf_blockers(cfg))
    save_checkpoint(tmp_path / "ckpt", build_model(cfg), cfg)
    with pytest.raises(ConfigError, match="cannot export to Hugging Face"):
        export(tmp_path / "ckpt", tmp_path / "out", to="hf")
    assert not (tmp_path / "out").exists()


def test_cli_refusal_is_one_line(tmp_path: Path) -> None:
    cfg = ModelConfig(arch="decoder_lm", vocab_size=40, d_model=16, heads=2, ffn_dim=32,
                      decoder={"layers": 1, "layer": "lightconv"})
    save_checkpoint(tmp_path / "ckpt", build_model(cfg), cfg)
    result = run_entry("export", tmp_path / "ckpt", "--to", "hf", "--out", tmp_path / "out")
    assert_one_line_error(result, 2, "decoder.layer='lightconv'")


@pytest.mark.parametrize(("kind", "hf_class"), [("gemma3", "Gemma3ForCausalLM"), ("qwen3", "Qwen3ForCausalLM")])
def test_fine_tune_without_a_source_type_exports_as_its_layout(kind: str, hf_class: str, tmp_path: Path) -> None:
    """A checkpoint whose meta.json does not name its source (a fine-tune) exports as the type that adopts its
    layout: Qwen3's QK-norm or Gemma's sandwich norms are never dropped into a Llama."""
    hf, folder = save_tiny(kind, tmp_path / "hf")
    ckpt = convert(folder, tmp_path / "ours")
    (ckpt / "meta.json").unlink()
    export(ckpt, tmp_path / "back", to="hf")
    assert json.loads((tmp_path / "back" / "config.json").read_text())["architectures"] == [hf_class]
