"""The Mamba-2 mixer (Dao & Gu, 2024, "Transformers are SSMs: ... Structured State Space Duality").

``in_proj`` gives a gate z, the scan inputs x, B, C and a time step dt per head. x, B and C pass a
short causal depthwise convolution (width 4) and SiLU; the selective scan (``scan.py``) mixes
positions; ``D·x`` skips it; a gated RMSNorm ``norm(y ⊙ SiLU(z))`` and ``out_proj`` close. Training
and prompts run the chunked scan; decoding one token at a time runs the recurrence on a constant-size
state (``cache.SSMState``) plus the convolution's last three inputs (``cache.ConvState``).

Padding is made transparent by a zero time step: dt = 0 neither decays the state nor writes to it,
so padded positions are skipped wherever they are. In an encoder (bidirectional) the mixer scans
both ways with the same weights and sums the two (as Vision Mamba does with separate ones).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..cache import SSMState, project
from ..context import MixerContext
from ..conv import DepthwiseConv
from .scan import ssd_chunked, ssd_step

OUTPUT_NORMS = ("gated", "before_gate", "none")


class GatedRMSNorm(nn.Module):
    """``RMSNorm(y ⊙ SiLU(z))`` over each of ``groups`` channel groups (Mamba-2's output norm), or with
    ``before_gate`` ``RMSNorm(y) ⊙ SiLU(z)`` (Falcon-H1's ``mamba_norm_before_gate``)."""

    def __init__(self, channels: int, groups: int, eps: float = 1e-5, *, before_gate: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.groups, self.eps, self.before_gate = groups, eps, before_gate

    def forward(self, y: Tensor, z: Tensor) -> Tensor:
        y = rearrange(y if self.before_gate else y * F.silu(z), "... (g c) -> ... g c", g=self.groups)
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)
        y = self.weight * rearrange(y, "... g c -> ... (g c)")
        return y * F.silu(z) if self.before_gate else y


class Mamba2(nn.Module):
    """Mamba-2: conv → selective SSD scan → gated norm; a mixer (``forward(x, ctx)``).

    ``inner = expand · d_model`` channels (or ``inner`` given: Falcon-H1's ``mamba_d_ssm``) in
    ``inner / head_dim`` heads; B and C have ``state_size`` channels per group, shared by the heads of a
    group (like grouped-query attention's keys). ``output_norm``: ``gated`` (Mamba-2), ``before_gate``, or
    ``none`` (``y ⊙ SiLU(z)`` without a norm; Falcon-H1 without ``mamba_rms_norm``).
    """

    def __init__(self, d_model: int, *, state_size: int = 64, expand: int = 2, head_dim: int = 64, groups: int = 1,
                 conv_kernel_size: int = 4, chunk_size: int = 64, eps: float = 1e-5, bias: bool = False,
                 conv_bias: bool = True, inner: int | None = None, output_norm: str = "gated") -> None:
        super().__init__()
        inner = inner or expand * d_model
        self.inner, self.heads, self.head_dim = inner, inner // head_dim, head_dim
        self.groups, self.state_size, self.chunk_size = groups, state_size, chunk_size
        self.conv_dim = inner + 2 * groups * state_size  # the convolved [x | B | C]
        self.in_proj = nn.Linear(d_model, inner + self.conv_dim + self.heads, bias=bias)  # [z | x B C | dt]
        self.conv = DepthwiseConv(self.conv_dim, conv_kernel_size, bias=conv_bias)
        # the paper's initialisation: A_h = −h, D = 1, dt log-uniform in [0.001, 0.1] (softplus⁻¹ as the bias)
        dt = torch.exp(torch.empty(self.heads).uniform_(math.log(1e-3), math.log(1e-1)))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, self.heads + 1, dtype=torch.float32)))
        self.D = nn.Parameter(torch.ones(self.heads))
        self.norm = None if output_norm == "none" else GatedRMSNorm(inner, groups, eps,
                                                                     before_gate=output_norm == "before_gate")
        self.out_proj = nn.Linear(inner, d_model, bias=bias)

    def forward(self, h: Tensor, ctx: MixerContext) -> Tensor:
        """h: (batch, L, d_model) -> (batch, L, d_model)."""
        z, xbc, dt = project(self.in_proj, h, ctx.cache).split([self.inner, self.conv_dim, self.heads], dim=-1)
        xbc = F.silu(self.conv(xbc, ctx))
        x, B, C = xbc.split([self.inner, self.groups * self.state_size, self.groups * self.state_size], dim=-1)
        x = rearrange(x, "b l (h p) -> b l h p", p=self.head_dim)
        B, C = (rearrange(t, "b l (g n) -> b l g n", g=self.groups).repeat_interleave(self.heads // self.groups, 2)
                for t in (B, C))
        dt = F.softplus(dt + self.dt_bias)
        if ctx.padding_mask is not None:
            dt = dt.masked_fill(ctx.padding_mask[..., None], 0.0)
        A = -torch.exp(self.A_log)
        y = self.scan(x, dt, A, B, C, ctx)
        y = y + x * self.D[:, None]
        y = rearrange(y, "b l h p -> b l (h p)")
        y = y * F.silu(z) if self.norm is None else self.norm(y, z)
        return project(self.out_proj, y, ctx.cache)

    def scan(self, x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, ctx: MixerContext) -> Tensor:
        """The SSD scan: chunked in training and for prompts, the recurrence for one decoded token."""
        if ctx.cache is None:
            y, _ = ssd_chunked(x, dt, A, B, C, self.chunk_size)
            if not ctx.causal:  # bidirectional: add the scan from the right, same weights
                back, _ = ssd_chunked(*(t.flip(1) for t in (x, dt)), A, *(t.flip(1) for t in (B, C)), self.chunk_size)
                y = y + back.flip(1)
            return y
        memory = ctx.cache.get(self)
        if memory is None:
            memory = ctx.cache[self] = SSMState()
        if x.shape[1] == 1 and memory.state is not None:
            y, memory.state = ssd_step(memory.state, x[:, 0], dt[:, 0], A, B[:, 0], C[:, 0])
            return y[:, None]
        y, memory.state = ssd_chunked(x, dt, A, B, C, self.chunk_size, memory.state)
        return y

