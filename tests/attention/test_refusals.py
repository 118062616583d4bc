"""Kernels refuse, where they are called, what they cannot compute (DESIGN: ConfigError naming both)."""

from __future__ import annotations

import pytest
import torch

from hybridformer.attention import ATTENTION, build_attention
from hybridformer.attention.bias import ALiBi
from hybridformer.errors import ConfigError

Q = torch.randn(1, 2, 6, 4)


@pytest.mark.parametrize("name", ["linformer", "nystrom"])
def test_low_rank_kernels_refuse_a_causal_call(name: str) -> None:
    kernel = build_attention(name)
    assert kernel(Q, Q, Q, causal=False).shape == Q.shape
    with pytest.raises(ConfigError, match=f"attention '{name}' got causal=True but cannot be causal"):
        kernel(Q, Q, Q, causal=True)


@pytest.mark.parametrize("name", ["linformer", "nystrom", "linear", "performer"])
def test_kernels_without_scores_refuse_a_score_bias(name: str) -> None:
    kernel = build_attention(name)
    positions = torch.arange(6)
    bias = ALiBi(2)(positions, positions)
    with pytest.raises(ConfigError, match=f"attention '{name}' cannot apply a score bias"):
        kernel(Q, Q, Q, causal=False, bias=bias)


def test_every_kernel_answers_a_causal_call_or_refuses_it() -> None:
    for name in ATTENTION:
        kernel = build_attention(name)
        try:
            out = kernel(Q, Q, Q, causal=True)
        except ConfigError as exc:
            assert name in str(exc) and "causal" in str(exc)
            continue
        first = kernel(Q[:, :, :1], Q[:, :, :1], Q[:, :, :1], causal=True)
        assert torch.allclose(out[:, :, :1], first, atol=1e-5), name  # the first query sees only itself
