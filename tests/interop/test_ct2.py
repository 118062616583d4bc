"""CTranslate2 export: greedy tokens and teacher-forced log-probs equal the torch engine's on tiny models of every
supported shape; every shape CTranslate2 cannot run is refused with one line naming it."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_TEXT, run_cli

from hybridformer import ModelConfig, build_model, load_checkpoint, save_checkpoint
from hybridformer.checkpoint import Checkpoint
from hybridformer.data.text import encode_source, encode_target
from hybridformer.engines import GenerationOptions, load_engine
from hybridformer.errors import ConfigError, DataError

pytest.importorskip("ctranslate2", reason="the ct2 extra (pip install 'hybridformer[ct2]') is not installed")

from hybridformer.engines.ct2 import FORCED_SPREAD, _groups, load_ct2_engine  # noqa: E402
from hybridformer.interop.ct2 import ct2_blockers, export_ct2  # noqa: E402

SEQ2SEQ = {
    "prenorm-relu-sinusoidal": {},
    "postnorm-gelu": {"norm_placement": "post", "activation": "gelu"},
    "rmsnorm-swiglu-mqa": {"norm": "rmsnorm", "activation": "swiglu", "heads": 4, "kv_heads": 1},
    "learned-geglu-untied-unscaled": {"position": "learned", "activation": "geglu", "tie_embeddings": False,
                                      "share_embeddings": False, "embed_scale": False},
    "t5-gqa": {"position": "t5", "heads": 4, "kv_heads": 2},
    "learned-offset-no-biases-eps": {"position": "learned", "position_offset": 2, "max_positions": 64,
                                     "attention_bias": False, "ffn_bias": False, "norm_eps": 1e-6},
    "halves-sinusoid-start-id-output-scale": {"sinusoid_layout": "halves", "decoder_start_id": 0,
                                              "output_scale": 0.25, "activation": "geglu_tanh"},
    "t5-pruned-equal": {"position": "t5", "pruned_heads": {
        "encoder.layers.0.sublayers.0.body": [1], "decoder.layers.0.sublayers.0.body": [0],
        "decoder.layers.0.sublayers.1.body": [1]}},
}
LM = {
    "rope-gqa-rmsnorm-swiglu": {"position": "rope", "heads": 4, "kv_heads": 2, "norm": "rmsnorm",
                                "activation": "swiglu"},
    "alibi": {"position": "alibi", "heads": 4},
    "output-scale": {"position": "rope", "output_scale": 0.4},
    "rope-linear-scaling-head-dim": {"position": "rope", "head_dim": 12, "rope_base": 500.0,
                                     "rope_scaling": {"type": "linear", "factor": 2.0}},
    "rope-ntk-llama-like": {"position": "rope", "rope_scaling": {"type": "ntk", "factor": 4.0}, "norm": "rmsnorm",
                            "activation": "swiglu", "attention_bias": False, "ffn_bias": False, "qkv_bias": True},
    "t5": {"position": "t5"},
    "learned-postnorm": {"position": "learned", "norm_placement": "post"},
    "sinusoidal-untied": {"tie_embeddings": False},
    "no-positions-mqa": {"position": "none", "heads": 2, "kv_heads": 1},
    "gelu-tanh-score-scale": {"activation": "gelu_tanh", "score_scale": 0.5},
    "silu-embedding-norm-logits-bias": {"activation": "silu", "layernorm_embedding": True,
                                        "final_logits_bias": True, "tie_embeddings": False},
    "rope-llama3-scaling": {"position": "rope", "max_positions": 8, "rope_scaling": {
        "type": "llama3", "factor": 4.0, "original_max_positions": 4}},
    "rope-yarn-scaling": {"position": "rope", "rope_scaling": {"type": "yarn", "factor": 4.0,
                                                               "original_max_positions": 4}},
}


def make_checkpoint(path, tokenizer, arch: str, **overrides) -> Checkpoint:
    """A tiny model with weights spread wide enough (std 0.5) that greedy search is not a string of ties."""
    layers = {"layers": 1}
    cfg = ModelConfig(**({"arch": arch, "vocab_size": tokenizer.get_vocab_size(), "d_model": 16, "heads": 2,
                          "ffn_dim": 32, "dropout": 0.0, "encoder": layers, "decoder": layers} | overrides))
    model = build_model(cfg).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.5)
    save_checkpoint(path, model, cfg, tokenizer)
    return load_checkpoint(path)


def check_parity(tmp_path, tokenizer, arch: str, overrides: dict) -> None:
    ckpt = make_checkpoint(tmp_path / "ckpt", tokenizer, arch, **overrides)
    ct2 = load_ct2_engine(export_ct2(ckpt, tmp_path / "ct2"))
    torch_decoder = load_engine(ckpt)
    opts = GenerationOptions.parse({"beam": 1, "max_len_a": 0.0, "max_len_b": 12})
    sources = [encode_source(tokenizer, line, ckpt.config) for line in TINY_TEXT[:4]]
    if arch == "decoder_lm":  # LM prompts batch by equal length (as generate does)
        batches = [[s] for s in sources]
    else:
        batches = [sources]
    produced = 0
    for batch in batches:
        expected = torch_decoder.decode_batch(batch, opts)
        assert ct2.decode_batch(batch, opts) == expected
        produced += sum(map(len, expected))
    assert produced > 0
    with torch.no_grad():
        if arch == "decoder_lm":
            for source, log_probs in zip(sources, ct2.score(sources), strict=True):
                full = ckpt.model(torch.tensor([source])).log_softmax(-1)[0]
                want = full[torch.arange(len(source) - 1), torch.tensor(source[1:])]
                assert torch.allclose(torch.tensor(log_probs), want, atol=1e-4)
        else:
            pairs = [encode_target(tokenizer, line, ckpt.config) for line in TINY_TEXT[4:8]]
            targets = [labels[:-1] for _, labels in pairs]
            for source, (inputs, labels), log_probs in zip(sources, pairs, ct2.score(sources, targets), strict=True):
                full = ckpt.model(torch.tensor([source]), torch.tensor([inputs])).log_softmax(-1)[0]
                want = full[torch.arange(len(labels)), torch.tensor(labels)]
                assert torch.allclose(torch.tensor(log_probs), want, atol=1e-4)


@pytest.mark.parametrize("name", SEQ2SEQ)
def test_seq2seq_export_matches_torch(tmp_path, tiny_tokenizer, name, one_thread):
    check_parity(tmp_path, tiny_tokenizer, "encoder_decoder", SEQ2SEQ[name])


@pytest.mark.parametrize("name", LM)
def test_lm_export_matches_torch(tmp_path, tiny_tokenizer, name, one_thread):
    check_parity(tmp_path, tiny_tokenizer, "decoder_lm", LM[name])


def test_int8_export_stays_close(tmp_path, tiny_tokenizer, one_thread):
    ckpt = make_checkpoint(tmp_path / "ckpt", tiny_tokenizer, "decoder_lm", position="rope")
    sources = [encode_source(tiny_tokenizer, TINY_TEXT[0], ckpt.config)]
    exact = load_ct2_engine(export_ct2(ckpt, tmp_path / "f32")).score(sources)[0]
    int8 = load_ct2_engine(export_ct2(ckpt, tmp_path / "i8", quantization="int8")).score(sources)[0]
    assert (tmp_path / "i8" / "model.bin").stat().st_size < (tmp_path / "f32" / "model.bin").stat().st_size
    # a tiny random model's int8 error varies with CTranslate2's kernels per ISA (per token: max 0.55 nats on AVX2
    # only, 0.19 on average), so the bound is on the mean, with a looser one on any token
    errors = [abs(a - b) for a, b in zip(exact, int8, strict=True)]
    assert sum(errors) / len(errors) < 0.3 and max(errors) < 1.0


def test_int8_never_forces_a_prompt_tail(tmp_path, tiny_tokenizer, one_thread):
    """Under int8 a forced tail changes a longer prompt's answer (measured on SmolLM2), so such an engine batches
    LM prompts of one length only; float32 still mixes lengths. Either way each answer is the prompt's alone."""
    ckpt = make_checkpoint(tmp_path / "ckpt", tiny_tokenizer, "decoder_lm", position="rope")
    f32 = load_ct2_engine(export_ct2(ckpt, tmp_path / "f32"))
    int8 = load_ct2_engine(export_ct2(ckpt, tmp_path / "i8", quantization="int8"))
    assert f32.forced_spread == FORCED_SPREAD and int8.forced_spread == 0
    sources = [encode_source(tiny_tokenizer, line, ckpt.config) for line in TINY_TEXT[:6]]
    sources.append(list(sources[0]))  # a second prompt of the first one's length
    opts = GenerationOptions.parse({"beam": 1, "max_len_a": 0.0, "max_len_b": 8})
    groups = _groups(sources, opts, int8.forced_spread)
    assert all(len({len(sources[row]) for row in group}) == 1 for group in groups)
    assert any(len(group) > 1 for group in groups)
    assert any(len({len(sources[row]) for row in group}) > 1 for group in _groups(sources, opts, FORCED_SPREAD))
    assert int8.stream(sources, opts) == [int8.decode_batch([s], opts)[0] for s in sources]


