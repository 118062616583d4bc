"""SnapKV kept keys (``sliding_window:keep=``) against hand-computed scores and a dense per-query oracle.

The oracle writes the kept cache out: a prompt query attends the sinks and its window [p - w, p], the prompt's
last OBSERVE queries their whole past, a generated token the sinks, the kept keys and its window; at cache
positions (``sink_positions=cache``) the sinks and kept keys are numbered 0, 1, ... and the token sits at
min(p, sinks + keep + window) for them.
"""

from __future__ import annotations

import pytest
import torch
from attention.attn_oracle import qkv

from hybridformer.attention import build_attention
from hybridformer.attention.snapkv import POOL, observe, select_kept
from hybridformer.errors import ConfigError
from hybridformer.position import RotaryEmbedding

WINDOW, SINKS, PROMPT, KEEP, OBSERVE = 5, 2, 30, 4, 3


def hand_kept(q, k, *, first: int, end: int, keep: int) -> list[list[list[int]]]:
    """Per (batch, kv head): softmax of each observing query over its causal past, summed over the queries and the
    head's query heads, averaged over POOL neighbours, the top ``keep`` — one number at a time."""
    batch, heads, m, dim = q.shape
    kv_heads, n = k.shape[1], k.shape[2]
    group, result = heads // kv_heads, []
    for b in range(batch):
        rows = []
        for g in range(kv_heads):
            total = [0.0] * n
            for h in range(g * group, (g + 1) * group):
                for i in range(m):
                    p = n - m + i
                    scores = torch.tensor([float(q[b, h, i] @ k[b, g, s]) / dim**0.5 for s in range(p + 1)])
                    for s, weight in enumerate(scores.softmax(0).tolist()):
                        total[s] += weight
            pooled = {s: sum(total[t] for t in range(s - POOL // 2, s + POOL // 2 + 1) if first <= t < end) / POOL
                      for s in range(first, end)}
            rows.append(sorted(sorted(pooled, key=pooled.get, reverse=True)[:keep]))
        result.append(rows)
    return result


def test_kept_set_is_the_top_k_of_hand_computed_scores():
    torch.manual_seed(0)
    q, k, v = qkv(OBSERVE, PROMPT)
    got = select_kept(observe(q, k, v)[1], first=SINKS, end=PROMPT - WINDOW, keep=KEEP)
    assert got.tolist() == hand_kept(q, k, first=SINKS, end=PROMPT - WINDOW, keep=KEEP)


def kept_oracle(q, k, v, kept, rotary, *, cache: bool):
    """q, k, v raw (batch, heads|kv_heads, L, d), the prompt is the first PROMPT positions; kept (batch, kv_heads,
    keep) -> (batch, heads, L, d), one query, head and row at a time."""
    batch, heads, length, _ = q.shape
    group, out = heads // k.shape[1], torch.zeros_like(q)
    for b in range(batch):
        for h in range(heads):
            chosen = kept[b, h // group].tolist() if kept is not None else []
            for p in range(length):
                late = p >= PROMPT
                window = list(range(max(SINKS, p - WINDOW), p + 1))
                if PROMPT - OBSERVE <= p < PROMPT:  # the observing queries see everything
                    window = list(range(SINKS, p + 1))
                prefix = list(range(min(SINKS, p + 1))) + [s for s in chosen if late and s < p - WINDOW]
                keys = k[b, h // group, prefix + window]
                # at cache positions: sinks and kept keys numbered from 0, the query at min(p, their count + window)
                if cache and not PROMPT - OBSERVE <= p < PROMPT:
                    slots = SINKS + (len(chosen) if late else 0)
                    q_at = rotary(torch.tensor([min(p, slots + WINDOW)])).rotate(q[b, h, p][None, None, None])
                    k_at = rotary(torch.arange(len(prefix))).rotate(keys[None, None, : len(prefix)])
                    prefix_scores = (q_at @ k_at.transpose(-1, -2)).flatten()
                else:
                    q_at = rotary(torch.tensor([p])).rotate(q[b, h, p][None, None, None])
                    k_at = rotary(torch.tensor(prefix, dtype=torch.long)).rotate(keys[None, None, : len(prefix)])
                    prefix_scores = (q_at @ k_at.transpose(-1, -2)).flatten()
                q_win = rotary(torch.tensor([p])).rotate(q[b, h, p][None, None, None])
                k_win = rotary(torch.tensor(window)).rotate(keys[None, None, len(prefix) :])
                scores = torch.cat([prefix_scores, (q_win @ k_win.transpose(-1, -2)).flatten()]) / q.shape[-1] ** 0.5
                out[b, h, p] = scores.softmax(0) @ v[b, h // group, prefix + window]
    return out


def run_kernel(kernel, q, k, v, rotary, pieces):
    """The prompt in one step, then ``pieces`` more tokens per step, each with its own rotation."""
    state, outs, start = kernel.new_state(), [], 0
    for n in [PROMPT, *pieces]:
        rows = slice(start, start + n)
        rotation = rotary(torch.arange(start, start + n))
        outs.append(kernel.step(rotation.rotate(q[:, :, rows]), rotation.rotate(k[:, :, rows]), v[:, :, rows], state,
                                rope=rotation))
        start += n
    return torch.cat(outs, 2), state


@pytest.mark.parametrize("sink_positions", ["absolute", "cache"])
@pytest.mark.parametrize("pieces", [[1, 1, 1], [3, 1]])
def test_decoding_after_selection_equals_a_dense_reference(sink_positions, pieces):
    torch.manual_seed(1)
    length = PROMPT + sum(pieces)
    q, k, v = qkv(length)
    rotary = RotaryEmbedding(q.shape[-1], base=10.0)  # a small base: large angles, a strict test
    kernel = build_attention("sliding_window", window=WINDOW, num_global=SINKS, sink_positions=sink_positions,
                             keep=KEEP, observe=OBSERVE)
    got, state = run_kernel(kernel, q, k, v, rotary, pieces)
    rotation = rotary(torch.arange(PROMPT))
    q_last = rotary(torch.arange(PROMPT - OBSERVE, PROMPT)).rotate(q[:, :, PROMPT - OBSERVE : PROMPT])
    weights = observe(q_last, rotation.rotate(k[:, :, :PROMPT]), v[:, :, :PROMPT])[1]
    kept = select_kept(weights, first=SINKS, end=PROMPT - WINDOW, keep=KEEP)
    expected = kept_oracle(q, k, v, kept, rotary, cache=sink_positions == "cache")
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    assert state.keys.shape[2] == SINKS + KEEP + WINDOW + 1  # bounded: sinks, kept keys, the ring
    plain = kept_oracle(q, k, v, None, rotary, cache=sink_positions == "cache")  # the kept keys matter
    assert (got[:, :, PROMPT:] - plain[:, :, PROMPT:]).abs().max() > 1e-3


def test_keep_covering_the_prompt_equals_full_attention():
    """Every key the window drops is kept: the prompt's last queries and the first new token see everything."""
    torch.manual_seed(2)
    q, k, v = qkv(PROMPT + 1)
    rotary = RotaryEmbedding(q.shape[-1], base=10.0)
    kernel = build_attention("sliding_window", window=WINDOW, num_global=SINKS, keep=PROMPT, observe=OBSERVE)
    got, _ = run_kernel(kernel, q, k, v, rotary, [1])
    rotation = rotary(torch.arange(PROMPT + 1))
    full = build_attention("reference")(rotation.rotate(q), rotation.rotate(k), v, causal=True)
    torch.testing.assert_close(got[:, :, PROMPT - OBSERVE :], full[:, :, PROMPT - OBSERVE :], atol=1e-6, rtol=0)


def test_no_future_leakage():
    """Changing the tokens from position j on changes no output before j (the prompt's rows included)."""
    torch.manual_seed(3)
    q, k, v = qkv(PROMPT + 3)
    rotary = RotaryEmbedding(q.shape[-1], base=10.0)
    kernel = build_attention("sliding_window", window=WINDOW, num_global=SINKS, sink_positions="cache", keep=KEEP,
                             observe=OBSERVE)
    base, _ = run_kernel(kernel, q, k, v, rotary, [1, 2])
    for j in (PROMPT - 2, PROMPT - 1, PROMPT, PROMPT + 2):
        changed = [x.clone() for x in (q, k, v)]
        for x in changed:
            x[:, :, j:] = torch.randn_like(x[:, :, j:])
        got, _ = run_kernel(kernel, *changed, rotary, [1, 2])
        torch.testing.assert_close(got[:, :, :j], base[:, :, :j], atol=0, rtol=0)


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match="keep must be >= 0"):
        build_attention("sliding_window", window=8, keep=-1)
    with pytest.raises(ConfigError, match="observe .* must be <= window"):
        build_attention("sliding_window", window=8, keep=4, observe=9)
