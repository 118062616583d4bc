"""What every convolution mixer shares: the padding-safe, causal, streaming input window.

A convolution over a padded batch must not let padding leak into real positions, must not see
the future in a decoder, and in incremental decoding must remember the inputs it still needs.
``conv_window`` is the one place all three are handled; each mixer then runs a *valid*
convolution over the window it returns.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..cache import ConvState
from ..context import MixerContext


def conv_window(x: Tensor, ctx: MixerContext, owner: nn.Module, kernel_size: int) -> Tensor:
    """x: (batch, L, C) -> (batch, L + k - 1, C) so that a valid k-wide convolution gives L outputs.

    Padded positions are zeroed first. Causal (decoder) convolutions pad k − 1 zeros on the left;
    bidirectional ones centre the kernel. With a decoding cache the left context is the
    ``ConvState`` stored under ``ctx.cache[owner]`` (decoding is always causal).
    """
    if ctx.padding_mask is not None:
        x = x.masked_fill(ctx.padding_mask[..., None], 0.0)
    if ctx.cache is not None:
        state = ctx.cache.get(owner)
        if state is None:
            state = ctx.cache[owner] = ConvState(x.shape[0], kernel_size - 1, x.shape[-1], like=x)
        return state.extend(x)
    left = kernel_size - 1 if ctx.causal else (kernel_size - 1) // 2
    return F.pad(x, (0, 0, left, kernel_size - 1 - left))


def depthwise_conv(window: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Valid depthwise convolution. window: (batch, L + k - 1, C), weight: (C, k) -> (batch, L, C).

    Output t weighs window[t + j] by weight[:, j]; with causal padding weight[:, -1] meets input t.
    """
    out = F.conv1d(rearrange(window, "b l c -> b c l"), weight[:, None, :], bias, groups=weight.shape[0])
    return rearrange(out, "b c l -> b l c")


class DepthwiseConv(nn.Module):
    """A depthwise convolution as a mixer (one kernel per channel): Conformer, cgMLP, E-Branchformer merge."""

    def __init__(self, channels: int, kernel_size: int, *, bias: bool = True) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        bound = kernel_size**-0.5  # nn.Conv1d's default init for a depthwise kernel (fan-in k)
        self.weight = nn.Parameter(torch.empty(channels, kernel_size).uniform_(-bound, bound))  # (C, k)
        self.bias = nn.Parameter(torch.empty(channels).uniform_(-bound, bound)) if bias else None

    def forward(self, x: Tensor, ctx: MixerContext) -> Tensor:
        """x: (batch, L, C) -> (batch, L, C)."""
        return depthwise_conv(conv_window(x, ctx, self, self.kernel_size), self.weight, self.bias)
