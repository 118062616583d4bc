"""Impossible options and combinations are ConfigErrors that name both sides."""

from __future__ import annotations

import pytest

from hybridformer import ModelConfig, build_model
from hybridformer.attention import ATTENTION, build_attention
from hybridformer.cache import KVCache, SplitHeadsState
from hybridformer.config import ConfigError


@pytest.mark.parametrize("name,opts,words", [
    ("sliding_window", {"window": 0}, ["sliding_window", "window"]),
    ("sliding_window", {"num_global": -1}, ["sliding_window", "num_global"]),
    ("chunked", {"chunk_size": 0}, ["chunked", "chunk_size"]),
    ("block_sparse", {"block_size": 0}, ["block_sparse", "block_size"]),
    ("performer", {"feature_dim": 0}, ["performer", "feature_dim"]),
    ("linformer", {"proj_len": 0}, ["linformer", "proj_len"]),
    ("nystrom", {"num_landmarks": 0}, ["nystrom", "num_landmarks"]),
    ("linear", {"window": 4}, ["linear", "window", "allowed"]),
])
def test_bad_options(name: str, opts: dict, words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        build_attention(name, **opts)
    assert all(w in str(err.value) for w in words)


def _model(arch: str, name: str, position: str = "sinusoidal") -> None:
    stack = {"layers": 1, "attention": {"name": name}}
    build_model(ModelConfig(arch=arch, vocab_size=20, d_model=16, heads=2, ffn_dim=16, position=position,
                            encoder=stack, decoder=stack))


@pytest.mark.parametrize("name", ["linformer", "nystrom"])
def test_low_rank_cannot_be_causal(name: str) -> None:
    with pytest.raises(ConfigError, match=f"model.decoder.attention.*{name}.*causal"):
        _model("decoder_lm", name)
    _model("encoder_classifier", name)  # fine in an encoder


@pytest.mark.parametrize("name", ["linear", "performer", "linformer", "nystrom"])
@pytest.mark.parametrize("position", ["alibi", "t5"])
def test_score_bias_needs_explicit_scores(name: str, position: str) -> None:
    with pytest.raises(ConfigError) as err:
        _model("encoder_classifier", name, position)
    assert name in str(err.value) and position in str(err.value)


@pytest.mark.parametrize("name", ["chunked", "sliding_window", "block_sparse"])
@pytest.mark.parametrize("position", ["alibi", "t5"])
def test_exact_kernels_accept_score_biases(name: str, position: str) -> None:
    _model("decoder_lm", name, position)


def test_unknown_option_is_rejected_when_the_config_loads() -> None:
    with pytest.raises(ConfigError, match="window.*allowed"):
        from hybridformer.config import parse_config
        parse_config(ModelConfig, {"decoder": {"attention": {"name": "performer", "window": 3}}})


@pytest.mark.parametrize("name", sorted(ATTENTION))
def test_a_kernel_says_whether_its_decoding_state_is_bounded(name):
    """``bounded_state`` decides whether a long text is scored through the cache in chunks (metrics.token_nll):
    a kernel whose state is a growing KV cache must not claim it, and one with any other state must."""
    kernel = build_attention(name)
    grows = isinstance(kernel.new_state(), (KVCache, SplitHeadsState))  # a split state holds a growing cache
    assert kernel.bounded_state == (not grows)