def test_checkpoint_is_exported_once_into_a_cache(tmp_path, tiny_tokenizer):
    ckpt = make_checkpoint(tmp_path / "ckpt", tiny_tokenizer, "encoder_decoder")
    first = load_ct2_engine(ckpt.path)
    cache = tmp_path / "ckpt.ct2-float32"
    assert first.name == str(cache) and (cache / "tokenizer.json").is_file()
    stamp = (cache / "model.bin").stat().st_mtime_ns
    load_ct2_engine(ckpt.path)
    assert (cache / "model.bin").stat().st_mtime_ns == stamp


def test_export_refuses_to_replace_what_it_did_not_write(tmp_path, tiny_tokenizer):
    ckpt = make_checkpoint(tmp_path / "ckpt", tiny_tokenizer, "decoder_lm")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(DataError):
        export_ct2(ckpt, tmp_path / "notes", overwrite=True)
    export_ct2(ckpt, tmp_path / "out")
    with pytest.raises(DataError, match="--overwrite"):
        export_ct2(ckpt, tmp_path / "out")
    export_ct2(ckpt, tmp_path / "out", overwrite=True)
    with pytest.raises(ConfigError, match="quantization"):
        export_ct2(ckpt, tmp_path / "q", quantization="int4")


UNSUPPORTED = {
    "conformer": ("encoder_decoder", {"encoder": {"layers": 1, "layer": "conformer"}}, "convolution"),
    "lightconv": ("decoder_lm", {"decoder": {"layers": 1, "layer": "lightconv"}}, "convolution"),
    "branchformer": ("encoder_decoder", {"encoder": {"layers": 1, "layer": "branchformer"}}, "convolution"),
    "sliding_window": ("decoder_lm", {"decoder": {"layers": 1, "attention": {"name": "sliding_window",
                                                                            "window": 2}}}, "sparse"),
    "block_sparse": ("encoder_decoder", {"encoder": {"layers": 1, "attention": {
        "name": "block_sparse", "block_size": 2}}}, "sparse"),
    "linear": ("decoder_lm", {"decoder": {"layers": 1, "attention": {"name": "linear"}}}, "linear"),
    "performer": ("decoder_lm", {"decoder": {"layers": 1, "attention": {"name": "performer"}}}, "linear"),
    "linformer": ("encoder_decoder", {"encoder": {"layers": 1, "attention": {"name": "linformer",
                                                                            "proj_len": 4}}}, "low-rank"),
    "nystrom": ("encoder_decoder", {"encoder": {"layers": 1, "attention": {"name": "nystrom",
                                                                          "num_landmarks": 2}}}, "low-rank"),
    "deepnet": ("encoder_decoder", {"residual": "deepnet", "norm_placement": "post"}, "DeepNet"),
    "rezero": ("decoder_lm", {"residual": "rezero"}, "ReZero"),
    "unequal pruned heads": ("decoder_lm", {"decoder": {"layers": 2},
                                            "pruned_heads": {"decoder.layers.0.sublayers.0.body": [0]}}, "unequal"),
    "pruned alibi": ("decoder_lm", {"position": "alibi", "pruned_heads": {
        "decoder.layers.0.sublayers.0.body": [0]}}, "ALiBi"),
    "rope in seq2seq": ("encoder_decoder", {"position": "rope"}, "decoder-only"),
    "alibi in seq2seq": ("encoder_decoder", {"position": "alibi"}, "decoder-only"),
    "int8 torch model": ("decoder_lm", {"quantization": "dynamic_int8"}, "--quantization int8"),
    "classifier": ("encoder_classifier", {}, "classifier"),
    "dynamic rope scaling": ("decoder_lm", {"position": "rope", "rope_scaling": {"type": "dynamic", "factor": 2.0}},
                             "rope_scaling.type='dynamic'"),
}


