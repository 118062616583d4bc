"""Residual sublayers and the layer that chains them (the context every mixer receives is ``context.py``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..context import MixerContext


class Residual(nn.Module):
    """One residual sublayer around ``body`` (a mixer or an FFN, called as ``body(x, ctx)``).

    pre-norm:  x + s · f(norm(x))          post-norm:  norm(α · x + s · f(x))
    sandwich:  x + s · post(f(norm(x)))   (Gemma 2/3: a second norm on the branch output)
    ``s`` is a fixed step (½ for Conformer's macaron FFNs); ``α`` is DeepNet's up-weighting of the
    skip path (Wang et al., 2022); with ``rezero`` there is no norm and f is gated by a learned
    scalar that starts at 0 (Bachlechner et al., 2020), so a deep stack starts as the identity.
    """

    def __init__(
        self, body: nn.Module, norm: nn.Module | None, *, prenorm: bool = True, dropout: float = 0.0,
        scale: float = 1.0, alpha: float = 1.0, rezero: bool = False, post_norm: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.body, self.norm = body, norm if norm is not None else nn.Identity()
        self.post_norm = post_norm
        self.prenorm, self.scale, self.alpha = prenorm or rezero, scale, alpha
        self.dropout = nn.Dropout(dropout)
        self.gate = nn.Parameter(torch.zeros(())) if rezero else None

    def branch(self, h: Tensor, ctx: MixerContext) -> Tensor:
        out = self.body(h, ctx)
        out = self.dropout(out if self.post_norm is None else self.post_norm(out))
        if self.scale != 1.0:
            out = out * self.scale
        return out if self.gate is None else out * self.gate

    def forward(self, x: Tensor, ctx: MixerContext) -> Tensor:
        if self.prenorm:
            return x + self.branch(self.norm(x), ctx)
        skip = x if self.alpha == 1.0 else x * self.alpha
        return self.norm(skip + self.branch(x, ctx))


class Layer(nn.Module):
    """A layer: residual sublayers applied in order, then an optional final norm (Conformer)."""

    def __init__(self, sublayers: list[nn.Module], final_norm: nn.Module | None = None) -> None:
        super().__init__()
        self.sublayers = nn.ModuleList(sublayers)
        self.final_norm = final_norm

    def forward(self, x: Tensor, ctx: MixerContext) -> Tensor:
        for sublayer in self.sublayers:
            x = sublayer(x, ctx)
        return x if self.final_norm is None else self.final_norm(x)


class Parallel(nn.Module):
    """Branches applied to the same input, their outputs combined by ``merge(outputs, ctx)``.

    Branchformer (Peng et al., 2022) runs self-attention and a cgMLP side by side; Lite
    Transformer's LSRA (Wu et al., 2020) runs attention and convolution on channel shares.
    Wrapped in a ``Residual``, the branches share its one norm (a per-branch norm's affine
    parameters fold into each branch's first projection, so nothing is lost).
    """

    def __init__(self, branches: list[nn.Module], merge: nn.Module) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.merge = merge

    def forward(self, x: Tensor, ctx: MixerContext) -> Tensor:
        return self.merge([branch(x, ctx) for branch in self.branches], ctx)


class ConcatMerge(nn.Module):
    """Concatenate branch outputs along channels, then an optional projection (Branchformer: 2d → d)."""

    def __init__(self, proj: nn.Module | None = None) -> None:
        super().__init__()
        self.proj = proj

    def forward(self, outputs: list[Tensor], ctx: MixerContext) -> Tensor:
        joined = torch.cat(outputs, dim=-1)
        return joined if self.proj is None else self.proj(joined)


class SumMerge(nn.Module):
    """The branch outputs added (Falcon-H1's attention + Mamba-2; any scale of a branch lives in its weights)."""

    def forward(self, outputs: list[Tensor], ctx: MixerContext) -> Tensor:
        return torch.stack(outputs).sum(0)


class WeightedMerge(nn.Module):
    """``Σ softmax(w)_i · y_i`` with one learned logit per branch (Branchformer's weighted average).

    The paper derives the weights by attention pooling over the whole sequence; a learned
    per-layer weight keeps the merge causal and streamable.
    """

    def __init__(self, branches: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(branches))

    def forward(self, outputs: list[Tensor], ctx: MixerContext) -> Tensor:
        weights = torch.softmax(self.logits, dim=0)
        return sum(w * y for w, y in zip(weights, outputs, strict=True))
