"""RoPE frequency scaling: stretch a rotary model's context past the length it was trained on.

Each function returns ``(inv_freq, attention_factor)`` for a head of ``dim`` channels, with the exact
arithmetic of Hugging Face's ``transformers.modeling_rope_utils`` (so a converted Llama 3 / Qwen /
YaRN model computes the same angles). ``attention_factor`` multiplies cos and sin (YaRN's "mscale").

- linear (Chen et al., 2023, position interpolation): every frequency divided by ``factor``.
- ntk: static "NTK-aware" scaling (bloc97, 2023): the base becomes ``base · factor^(dim / (dim − 2))``.
- dynamic: NTK-aware scaling whose base grows with the current length once it passes
  ``original_max_positions`` (emozilla, 2023); recomputed per call from the largest position.
- llama3: Llama 3.1's band-wise rule: long wavelengths divided by ``factor``, short kept, smooth between.
- yarn (Peng et al., 2023): per-frequency blend of interpolation and extrapolation, plus an attention factor.
- longrope (Ding et al., 2024; Phi-3's "su"): searched per-frequency factors, a short set up to
  ``original_max_positions`` and a long set past it (chosen per call from the largest position).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

SCALINGS = ("linear", "dynamic", "ntk", "llama3", "yarn", "longrope")


def default_inv_freq(dim: int, base: float) -> Tensor:
    """Plain RoPE: ``base^(−2i/dim)`` for i < dim/2 (Su et al., 2021)."""
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))


def linear_inv_freq(dim: int, base: float, *, factor: float) -> tuple[Tensor, float]:
    return default_inv_freq(dim, base) / factor, 1.0


def ntk_inv_freq(dim: int, base: float, *, factor: float) -> tuple[Tensor, float]:
    return default_inv_freq(dim, base * factor ** (dim / (dim - 2))), 1.0


def dynamic_inv_freq(dim: int, base: float, *, factor: float, original_max_positions: int,
                     seq_len: int) -> tuple[Tensor, float]:
    """HF's ``_compute_dynamic_ntk_parameters``: unchanged up to ``original_max_positions``."""
    seq_len = max(seq_len, original_max_positions)
    base = base * ((factor * seq_len / original_max_positions) - (factor - 1)) ** (dim / (dim - 2))
    return default_inv_freq(dim, base), 1.0


def llama3_inv_freq(dim: int, base: float, *, factor: float, original_max_positions: int,
                    low_freq_factor: float, high_freq_factor: float) -> tuple[Tensor, float]:
    """HF's ``_compute_llama3_parameters``."""
    inv_freq = default_inv_freq(dim, base)
    low_freq_wavelen = original_max_positions / low_freq_factor
    high_freq_wavelen = original_max_positions / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (original_max_positions / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, scaled), 1.0


def yarn_attention_factor(factor: float) -> float:
    """YaRN's default cos/sin scale ``0.1 · ln(factor) + 1`` (1 when not stretching)."""
    return 1.0 if factor <= 1 else 0.1 * math.log(factor) + 1.0


def yarn_inv_freq(dim: int, base: float, *, factor: float, original_max_positions: int, beta_fast: float,
                  beta_slow: float, attention_factor: float | None, truncate: bool) -> tuple[Tensor, float]:
    """HF's ``_compute_yarn_parameters``: frequencies that turn more than ``beta_fast`` times over the
    original context are kept (extrapolated), fewer than ``beta_slow`` times interpolated, a linear ramp between."""

    def correction_dim(rotations: float) -> float:
        return (dim * math.log(original_max_positions / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # HF: prevent a division by zero
    ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
    pos_freqs = base ** (torch.arange(0, dim, 2).float() / dim)
    extrapolation, interpolation = 1.0 / pos_freqs, 1.0 / (factor * pos_freqs)
    keep = 1 - ramp  # share of the extrapolated (unscaled) frequency
    inv_freq = interpolation * (1 - keep) + extrapolation * keep
    return inv_freq, yarn_attention_factor(factor) if attention_factor is None else attention_factor


def longrope_inv_freq(dim: int, base: float, *, factor: float, original_max_positions: int,
                      short_factor: list[float], long_factor: list[float], attention_factor: float | None,
                      seq_len: int) -> tuple[Tensor, float]:
    """HF's ``_compute_longrope_parameters``: ``base^(2i/dim)`` times the i-th factor of the short set, or of
    the long set once the sequence passes ``original_max_positions``; cos/sin scaled by
    √(1 + ln(factor) / ln(original_max_positions))."""
    factors = torch.tensor(long_factor if seq_len > original_max_positions else short_factor, dtype=torch.float32)
    inv_freq = 1.0 / (factors * base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    if attention_factor is None:
        attention_factor = 1.0 if factor <= 1 else math.sqrt(1 + math.log(factor) / math.log(original_max_positions))
    return inv_freq, attention_factor


def scaled_inv_freq(dim: int, base: float, scaling: str | None, *, factor: float = 1.0,
                    original_max_positions: int = 2048, low_freq_factor: float = 1.0, high_freq_factor: float = 4.0,
                    beta_fast: float = 32.0, beta_slow: float = 1.0, attention_factor: float | None = None,
                    truncate: bool = True, short_factor: list[float] | None = None,
                    long_factor: list[float] | None = None, seq_len: int = 0) -> tuple[Tensor, float]:
    """``(inv_freq (dim/2,), attention_factor)`` of RoPE scaled by ``scaling`` (None = plain RoPE)."""
    if scaling is None:
        return default_inv_freq(dim, base), 1.0
    if scaling == "linear":
        return linear_inv_freq(dim, base, factor=factor)
    if scaling == "ntk":
        return ntk_inv_freq(dim, base, factor=factor)
    if scaling == "dynamic":
        return dynamic_inv_freq(dim, base, factor=factor, original_max_positions=original_max_positions,
                                seq_len=seq_len)
    if scaling == "llama3":
        return llama3_inv_freq(dim, base, factor=factor, original_max_positions=original_max_positions,
                               low_freq_factor=low_freq_factor, high_freq_factor=high_freq_factor)
    if scaling == "yarn":
        return yarn_inv_freq(dim, base, factor=factor, original_max_positions=original_max_positions,
                             beta_fast=beta_fast, beta_slow=beta_slow, attention_factor=attention_factor,
                             truncate=truncate)
    if scaling == "longrope":
        return longrope_inv_freq(dim, base, factor=factor, original_max_positions=original_max_positions,
                                 short_factor=short_factor, long_factor=long_factor,
                                 attention_factor=attention_factor, seq_len=seq_len)
    raise ValueError(f"unknown rope scaling {scaling!r}; allowed: {', '.join(SCALINGS)}")
