"""Mamba-2: the chunked scan against the recurrence, the mixer against a position-by-position oracle,
causality, padding, and cached decoding against the full forward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hybridformer.cache import DecodingCache
from hybridformer.context import MixerContext
from hybridformer.ssm import Mamba2, ssd_chunked, ssd_sequential


def ctx(length: int, *, causal: bool = True, padding_mask=None, cache=None) -> MixerContext:
    return MixerContext(padding_mask=padding_mask, causal=causal, positions=torch.arange(length), cache=cache)


def scan_inputs(batch=2, length=13, heads=3, head_dim=4, state=5, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, length, heads, head_dim, generator=g, dtype=dtype)
    dt = torch.rand(batch, length, heads, generator=g, dtype=dtype)
    A = -2 * torch.rand(heads, generator=g, dtype=dtype)
    B, C = (torch.randn(batch, length, heads, state, generator=g, dtype=dtype) for _ in range(2))
    return x, dt, A, B, C


@pytest.mark.parametrize("chunk", [1, 4, 5, 13, 16])
@pytest.mark.parametrize("from_state", [False, True])
def test_chunked_scan_equals_sequential_recurrence(chunk, from_state):
    x, dt, A, B, C = scan_inputs()
    initial = torch.randn(2, 3, 4, 5, dtype=torch.float64) if from_state else None
    y_seq, final_seq = ssd_sequential(x, dt, A, B, C, initial)
    y, final = ssd_chunked(x, dt, A, B, C, chunk, initial)
    torch.testing.assert_close(y, y_seq, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(final, final_seq, atol=1e-12, rtol=1e-10)


def test_sequential_scan_equals_the_explicit_sum():
    """y_t = Σ_{s≤t} exp(Σ_{s<r≤t} dt_r A) dt_s (C_t·B_s) x_s — the SSM written as a masked attention."""
    x, dt, A, B, C = scan_inputs(batch=1, length=6, heads=2)
    y, _ = ssd_sequential(x, dt, A, B, C)
    for t in range(6):
        for h in range(2):
            expected = sum(torch.exp(dt[0, s + 1 : t + 1, h].sum() * A[h]) * dt[0, s, h] * (C[0, t, h] @ B[0, s, h])
                           * x[0, s, h] for s in range(t + 1))
            torch.testing.assert_close(y[0, t, h], expected)


def mixer(chunk_size: int = 4, groups: int = 1) -> Mamba2:
    torch.manual_seed(0)
    module = Mamba2(8, state_size=4, expand=2, head_dim=4, groups=groups, chunk_size=chunk_size).eval()
    with torch.no_grad():
        module.dt_bias.uniform_(-1.0, 1.0)  # larger steps than the init, so the decays matter
    return module


def oracle(module: Mamba2, h: torch.Tensor) -> torch.Tensor:
    """The mixer spelled out with a causal nn.Conv1d and the position-by-position recurrence."""
    z, xbc, dt = module.in_proj(h).split([module.inner, module.conv_dim, module.heads], dim=-1)
    conv = torch.nn.Conv1d(module.conv_dim, module.conv_dim, 4, groups=module.conv_dim, padding=3)
    conv.weight.data, conv.bias.data = module.conv.weight.data[:, None], module.conv.bias.data
    xbc = F.silu(conv(xbc.transpose(1, 2))[..., : h.shape[1]].transpose(1, 2))
    x, B, C = xbc.split([module.inner, module.groups * 4, module.groups * 4], dim=-1)
    batch, length = h.shape[:2]
    x = x.view(batch, length, module.heads, 4)
    B, C = (t.view(batch, length, module.groups, 4).repeat_interleave(module.heads // module.groups, 2) for t in (B, C))
    y, _ = ssd_sequential(x, F.softplus(dt + module.dt_bias), -torch.exp(module.A_log), B, C)
    y = (y + x * module.D[:, None]).reshape(batch, length, -1) * F.silu(z)
    y = y.view(batch, length, module.groups, -1)
    y = (y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + 1e-5)).reshape(batch, length, -1)
    return module.out_proj(module.norm.weight * y)


@pytest.mark.parametrize("groups", [1, 2])
def test_mixer_equals_conv_plus_recurrence_oracle(groups):
    module = mixer(groups=groups)
    h = torch.randn(2, 11, 8)
    torch.testing.assert_close(module(h, ctx(11)), oracle(module, h), atol=1e-5, rtol=1e-4)


def test_mixer_never_sees_the_future():
    module = mixer().train()
    h = torch.randn(2, 9, 8, requires_grad=True)
    (module(h, ctx(9))[:, 5] * torch.randn(8)).sum().backward()
    assert h.grad[:, 6:].abs().max() == 0
    assert h.grad[:, :6].abs().max() > 0


@pytest.mark.parametrize("causal", [True, False])
def test_padding_is_skipped_wherever_it_is(causal):
    """A zero time step neither decays nor writes the state: padded positions, even inside a row, change nothing."""
    module = mixer()
    h = torch.randn(1, 6, 8)
    alone = module(h, ctx(6, causal=causal))
    padded = torch.cat([h, 50 * torch.randn(1, 3, 8)], dim=1)
    mask = torch.tensor([[False] * 6 + [True] * 3])
    torch.testing.assert_close(module(padded, ctx(9, causal=causal, padding_mask=mask))[:, :6], alone)


def test_bidirectional_mixer_sees_both_sides():
    module = mixer().train()
    h = torch.randn(1, 7, 8, requires_grad=True)
    (module(h, ctx(7, causal=False))[:, 3] * torch.randn(8)).sum().backward()
    assert h.grad[:, 4:].abs().max() > 0 and h.grad[:, :3].abs().max() > 0


@pytest.mark.parametrize("prompt", [1, 5])
def test_cached_decoding_equals_full_forward_and_follows_reorder(prompt):
    module = mixer(chunk_size=3)
    h = torch.randn(3, 10, 8)
    full = module(h, ctx(10))
    cache = DecodingCache()
    pieces = [module(h[:, :prompt], ctx(prompt, cache=cache))]
    pieces += [module(h[:, t : t + 1], ctx(1, cache=cache)) for t in range(prompt, 10)]
    torch.testing.assert_close(torch.cat(pieces, 1), full, atol=1e-5, rtol=1e-4)
    index = torch.tensor([2, 0])  # beam search keeps rows 2 and 0: their conv and SSM states go with them
    cache.reorder(index)
    nxt = torch.randn(2, 1, 8)
    expected = module(torch.cat([h[index], nxt], 1), ctx(11))[:, -1:]
    torch.testing.assert_close(module(nxt, ctx(1, cache=cache)), expected, atol=1e-5, rtol=1e-4)
