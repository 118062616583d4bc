"""Lite Transformer's channel split (Wu et al., 2020, "Lite Transformer with Long-Short Range Attention").

LSRA gives one share of the channels to attention (long range) and the rest to a convolution
(short range), so each specialises and the attention runs at a fraction of the width.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from ..context import MixerContext
from ..position import Rotation


class ChannelSlice(nn.Module):
    """Run ``body`` on channels ``[start, stop)`` of the input.

    An attention body keeps the model's head count (so ALiBi/T5 biases still fit) with a narrower
    head; ``head_dim`` then narrows the context's rotary angles to match.
    """

    def __init__(self, body: nn.Module, start: int, stop: int, *, head_dim: int | None = None) -> None:
        super().__init__()
        self.body, self.start, self.stop, self.head_dim = body, start, stop, head_dim

    def forward(self, x: Tensor, ctx: MixerContext) -> Tensor:
        if self.head_dim is not None and ctx.rope is not None and ctx.rope.cos.shape[-1] != self.head_dim:
            ctx = dataclasses.replace(ctx, rope=narrow_rotation(ctx.rope, self.head_dim))
        return self.body(x[..., self.start : self.stop], ctx)


def narrow_rotation(rotation: Rotation, head_dim: int) -> Rotation:
    """RoPE angles for a narrower head: keep ``head_dim / 2`` evenly spaced frequencies of the wide one.

    When the wide head is r times wider this keeps every r-th frequency, which is exactly
    ``RotaryEmbedding(head_dim)`` with the same base.
    """
    half, wide_half = head_dim // 2, rotation.cos.shape[-1] // 2
    index = torch.arange(half, device=rotation.cos.device) * wide_half // half
    cos, sin = rotation.cos[..., index], rotation.sin[..., index]
    return Rotation(torch.cat([cos, cos], dim=-1), torch.cat([sin, sin], dim=-1))
