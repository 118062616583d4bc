"""Sliding-window softmax plus a learned linear-attention state over the keys that left the window (LoLCATs).

LoLCATs (Zhang et al., 2024, "Linearizing Large Language Models") linearizes a trained model by giving each
layer softmax attention over the last ``window`` keys and linear attention, with learned Hedgehog feature
maps (Zhang et al., 2024: φ(x) = [softmax(xW), softmax(−xW)]), over every earlier key, in one normalisation:

    y_i = (g Σ_win e^{s_ij − m_i} v_j + Σ_{j < i − window} φ(q_i)·φ(k_j) v_j) / (same sums without v_j)

with s_ij = q_i·k_j/√d, m_i the largest windowed score and g = sigmoid(a learned logit per head). The
feature maps and g are what ``hybridformer hybridize`` trains to reproduce the softmax layer they replace.
Decoding keeps the last ``window`` keys and the running sums Σ φ(k) vᵀ, Σ φ(k): memory flat in the length.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..cache import WindowLinearState
from ..errors import ConfigError
from .base import AttentionKernel, expand_kv, no_score_bias, refuse_score_bias
from .bias import ScoreBias
from .masks import drop_empty_padding


class WindowLinearAttention(AttentionKernel):
    """Causal: each query sees its ``window`` previous keys and itself by softmax, every older key through
    learned feature maps (see the module docstring): per head, a ``head_dim x feature_dim`` map for queries
    and one for keys, sized by :meth:`bind`. Queries go in blocks of ``chunk_size``."""

    name = "window_linear"
    bounded_state = True  # a window ring and a linear state

    def __init__(self, *, window: int = 64, feature_dim: int = 64, chunk_size: int = 64) -> None:
        super().__init__()
        for option, value in (("window", window), ("feature_dim", feature_dim), ("chunk_size", chunk_size)):
            if value < 1:
                raise ConfigError(f"attention 'window_linear': {option} must be >= 1, got {value}")
        self.window, self.feature_dim, self.chunk_size = window, feature_dim, chunk_size
        self.q_map: nn.Parameter | None = None  # (heads, head_dim, feature_dim), made by bind()
        self.k_map: nn.Parameter | None = None
        self.gate: nn.Parameter | None = None  # (heads,): the window's weight g = sigmoid(gate)

    def bind(self, heads: int, head_dim: int) -> None:
        """Per-head maps, starting as φ(x) = [softmax(x), softmax(−x)] (an identity projection), and g = ½."""
        eye = torch.eye(head_dim, self.feature_dim).expand(heads, head_dim, self.feature_dim)
        self.q_map, self.k_map = nn.Parameter(eye.clone()), nn.Parameter(eye.clone())
        self.gate = nn.Parameter(torch.zeros(heads))

    def keep_heads(self, kept: list[int]) -> None:
        if self.q_map is not None:
            index = torch.tensor(kept, device=self.q_map.device)
            for name in ("q_map", "k_map", "gate"):
                setattr(self, name, nn.Parameter(getattr(self, name).detach().index_select(0, index)))

    @classmethod
    def check(cls, *, causal: bool, position: str, where: str) -> None:
        if not causal:
            raise ConfigError(f"{where}: attention.name='window_linear' is causal (a decoder's self-attention); "
                              "use 'sliding_window' or 'linear' in an encoder")
        no_score_bias(cls.name, position, where)

    def features(self, x: Tensor, *, is_query: bool) -> Tensor:
        """Hedgehog φ: (batch, heads, L, head_dim) -> (batch, heads, L, 2·feature_dim), positive."""
        if self.q_map is None:  # a bare kernel, not bound by a mixer
            self.bind(x.shape[1], x.shape[-1])
        weight = self.q_map if is_query else self.k_map
        projected = x @ weight.to(x.dtype)
        return torch.cat([projected.softmax(-1), (-projected).softmax(-1)], dim=-1)

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool,
        key_padding_mask: Tensor | None = None, bias: ScoreBias | None = None,
    ) -> Tensor:
        refuse_score_bias(self.name, bias)
        if not causal:
            raise ConfigError("attention 'window_linear' got causal=False; it is a decoder's self-attention")
        heads = q.shape[1]
        k, v = expand_kv(k, heads), expand_kv(v, heads)
        out, _, _ = self._continue(q, k, v, drop_empty_padding(key_padding_mask), None, None)
        return out

    def new_state(self) -> WindowLinearState:
        return WindowLinearState()

    def step(self, q: Tensor, k: Tensor, v: Tensor, state: WindowLinearState, *, bias: ScoreBias | None = None,
             start: Tensor | None = None) -> Tensor:
        """The new queries over the kept window and the running sums; keys leaving the window join the sums.
        Left padding (the columns before ``start``) is masked in the window and never enters the sums."""
        refuse_score_bias(self.name, bias)
        heads = q.shape[1]
        keys, values = state.extend(k, v)
        first = state.length - keys.shape[2]  # column of keys[0]
        padding = None
        if start is not None:
            columns = torch.arange(first, state.length, device=k.device)
            padding = columns[None] < start[:, None]
        keys, values = expand_kv(keys, heads), expand_kv(values, heads)
        out, state.kv, state.k_sum = self._continue(q, keys, values, padding, state.kv, state.k_sum)
        leaving = max(0, keys.shape[2] - self.window)
        if leaving:
            phi = self._key_features(keys[:, :, :leaving], None if padding is None else padding[:, :leaving])
            state.kv, state.k_sum = _fold(phi, values[:, :, :leaving], state.kv, state.k_sum)
        state.keep(self.window)
        return out

    def _key_features(self, k: Tensor, padding: Tensor | None) -> Tensor:
        phi = self.features(k, is_query=False)
        return phi if padding is None else phi.masked_fill(padding[:, None, :, None], 0.0)

    def _continue(self, q: Tensor, k: Tensor, v: Tensor, padding: Tensor | None, kv: Tensor | None,
                  k_sum: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Queries q (batch, heads, n, d) at the last n of the keys k, v (batch, heads, lead + n, d), after the
        running sums ``kv``, ``k_sum`` of all older keys -> (output, sums with the keys before the window of the
        first query folded in)."""
        lead = k.shape[2] - q.shape[2]
        if lead > self.window:  # keys no query's window reaches: straight into the sums
            cut = lead - self.window
            phi = self._key_features(k[:, :, :cut], None if padding is None else padding[:, :cut])
            kv, k_sum = _fold(phi, v[:, :, :cut], kv, k_sum)
            k, v = k[:, :, cut:], v[:, :, cut:]
            padding = None if padding is None else padding[:, cut:]
        return self._blocks(q, k, v, padding, kv, k_sum), kv, k_sum

    def _blocks(self, q: Tensor, k: Tensor, v: Tensor, padding: Tensor | None, kv: Tensor | None,
                k_sum: Tensor | None) -> Tensor:
        """Queries in blocks of c: block b's keys are a span of c + window (its windows and the older keys of
        the span, linear); keys before the span enter through exclusive prefix sums over blocks of keys.

        The keys are left-padded to ``window + n`` so query i's window is padded keys [i, i + window]."""
        batch, heads, n, dim = q.shape
        w, c = self.window, min(self.chunk_size, n)
        blocks = -(-n // c)
        front, back = w - (k.shape[2] - n), blocks * c - n
        valid = torch.ones(batch, k.shape[2], dtype=torch.bool, device=q.device)
        if padding is not None:
            valid = ~padding
        valid = F.pad(valid, (front, back), value=False)  # (batch, window + blocks·c)
        phi_q = self.features(q, is_query=True)
        phi_k = self.features(k, is_query=False)
        phi_k, k, v = (F.pad(t, (0, 0, front, back)) for t in (phi_k, k, v))
        phi_k = phi_k.masked_fill(~valid[:, None, :, None], 0.0)
        span = w + c

        def unfold(x: Tensor) -> Tensor:  # (..., window + blocks·c, D) -> (..., blocks, span, D)
            return x.unfold(-2, span, c).transpose(-1, -2)

        q_blocks = F.pad(q, (0, 0, 0, back)).unflatten(2, (blocks, c))  # (B, H, blocks, c, d)
        phi_q_blocks = F.pad(phi_q, (0, 0, 0, back)).unflatten(2, (blocks, c))
        k_blocks, v_blocks, phi_k_blocks = unfold(k), unfold(v), unfold(phi_k)
        key_ok = valid.unfold(-1, span, c)[:, None, :, None, :]  # (B, 1, blocks, 1, span)
        local = torch.arange(span, device=q.device) - torch.arange(c, device=q.device)[:, None]  # kj − qi
        in_window = (local >= 0) & (local <= w) & key_ok
        older = (local < 0) & key_ok  # in the span, before the query's window: linear

        scores = torch.einsum("bhncd,bhnsd->bhncs", q_blocks, k_blocks) / math.sqrt(dim)
        scores = scores.masked_fill(~in_window, float("-inf"))
        top = scores.amax(-1, keepdim=True)
        top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
        gate = torch.sigmoid(self.gate).to(q.dtype)[None, :, None, None, None]
        soft = gate * torch.exp(scores - top)
        linear = torch.einsum("bhncf,bhnsf->bhncs", phi_q_blocks, phi_k_blocks).masked_fill(~older, 0.0)
        weights = soft + linear
        numerator = weights @ v_blocks
        denominator = weights.sum(-1)
        # keys before each block's span: exclusive prefix over key blocks [b·c, b·c + c), plus the running sums
        head_phi, head_v = phi_k[:, :, : blocks * c].unflatten(2, (blocks, c)), v[:, :, : blocks * c].unflatten(
            2, (blocks, c))
        block_kv = torch.einsum("bhncf,bhncd->bhnfd", head_phi, head_v)
        block_k = head_phi.sum(3)
        kv_before, k_before = block_kv.cumsum(2) - block_kv, block_k.cumsum(2) - block_k
        if kv is not None:
            kv_before, k_before = kv_before + kv[:, :, None], k_before + k_sum[:, :, None]
        numerator = numerator + torch.einsum("bhncf,bhnfd->bhncd", phi_q_blocks, kv_before)
        denominator = denominator + torch.einsum("bhncf,bhnf->bhnc", phi_q_blocks, k_before)
        out = numerator / denominator.clamp_min(torch.finfo(q.dtype).tiny)[..., None]
        return out.flatten(2, 3)[:, :, :n]


def _fold(phi: Tensor, v: Tensor, kv: Tensor | None, k_sum: Tensor | None) -> tuple[Tensor, Tensor]:
    """Running sums Σ φ(k) vᵀ (batch, heads, F, d) and Σ φ(k) (batch, heads, F) with these keys added."""
    new_kv, new_k = torch.einsum("bhlf,bhld->bhfd", phi, v), phi.sum(2)
    return (new_kv, new_k) if kv is None else (kv + new_kv, k_sum + new_k)
