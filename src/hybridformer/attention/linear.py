"""Kernelized (linear-time) attention: elu+1 features (Linear Transformer) and FAVOR+ (Performer).

Both replace softmax(q kᵀ) with φ(q) φ(k)ᵀ, so attention becomes φ(q) (Σ φ(k) vᵀ) normalised by
φ(q) · Σ φ(k). Non-causal: two small matrix products. Causal: prefix sums, computed chunk by
chunk (quadratic only inside a chunk), so memory is O(L · d² / chunk) instead of one running
state per token. Under autograd, sequences longer than ``segment_len`` go one segment at a time
through activation checkpointing, carrying the running sums, so training keeps only the features
and one segment's temporaries (64k tokens train in < 1 GiB). Decoding carries the running sums:
O(1) time and memory per token.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ..cache import LinearAttentionState
from ..errors import ConfigError
from .base import AttentionKernel, expand_kv, no_score_bias, refuse_score_bias
from .bias import ScoreBias
from .masks import drop_empty_padding


class _KernelizedAttention(AttentionKernel):
    """What elu+1 and FAVOR+ share: everything except the feature map φ."""

    name = "kernelized"
    bounded_state = True  # a (head_dim x features) state and a normalizer per head
    segment_len = 4096  # tokens per recomputed segment in training (see the module docstring)

    def __init__(self, chunk_size: int, eps: float) -> None:
        super().__init__()
        if chunk_size < 1:
            raise ConfigError(f"attention {self.name!r}: chunk_size must be >= 1, got {chunk_size}")
        self.chunk_size, self.eps = chunk_size, eps

    @classmethod
    def check(cls, *, causal: bool, position: str, where: str) -> None:
        no_score_bias(cls.name, position, where)

    def features(self, x: Tensor, *, is_query: bool) -> Tensor:
        """φ(x): (batch, heads, L, head_dim) -> (batch, heads, L, features), all positive."""
        raise NotImplementedError

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool,
        key_padding_mask: Tensor | None = None, bias: ScoreBias | None = None,
    ) -> Tensor:
        refuse_score_bias(self.name, bias)
        heads = q.shape[1]
        phi_q = self.features(q, is_query=True)
        phi_k = self.features(expand_kv(k, heads), is_query=False)
        v = expand_kv(v, heads)
        padding = drop_empty_padding(key_padding_mask)
        if padding is not None:
            phi_k = phi_k.masked_fill(padding[:, None, :, None], 0.0)  # padded keys contribute nothing
        if not causal:
            kv = torch.einsum("bhlf,bhld->bhfd", phi_k, v)
            return self._normalise(phi_q @ kv, phi_q @ phi_k.sum(2)[..., None])
        # bottom-right alignment: keys before the first query form the initial state
        prefix = k.shape[2] - q.shape[2]
        state = LinearAttentionState()
        if prefix:
            state.kv = torch.einsum("bhlf,bhld->bhfd", phi_k[:, :, :prefix], v[:, :, :prefix])
            state.k_sum = phi_k[:, :, :prefix].sum(2)
        return self._causal(phi_q, phi_k[:, :, prefix:], v[:, :, prefix:], state)

    def _normalise(self, numerator: Tensor, denominator: Tensor) -> Tensor:
        return numerator / (denominator + self.eps)

    def _causal(self, phi_q: Tensor, phi_k: Tensor, v: Tensor, state: LinearAttentionState) -> Tensor:
        """Causal attention continuing from ``state`` (updated in place to include these keys)."""
        length, seg = phi_q.shape[2], self.segment_len
        kv, k_sum = state.kv, state.k_sum
        if length <= seg or not (torch.is_grad_enabled() and any(t.requires_grad for t in (phi_q, phi_k, v))):
            out, kv, k_sum = self._prefix_sums(phi_q, phi_k, v, kv, k_sum)
        else:
            outs = []
            for start in range(0, length, seg):
                part = slice(start, start + seg)
                o, kv, k_sum = checkpoint(self._prefix_sums, phi_q[:, :, part], phi_k[:, :, part], v[:, :, part],
                                          kv, k_sum, use_reentrant=False)
                outs.append(o)
            out = torch.cat(outs, dim=2)
        state.kv, state.k_sum = kv, k_sum
        state.length += length
        return out

    def _prefix_sums(self, phi_q: Tensor, phi_k: Tensor, v: Tensor, kv: Tensor | None, k_sum: Tensor | None,
                     ) -> tuple[Tensor, Tensor, Tensor]:
        """Chunked prefix sums from the running sums ``kv``, ``k_sum`` -> (output, new kv, new k_sum)."""
        length, c = phi_q.shape[2], self.chunk_size
        pad = -length % c
        if pad:
            phi_q, phi_k, v = (F.pad(t, (0, 0, 0, pad)) for t in (phi_q, phi_k, v))  # zero keys add nothing
        qc, kc, vc = (rearrange(t, "b h (n c) f -> b h n c f", c=c) for t in (phi_q, phi_k, v))
        chunk_kv = torch.einsum("bhncf,bhncd->bhnfd", kc, vc)  # each chunk's Σ φ(k) vᵀ
        chunk_k = kc.sum(3)  # (batch, heads, n, features)
        kv_before = chunk_kv.cumsum(2) - chunk_kv  # exclusive prefix over chunks
        k_before = chunk_k.cumsum(2) - chunk_k
        if kv is not None:
            kv_before, k_before = kv_before + kv[:, :, None], k_before + k_sum[:, :, None]
        inner = torch.einsum("bhncf,bhnmf->bhncm", qc, kc).tril()  # within-chunk, causal
        numerator = torch.einsum("bhncf,bhnfd->bhncd", qc, kv_before) + inner @ vc
        denominator = torch.einsum("bhncf,bhnf->bhnc", qc, k_before) + inner.sum(-1)
        out = self._normalise(numerator, denominator[..., None])
        total_kv, total_k = chunk_kv.sum(2), chunk_k.sum(2)
        kv = total_kv if kv is None else kv + total_kv
        k_sum = total_k if k_sum is None else k_sum + total_k
        return rearrange(out, "b h n c d -> b h (n c) d")[:, :, :length], kv, k_sum

    def new_state(self) -> LinearAttentionState:
        return LinearAttentionState()

    def step(self, q: Tensor, k: Tensor, v: Tensor, state: LinearAttentionState, *,
             bias: ScoreBias | None = None, start: Tensor | None = None) -> Tensor:
        refuse_score_bias(self.name, bias)
        heads = q.shape[1]
        phi_q = self.features(q, is_query=True)
        phi_k = self.features(expand_kv(k, heads), is_query=False)
        if start is not None:  # left padding never enters the running sums
            columns = torch.arange(state.length, state.length + k.shape[2], device=k.device)
            phi_k = phi_k.masked_fill((columns[None] < start[:, None])[:, None, :, None], 0.0)
        return self._causal(phi_q, phi_k, expand_kv(v, heads), state)


class LinearAttention(_KernelizedAttention):
    """Linear Transformer (Katharopoulos et al., 2020): φ(x) = elu(x) + 1."""

    name = "linear"

    def __init__(self, *, chunk_size: int = 64, eps: float = 1e-6) -> None:
        super().__init__(chunk_size, eps)

    def features(self, x: Tensor, *, is_query: bool) -> Tensor:
        return F.elu(x) + 1.0


class PerformerAttention(_KernelizedAttention):
    """Performer's FAVOR+ (Choromanski et al., 2021): positive orthogonal random features.

    φ(x) = exp(ωᵀx̂ − ‖x̂‖²/2) / √m with x̂ = x / d^¼ estimates exp(q·k/√d) without bias; the rows of ω
    are blockwise orthogonal with Gaussian norms. ω is drawn from (``seed``, draw count); with
    ``redraw`` every training forward draws new features. The draw count is a saved buffer, so a
    checkpoint reproduces its features exactly. Queries are stabilised by their own row maximum,
    which cancels in the normalisation (and so never leaks across positions).
    """

    name = "performer"

    def __init__(self, *, feature_dim: int = 256, redraw: bool = False, seed: int = 0, chunk_size: int = 64,
                 eps: float = 1e-6) -> None:
        super().__init__(chunk_size, eps)
        if feature_dim < 1:
            raise ConfigError(f"attention 'performer': feature_dim must be >= 1, got {feature_dim}")
        self.feature_dim, self.redraw, self.seed = feature_dim, redraw, seed
        self.register_buffer("draws", torch.zeros((), dtype=torch.long))
        self._omega: tuple[tuple, Tensor] | None = None

    def projection(self, head_dim: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        """ω: (feature_dim, head_dim), orthogonal blocks scaled by chi-distributed norms."""
        key = (head_dim, dtype, device, int(self.draws))
        if self._omega is None or self._omega[0] != key:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.draws))
            blocks = []
            for _ in range(-(-self.feature_dim // head_dim)):
                gaussian = torch.randn(head_dim, head_dim, generator=generator, dtype=torch.float64)
                blocks.append(torch.linalg.qr(gaussian).Q.T)
            omega = torch.cat(blocks)[: self.feature_dim]
            norms = torch.randn(self.feature_dim, head_dim, generator=generator, dtype=torch.float64).norm(dim=1)
            self._omega = (key, (omega * norms[:, None]).to(device=device, dtype=dtype))
        return self._omega[1]

    def forward(self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool,
                key_padding_mask: Tensor | None = None, bias: ScoreBias | None = None) -> Tensor:
        if self.redraw and self.training:
            self.draws += 1
        return super().forward(q, k, v, causal=causal, key_padding_mask=key_padding_mask, bias=bias)

    def features(self, x: Tensor, *, is_query: bool) -> Tensor:
        x = x * x.shape[-1] ** -0.25
        logits = x @ self.projection(x.shape[-1], x.dtype, x.device).T - (x * x).sum(-1, keepdim=True) / 2
        if is_query:
            logits = logits - logits.amax(-1, keepdim=True).detach()
        return torch.exp(logits) / math.sqrt(self.feature_dim)

