"""Linformer and Nyström: shapes, padding handled, sane approximations."""

from __future__ import annotations

import pytest
import torch
from attention.attn_oracle import B, D, H, padding, qkv, reference

from hybridformer.attention import build_attention

LOW_RANK = [("linformer", {"proj_len": 8, "max_len": 64}), ("nystrom", {"num_landmarks": 6})]


@pytest.mark.parametrize("name,opts", LOW_RANK)
def test_padded_batches_give_finite_outputs_independent_of_padded_keys(name: str, opts: dict) -> None:
    kernel = build_attention(name, **opts)
    q, k, v = qkv(37)
    mask = padding(37)
    out = kernel(q, k, v, causal=False, key_padding_mask=mask)
    assert out.shape == (B, H, 37, D) and torch.isfinite(out).all()
    k2, v2 = k.clone(), v.clone()
    k2[mask[:, None, :].expand_as(k2[..., 0])] = 100.0  # garbage at padded keys must not matter
    v2[mask[:, None, :].expand_as(v2[..., 0])] = -100.0
    torch.testing.assert_close(kernel(q, k2, v2, causal=False, key_padding_mask=mask), out)


def test_nystrom_with_one_landmark_per_token_is_nearly_exact() -> None:
    q, k, v = qkv(12)
    q, k = q * 0.3, k * 0.3
    mask = torch.zeros(B, 12, dtype=torch.bool)
    out = build_attention("nystrom", num_landmarks=12, pinv_iterations=20)(q, k, v, causal=False, key_padding_mask=mask)
    torch.testing.assert_close(out, reference(q, k, v, causal=False), atol=1e-4, rtol=1e-4)


def test_nystrom_more_landmarks_approximate_better() -> None:
    q, k, v = qkv(48)
    q, k = q * 0.5, k * 0.5
    exact = reference(q, k, v, causal=False)
    errors = [float((build_attention("nystrom", num_landmarks=m)(q, k, v, causal=False) - exact).abs().mean())
              for m in (2, 48)]
    assert errors[1] < errors[0]


def test_linformer_rejects_sequences_longer_than_max_len() -> None:
    q, k, v = qkv(20)
    with pytest.raises(ValueError, match="max_len"):
        build_attention("linformer", proj_len=4, max_len=16)(q, k, v, causal=False)


def test_linformer_trains_its_projections() -> None:
    kernel = build_attention("linformer", proj_len=4, max_len=32)
    q, k, v = qkv(20)
    kernel(q, k, v, causal=False).sum().backward()
    assert kernel.proj_k.grad is not None and kernel.proj_k.grad[:, :20].abs().sum() > 0
