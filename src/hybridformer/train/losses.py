"""Label-smoothed cross-entropy (Szegedy et al., 2016), as used for Transformer training (Vaswani et al., 2017)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def label_smoothed_nll(logits: Tensor, target: Tensor, *, epsilon: float, ignore_index: int,
                       ) -> tuple[Tensor, Tensor, Tensor]:
    """Summed losses over non-ignored tokens.

    logits: (..., vocab), target: (...). Returns ``(loss_sum, nll_sum, n_tokens)`` where the
    smoothed loss is ``(1 - eps) * nll + eps * mean_over_vocab(-log p)`` — the same quantity as
    ``F.cross_entropy(label_smoothing=eps)`` — and ``nll_sum`` is the plain negative log-likelihood
    (for validation loss and perplexity). Computed in float32 whatever the autocast dtype.
    """
    lprobs = F.log_softmax(logits.float(), dim=-1)
    keep = target.ne(ignore_index)
    safe_target = target.masked_fill(~keep, 0)
    nll = -lprobs.gather(-1, safe_target.unsqueeze(-1)).squeeze(-1)
    smooth = -lprobs.mean(dim=-1)
    keep_f = keep.to(lprobs.dtype)
    nll_sum = (nll * keep_f).sum()
    loss_sum = (1.0 - epsilon) * nll_sum + epsilon * (smooth * keep_f).sum()
    return loss_sum, nll_sum, keep.sum()


def chunked_label_nll(states: Tensor, output: nn.Module, target: Tensor, *, chunk: int, epsilon: float,
                      ignore_index: int) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`label_smoothed_nll` of ``output(states)`` by ``torch.nn.functional.linear_cross_entropy``'s
    chunked path: ``chunk`` positions at a time, so the (tokens × vocab) logits never exist whole (2,048 tokens ×
    SmolLM2's 49,152 words are 400 MB per copy in float32). When a gradient is wanted it is computed in the
    forward pass, chunk by chunk, and the logits are never recomputed; the total is then summed in the autocast
    dtype (bf16: within ~0.4%, which is what a training log shows). Without gradients (validation) per-position
    losses are summed in float32, exact. A frozen head (LoRA) works in the autocast dtype throughout: on CPU the
    float32 accumulation of bf16 products measured 4x slower; a trained head's gradient accumulates in float32.

    Label smoothing needs no second pass: per position ``-mean_v log p = nll + z_target - mean_v z``, and the
    logits' mean over the vocabulary is linear in the states, so ``loss = nll + eps · (z_target - mean_v z)``.
    states: (..., d_model), target: (...). The sums equal the unchunked ones up to float rounding.
    """
    rows, labels = states.flatten(0, -2), target.flatten()
    device = rows.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else rows.dtype
    weight = output.weight if isinstance(output, nn.Linear) else output.dequantized()  # an int8 LoRA base's
    bias = output.bias
    options = torch.nn.LinearCrossEntropyOptions(batch_chunk_size=chunk, chunking_method=None, acc_policy="accurate",
                                                 acc_dtype=torch.float32 if weight.requires_grad else dtype)
    graded = torch.is_grad_enabled() and (rows.requires_grad or weight.requires_grad)
    nll_sum = F.linear_cross_entropy(rows.to(dtype), weight.to(dtype), labels, reduction="sum" if graded else "none",
                                     linear_bias=None if bias is None else bias.to(dtype),
                                     ignore_index=ignore_index, options=options).float().sum()
    keep = labels.ne(ignore_index)
    loss_sum = nll_sum
    if epsilon:
        kept = labels[keep]
        spread = (rows[keep] * (weight[kept] - weight.mean(0)).to(rows.dtype)).sum(-1)
        if bias is not None:
            spread = spread + (bias[kept] - bias.mean())
        loss_sum = nll_sum + epsilon * spread.float().sum()
    return loss_sum, nll_sum, keep.sum()


LabelLoss = Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]


class TrainLoss(Protocol):
    """A training objective the trainer accepts in place of label-smoothed cross-entropy (``train(loss=...)``).

    Called once per micro-batch with the model's ``logits`` (batch, length, vocab), the padded
    ``batch`` (``src`` for seq2seq, ``tgt_in``, ``tgt_out``, on the training device) and
    ``label_loss(logits) -> (loss_sum, nll_sum, n_tokens)``, the trainer's own label-smoothed loss.
    Returns ``(loss_sum, nll_sum, n_tokens, extras)``: the trainer divides ``loss_sum`` by
    ``n_tokens`` and backpropagates it; ``extras`` are named sums logged per token in
    ``metrics.jsonl`` (e.g. ``kl``). It must be deterministic given the student's weights and the
    batch (anything random must use the global RNG, which the trainer reseeds every step), so exact
    resume keeps working. Validation does not call it: it always reports the label NLL.
    """

    def __call__(self, logits: Tensor, batch: dict[str, Tensor], label_loss: LabelLoss,
                 ) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]: ...
