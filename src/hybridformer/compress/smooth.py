"""SmoothQuant (Xiao et al., 2023): move activation outliers into the weights before dynamic int8.

An LLM's activations have a few channels far larger than the rest, so one int8 scale per token loses
the others. For a linear layer ``y = W x`` fed by a producer whose output channels can be divided by
``s`` exactly, ``y = (W diag(s)) (x / s)``; with ``s_j = max|x_j|^α / max|W_{:,j}|^(1-α)`` (peaks measured
on calibration text) both factors quantize well. The division is folded into the producer, so the float
model computes the same function (up to rounding) and runs at the same speed:

- a pre-norm's affine weight (and bias) -> the first projection of the attention or FFN it feeds;
- the value rows of the fused QKV projection -> the attention output projection (attention outputs are
  weighted sums of values; with GQA one factor per key/value head channel, shared by its query heads);
- the linear half of a gated FFN (``act(W1a x) ⊙ W1b x``) -> the FFN output projection;
- the stack's final norm -> the vocabulary projection (untied from the embeddings).

Any other layer (convolution modules, SSMs, non-gated FFNs, cross-attention) is left as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from ..attention.multihead import MultiHeadAttention
from ..blocks.residual import Residual
from ..ffn import FeedForward

Divide = Callable[[Tensor], None]  # divides the producer's output channels by s, in place
Share = Callable[[Tensor], tuple[Tensor, Tensor]]  # s -> (the producer's factors, the consumer's)


@torch.no_grad()
def activation_peaks(model: nn.Module, batches: Sequence) -> dict[nn.Linear, Tensor]:
    """The largest |input| of every channel of every ``nn.Linear`` of ``model`` over ``batches``
    (token tensors, or ``(src, tgt)`` pairs for seq2seq)."""
    peaks: dict[nn.Linear, Tensor] = {}

    def record(linear: nn.Linear, args: tuple) -> None:
        peak = args[0].detach().abs().flatten(0, -2).amax(0).float()
        peaks[linear] = peak if linear not in peaks else torch.maximum(peaks[linear], peak)

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, nn.Linear)]
    try:
        model.eval()
        for batch in batches:
            model(*batch) if isinstance(batch, tuple) else model(batch)
    finally:
        for hook in hooks:
            hook.remove()
    return peaks


@torch.no_grad()
def smooth(model: nn.Module, peaks: dict[nn.Linear, Tensor], alpha: float = 0.5) -> int:
    """Fold SmoothQuant factors into ``model`` (float, in place) and return how many layers were smoothed."""
    count = 0
    for divide, linear, share in _pairs(model):
        if linear not in peaks:  # never reached by the calibration text
            continue
        weight_peak = linear.weight.abs().amax(0).float().clamp(min=1e-5)
        s = (peaks[linear].clamp(min=1e-5) ** alpha / weight_peak ** (1 - alpha)).clamp(min=1e-5)
        producer, consumer = share(s)
        divide(producer)
        linear.weight = nn.Parameter(linear.weight * consumer.to(linear.weight.dtype), requires_grad=False)  # unties
        count += 1
    return count


def _pairs(model: nn.Module) -> Iterator[tuple[Divide, nn.Linear, Share]]:
    """(divide the producer by s, the consumer, the factors of each) for every exact fold."""
    for module in model.modules():
        if isinstance(module, Residual) and module.prenorm and _affine(module.norm):
            first = _first_projection(module.body)
            if first is not None:
                yield _norm_divider(module.norm), first, _same
        if isinstance(module, MultiHeadAttention):
            values = slice((module.heads + module.kv_heads) * module.head_dim, None)
            yield _rows_divider(module.qkv_proj, values), module.out_proj, _value_sharer(module)
        if isinstance(module, FeedForward) and module.gated:
            yield _rows_divider(module.linear1, slice(module.linear2.in_features, None)), module.linear2, _same
    decoder = getattr(model, "decoder", None)
    output = getattr(model, "output", None)
    if isinstance(output, nn.Linear) and _affine(getattr(decoder, "final_norm", None)):
        yield _norm_divider(decoder.final_norm), output, _same


def _same(s: Tensor) -> tuple[Tensor, Tensor]:
    return s, s


def _value_sharer(attention: MultiHeadAttention) -> Share:
    """Query head ``h`` reads value head ``h // groups`` (GQA): the group shares its largest factor."""
    groups = attention.heads // attention.kv_heads

    def share(s: Tensor) -> tuple[Tensor, Tensor]:
        values = s.view(attention.kv_heads, groups, attention.head_dim).amax(1)  # (kv_heads, head_dim)
        return values.flatten(), values.repeat_interleave(groups, 0).flatten()
    return share


def _affine(norm: nn.Module | None) -> bool:
    """A LayerNorm or RMSNorm with a per-channel weight (Gemma's ``1 + w`` form is left alone)."""
    return type(norm) in (nn.LayerNorm, nn.RMSNorm) and norm.weight is not None


def _first_projection(body: nn.Module) -> nn.Linear | None:
    if isinstance(body, MultiHeadAttention):
        return body.qkv_proj
    return body.linear1 if isinstance(body, FeedForward) else None


def _norm_divider(norm: nn.Module) -> Divide:
    def divide(s: Tensor) -> None:
        for param in (norm.weight, getattr(norm, "bias", None)):
            if param is not None:
                param.div_(s.to(param.dtype))
    return divide


def _rows_divider(linear: nn.Linear, rows: slice) -> Divide:
    def divide(s: Tensor) -> None:
        linear.weight[rows].div_(s.to(linear.weight.dtype)[:, None])
        if linear.bias is not None:
            linear.bias[rows].div_(s.to(linear.bias.dtype))
    return divide
