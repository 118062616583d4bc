"""The selective state-space scan of Mamba-2 (Dao & Gu, 2024, "Transformers are SSMs"), two ways.

Per head h the state S (head_dim × state) evolves as ``S_t = exp(dt_t·A_h) S_{t−1} + dt_t x_t B_tᵀ``
and the output is ``y_t = S_t C_t``. :func:`ssd_step` is that recurrence (decoding, and the oracle);
:func:`ssd_chunked` is the state-space-duality form that trains in parallel: quadratic, attention-like
products inside chunks of ``chunk_size`` positions and the recurrence only between chunks (the
paper's ``ssd_minimal_discrete``). Both continue from an initial state and return the final one.

Shapes: x (batch, L, heads, head_dim); dt (batch, L, heads), already positive; A (heads,), negative;
B, C (batch, L, heads, state); state (batch, heads, head_dim, state).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor


def ssd_step(state: Tensor, x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor) -> tuple[Tensor, Tensor]:
    """One position. x (batch, heads, head_dim), dt (batch, heads), B, C (batch, heads, state) -> (y, state)."""
    decay = torch.exp(dt * A)[..., None, None]
    state = state * decay + (dt[..., None] * x)[..., None] * B[:, :, None, :]
    return torch.einsum("bhpn,bhn->bhp", state, C), state


def ssd_sequential(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor,
                   state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The recurrence position by position: y (batch, L, heads, head_dim) and the final state."""
    if state is None:
        state = x.new_zeros(*x.shape[:1], *x.shape[2:], B.shape[-1])
    ys = []
    for t in range(x.shape[1]):
        y, state = ssd_step(state, x[:, t], dt[:, t], A, B[:, t], C[:, t])
        ys.append(y)
    return torch.stack(ys, dim=1), state


def segsum(a: Tensor) -> Tensor:
    """a (..., T) -> (..., T, T) with ``out[i, j] = a[j+1] + … + a[i]`` for j ≤ i and −inf above the diagonal.

    Summed by a masked cumulative sum, not as a difference of prefix sums, which would lose precision.
    """
    T = a.shape[-1]
    below = torch.tril(torch.ones(T, T, dtype=torch.bool, device=a.device), diagonal=-1)
    out = a[..., :, None].expand(*a.shape, T).masked_fill(~below, 0.0).cumsum(dim=-2)
    on_or_below = torch.tril(torch.ones(T, T, dtype=torch.bool, device=a.device))
    return out.masked_fill(~on_or_below, float("-inf"))


def ssd_chunked(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk_size: int,
                state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The same outputs as :func:`ssd_sequential`, computed chunk-parallel (training and prompts)."""
    length = x.shape[1]
    pad = -length % chunk_size
    x = x * dt[..., None]  # the input term dt·x
    a = dt * A  # (batch, L, heads): log-decay per position
    x, a, B, C = (rearrange(F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)), "b (c q) ... -> b c q ...", q=chunk_size)
                  for t in (x, a, B, C))
    a = rearrange(a, "b c q h -> b h c q")
    a_cum = a.cumsum(dim=-1)  # (b, h, c, q)

    # 1. inside each chunk: an attention-like product masked by the decays between positions
    scores = torch.einsum("bclhn,bcshn->bhcls", C, B) * torch.exp(segsum(a))
    y = torch.einsum("bhcls,bcshp->bclhp", scores, x)

    # 2. the state each chunk leaves behind from its own inputs
    to_end = torch.exp(a_cum[..., -1:] - a_cum)  # (b, h, c, q): decay from each position to its chunk's end
    chunk_states = torch.einsum("bclhn,bhcl,bclhp->bchpn", B, to_end, x)

    # 3. the recurrence between chunks: the state entering each chunk, and the final state
    if state is None:
        state = chunk_states.new_zeros(chunk_states[:, 0].shape)
    chunk_states = torch.cat([state[:, None].to(chunk_states.dtype), chunk_states], dim=1)
    between = torch.exp(segsum(F.pad(a_cum[..., -1], (1, 0))))  # (b, h, c+1, c+1)
    states = torch.einsum("bhzc,bchpn->bzhpn", between, chunk_states)
    entering, final = states[:, :-1], states[:, -1]

    # 4. what each position reads from the state entering its chunk
    y = y + torch.einsum("bclhn,bchpn,bhcl->bclhp", C, entering, torch.exp(a_cum))
    return rearrange(y, "b c q h p -> b (c q) h p")[:, :length], final
