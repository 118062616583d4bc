"""``bench decode`` on a tiny Llama-shaped checkpoint: every cell measured, fp32 paths identical, JSON + table."""

from __future__ import annotations

import json

import pytest

from hybridformer import ModelConfig, build_model, save_checkpoint
from hybridformer.bench.decode import _peak_memory, make_prompts
from hybridformer.bench.decode_contenders import Setup, Spec, contenders
from hybridformer.errors import ConfigError

from ..conftest import run_cli


@pytest.fixture
def llama_checkpoint(tmp_path, tiny_tokenizer):
    cfg = ModelConfig(arch="decoder_lm", vocab_size=tiny_tokenizer.get_vocab_size(), d_model=64, heads=4, kv_heads=2,
                      ffn_dim=128, dropout=0.0, activation="swiglu", norm="rmsnorm", position="rope", embed_scale=False,
                      attention_bias=False, ffn_bias=False, decoder={"layers": 2})
    return save_checkpoint(tmp_path / "lm", build_model(cfg).eval(), cfg, tiny_tokenizer)


def test_bench_decode_measures_every_contender(tmp_path, llama_checkpoint, monkeypatch, capsys, one_thread):
    pytest.importorskip("transformers")
    pytest.importorskip("ctranslate2")
    (tmp_path / "calibration.txt").write_text("the cat sat on the mat\na dog ran\n")
    code, out, err = run_cli(monkeypatch, capsys, "bench", "decode", llama_checkpoint, "--formats", "fp32,int8",
                             "--peers", "transformers,ct2,llama.cpp", "--prompts", "2", "--prompt-len", "4",
                             "--new-tokens", "3", "--beam", "2", "--rounds", "2", "--no-memory", "--out",
                             tmp_path / "report", "--calibrate", tmp_path / "calibration.txt")
    assert code == 0, err
    report = json.loads((tmp_path / "report" / "decode.json").read_text())
    assert report["settings"]["calibrate"] == str(tmp_path / "calibration.txt")  # int8 was smoothed on it
    rows = {row["name"]: row for row in report["rows"]}
    assert report["fp32_identical"] is True
    for name in ("hybridformer torch fp32", "transformers fp32", "CTranslate2 direct float32"):
        assert rows[name]["identical"] is True, name
    for name in ("hybridformer torch fp32", "hybridformer torch int8", "transformers fp32", "CTranslate2 direct int8"):
        assert all(rows[name]["tokens_per_s"][m] > 0 for m in ("greedy_b1", "greedy_batch", "beam", "prefill"))
    assert 0 <= rows["hybridformer torch int8"]["agreement"] <= 1
    skipped = rows["llama.cpp F32"]["skipped"]  # llama-cpp-python is optional; this tokenizer has no GGUF form
    assert not skipped or "not installed" in skipped or "byte-level BPE" in skipped
    assert "| hybridformer torch int8 |" in (tmp_path / "report" / "decode.md").read_text()
    assert "| hybridformer torch fp32 |" in out


def test_peak_memory_is_measured_in_a_fresh_process(tmp_path, llama_checkpoint):
    prompts = make_prompts(llama_checkpoint, 2, 4)
    assert _peak_memory(Spec("torch", "int8"), Setup(llama_checkpoint, tmp_path, 1), prompts, 2) > 50


def test_bad_choices_are_refused(tmp_path, llama_checkpoint):
    with pytest.raises(ConfigError, match="--formats: unknown fp8"):
        contenders(["torch"], ["fp8"], [])
    with pytest.raises(ConfigError, match="--peers: unknown vllm"):
        contenders(["torch"], ["fp32"], ["vllm"])
    (tmp_path / "short.txt").write_text("the cat sat on the mat\n")
    with pytest.raises(ConfigError, match="holds .* tokens; 4 prompts of 50 need 200"):
        make_prompts(llama_checkpoint, 4, 50, text=tmp_path / "short.txt")
    assert len(make_prompts(llama_checkpoint, 2, 3, text=tmp_path / "short.txt")[1]) == 3
