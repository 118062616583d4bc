"""Low-rank approximations of the attention matrix: Linformer and Nyströmformer (non-causal only).

Both summarise the whole key sequence (a learned length projection, or segment-mean landmarks),
so every output depends on every key: they cannot be causal and have no incremental decoding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .base import AttentionKernel, attend, expand_kv, no_score_bias, refuse_score_bias
from .bias import ScoreBias
from .masks import drop_empty_padding

CANNOT_BE_CAUSAL = ("cannot be causal (it mixes the whole sequence); use 'linear', 'performer', "
                    "'sliding_window', 'block_sparse' or 'chunked' in a decoder")


class _NonCausal(AttentionKernel):
    name = "low_rank"

    @classmethod
    def check(cls, *, causal: bool, position: str, where: str) -> None:
        if causal:
            raise ConfigError(f"{where}: attention.name={cls.name!r} {CANNOT_BE_CAUSAL}")
        no_score_bias(cls.name, position, where)

    def refuse(self, causal: bool, bias: ScoreBias | None) -> None:
        """A direct call must not get a silently non-causal (or unbiased) answer: refuse, naming both."""
        if causal:
            raise ConfigError(f"attention {self.name!r} got causal=True but {CANNOT_BE_CAUSAL}")
        refuse_score_bias(self.name, bias)

    def step(self, q: Tensor, k: Tensor, v: Tensor, state, *, bias: ScoreBias | None = None) -> Tensor:
        raise ConfigError(f"attention {self.name!r} is non-causal and cannot decode incrementally")


class LinformerAttention(_NonCausal):
    """Linformer (Wang et al., 2020): keys and values projected along the length to ``proj_len`` rows
    by learned matrices E, F (proj_len × max_len, shared by heads), so attention costs O(L · proj_len).
    Sequences shorter than ``max_len`` use the first columns; padded keys are zeroed first.
    """

    name = "linformer"

    def __init__(self, *, proj_len: int = 64, max_len: int = 4096, dropout: float = 0.0) -> None:
        super().__init__()
        for key, value in (("proj_len", proj_len), ("max_len", max_len)):
            if value < 1:
                raise ConfigError(f"attention 'linformer': {key} must be >= 1, got {value}")
        self.max_len, self.dropout = max_len, dropout
        self.proj_k = nn.Parameter(torch.randn(proj_len, max_len) / math.sqrt(proj_len))
        self.proj_v = nn.Parameter(torch.randn(proj_len, max_len) / math.sqrt(proj_len))

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool,
        key_padding_mask: Tensor | None = None, bias: ScoreBias | None = None,
    ) -> Tensor:
        self.refuse(causal, bias)
        length = k.shape[2]
        if length > self.max_len:
            raise ValueError(f"linformer got {length} keys but max_len={self.max_len}; raise attention.max_len")
        padding = drop_empty_padding(key_padding_mask)
        if padding is not None:
            keep = (~padding)[:, None, :, None].to(k.dtype)
            k, v = k * keep, v * keep
        k = self.proj_k[:, :length].to(k.dtype) @ k  # (batch, kv_heads, proj_len, head_dim)
        v = self.proj_v[:, :length].to(v.dtype) @ v
        return attend(q, k, v, dropout=self.dropout if self.training else 0.0)


class NystromAttention(_NonCausal):
    """Nyströmformer (Xiong et al., 2021): softmax(QKᵀ) ≈ softmax(QK̃ᵀ) · pinv(softmax(Q̃K̃ᵀ)) · softmax(Q̃Kᵀ),
    with ``num_landmarks`` landmarks Q̃, K̃ = means of contiguous segments (of non-padding tokens) and
    the pseudo-inverse by ``pinv_iterations`` steps of the Razavi et al. (2014) iteration. O(L · m).
    """

    name = "nystrom"

    def __init__(self, *, num_landmarks: int = 32, pinv_iterations: int = 6) -> None:
        super().__init__()
        if num_landmarks < 1 or pinv_iterations < 1:
            raise ConfigError(f"attention 'nystrom': num_landmarks and pinv_iterations must be >= 1, "
                              f"got {num_landmarks} and {pinv_iterations}")
        self.num_landmarks, self.pinv_iterations = num_landmarks, pinv_iterations

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool,
        key_padding_mask: Tensor | None = None, bias: ScoreBias | None = None,
    ) -> Tensor:
        self.refuse(causal, bias)
        heads, length = q.shape[1], k.shape[2]
        k, v = expand_kv(k, heads), expand_kv(v, heads)
        padding = drop_empty_padding(key_padding_mask)
        keep = torch.ones(k.shape[0], length, dtype=torch.bool, device=k.device) if padding is None else ~padding
        m = min(self.num_landmarks, length)
        q_land, k_land, land_ok = self._landmarks(q, keep, m), self._landmarks(k, keep, m), self._landmark_mask(keep, m)
        land_cols, scale = land_ok[:, None, None, :], 1.0 / math.sqrt(q.shape[-1])  # (batch, 1, 1, m)
        kernel_1 = torch.softmax((q @ k_land.transpose(-1, -2) * scale).masked_fill(~land_cols, float("-inf")), -1)
        kernel_2 = torch.softmax((q_land @ k_land.transpose(-1, -2) * scale).masked_fill(~land_cols, float("-inf")), -1)
        eye = torch.eye(m, dtype=q.dtype, device=q.device)
        kernel_2 = torch.where(land_ok[:, None, :, None], kernel_2.nan_to_num(0.0), eye)  # empty landmarks: identity
        kernel_3 = attend(q_land, k, v, allowed=keep[:, None, None, :], bias=None)  # softmax(Q̃Kᵀ) V
        return kernel_1 @ (self._pinv(kernel_2) @ kernel_3)

    def _landmarks(self, x: Tensor, keep: Tensor, m: int) -> Tensor:
        """Mean of the non-padding rows of each of ``m`` contiguous segments: (batch, heads, m, d)."""
        x = x * keep[:, None, :, None].to(x.dtype)
        pad = -x.shape[2] % m
        sums = F.pad(x, (0, 0, 0, pad)).unflatten(2, (m, -1)).sum(3)
        return sums / self._counts(keep, m)[:, None, :, None].clamp(min=1).to(x.dtype)

    def _counts(self, keep: Tensor, m: int) -> Tensor:
        return F.pad(keep.long(), (0, -keep.shape[1] % m)).unflatten(1, (m, -1)).sum(2)

    def _landmark_mask(self, keep: Tensor, m: int) -> Tensor:
        return self._counts(keep, m) > 0  # (batch, m): segments holding at least one real token

    def _pinv(self, matrix: Tensor) -> Tensor:
        """Iterative Moore–Penrose pseudo-inverse (Razavi et al., 2014), as in the Nyströmformer paper."""
        identity = torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device)
        scale = matrix.abs().sum(-2).amax(-1) * matrix.abs().sum(-1).amax(-1)
        z = matrix.transpose(-1, -2) / scale[..., None, None]
        for _ in range(self.pinv_iterations):
            kz = matrix @ z
            z = 0.25 * z @ (13 * identity - kz @ (15 * identity - kz @ (7 * identity - kz)))
        return z