@pytest.mark.parametrize("name", UNSUPPORTED)
def test_unsupported_shapes_are_refused_by_name(tmp_path, tiny_tokenizer, name):
    arch, overrides, words = UNSUPPORTED[name]
    cfg = ModelConfig(**({"arch": arch, "vocab_size": tiny_tokenizer.get_vocab_size(), "d_model": 16, "heads": 2,
                          "ffn_dim": 32, "dropout": 0.0, "encoder": {"layers": 1}, "decoder": {"layers": 1}}
                         | overrides))
    ckpt = Checkpoint(build_model(cfg).eval(), cfg, tiny_tokenizer, tmp_path / name)
    problems = ct2_blockers(ckpt)
    assert problems and any(words in p for p in problems), problems
    with pytest.raises(ConfigError, match="cannot export to CTranslate2") as info:
        export_ct2(ckpt, tmp_path / "out")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_export_command_end_to_end(tmp_path, tiny_tokenizer, monkeypatch, capsys):
    import os
    import subprocess
    import sys
    from pathlib import Path

    src = Path(__file__).resolve().parents[2] / "src"
    env = os.environ | {"PYTHONPATH": str(src)}
    good = make_checkpoint(tmp_path / "mt", tiny_tokenizer, "encoder_decoder").path
    conv = make_checkpoint(tmp_path / "conv", tiny_tokenizer, "encoder_decoder",
                           encoder={"layers": 1, "layer": "conformer"}).path

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "hybridformer", "export", *args], capture_output=True, text=True,
                              env=env, timeout=120)

    done = run(str(good), "--to", "ct2", "--quantization", "int8", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "model.bin").is_file() and (tmp_path / "out" / "tokenizer.json").is_file()
    refused = run(str(conv), "--to", "ct2", "--out", str(tmp_path / "x"))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "conformer" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    for args in ([good, "--to", "onnx", "--out", tmp_path / "y"], [good, "--to", "ct2", "--out", tmp_path / "out"]):
        code, _, err = run_cli(monkeypatch, capsys, "export", *args)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_missing_ctranslate2_is_one_clear_line(monkeypatch):
    import sys

    from hybridformer.interop.ct2 import require_ctranslate2

    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # as if the ct2 extra were not installed
    with pytest.raises(ConfigError, match=r"pip install 'hybridformer\[ct2\]'"):
        require_ctranslate2()
