"""Per-head gates and head importance (Michel et al., 2019, "Are Sixteen Heads Really Better than One?").

Every attention head ``h`` of a module gets a multiplicative gate ``ξ_h`` on its output before
the output projection: ``out_proj(concat_h ξ_h · Att_h(x))``. With all gates at 1 the model is
unchanged; the importance of a head is the expected absolute sensitivity of the loss to its gate,
``I_h = E_x |∂L(x)/∂ξ_h|``, estimated on held-out batches. A gate set to 0 masks the head.

The gates are forward pre-hooks on each attention module's ``out_proj`` (whose input is the
concatenated head outputs), so the attention modules themselves carry no gate and the normal
forward pass pays nothing when no gates are installed.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attention.head_subset import attention_modules


class HeadGates:
    """Gates ``ξ`` (one tensor of shape (heads,) per attention module), installed as hooks while in use.

    ``with HeadGates(model) as gates: gates[name][h] = 0`` masks head ``h`` of module ``name``;
    with ``requires_grad=True`` the gates collect gradients for :func:`head_importance`.
    """

    def __init__(self, model: nn.Module, *, requires_grad: bool = False) -> None:
        self.gates: dict[str, Tensor] = {}
        self._handles = []
        for name, module in attention_modules(model).items():
            weight = next(module.out_proj.parameters(), None)  # None for int8 layers: gates stay float32
            gate = torch.ones(module.heads, device=None if weight is None else weight.device,
                              dtype=None if weight is None else weight.dtype, requires_grad=requires_grad)
            self.gates[name] = gate
            self._handles.append(module.out_proj.register_forward_pre_hook(_gate_hook(gate, module.head_dim)))

    def __getitem__(self, name: str) -> Tensor:
        return self.gates[name]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> HeadGates:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _gate_hook(gate: Tensor, head_dim: int):
    def hook(module: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        heads_out = args[0]  # (batch, len, heads * head_dim): the concatenated head outputs
        return (heads_out * gate.repeat_interleave(head_dim).to(heads_out.dtype),) + args[1:]

    return hook


def batch_loss(model: nn.Module, batch) -> Tensor:
    """Mean token cross-entropy of one batch, padding ignored.

    ``(src, tgt)`` for an encoder-decoder (``tgt`` = BOS … EOS, teacher-forced), a token tensor
    for a decoder LM, ``(tokens, labels)`` for an encoder classifier.
    """
    if hasattr(model, "tgt_embed"):
        src, tgt = batch
        logits = model(src, tgt[:, :-1])
        return F.cross_entropy(_wide(logits).flatten(0, 1), tgt[:, 1:].flatten(), ignore_index=model.pad_id)
    if hasattr(model, "head"):
        tokens, labels = batch
        return F.cross_entropy(_wide(model(tokens)), labels)
    logits = model(batch[:, :-1])
    return F.cross_entropy(_wide(logits).flatten(0, 1), batch[:, 1:].flatten(), ignore_index=model.pad_id)


def _wide(logits: Tensor) -> Tensor:
    """At least float32 for the softmax (half-precision logits), never narrower than given."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def head_importance(model: nn.Module, batches: Iterable) -> dict[str, Tensor]:
    """Michel et al.'s ``I_h = E_x |∂L/∂ξ_h|`` for every head, averaged over ``batches`` (eval mode).

    Returns ``{module path: (heads,)}``; a larger value means removing the head costs more loss.
    """
    was_training = model.training
    model.eval()
    totals: dict[str, Tensor] = {}
    count = 0
    with HeadGates(model, requires_grad=True) as gates:
        names = list(gates.gates)
        for batch in batches:
            grads = torch.autograd.grad(batch_loss(model, batch), [gates[n] for n in names])
            for name, grad in zip(names, grads, strict=True):
                totals[name] = totals.get(name, 0) + grad.detach().abs().float()
            count += 1
    model.train(was_training)
    if count == 0:
        raise ValueError("head_importance needs at least one batch of held-out data")
    return {name: total / count for name, total in totals.items()}


def weight_importance(model: nn.Module) -> dict[str, Tensor]:
    """A data-free proxy: the Frobenius norm of each head's slice of the output projection.

    Used only when no held-out data is given; it ignores what the head attends to, so prefer
    :func:`head_importance` (Michel et al., 2019) whenever a validation set exists.
    """
    scores = {}
    for name, module in attention_modules(model).items():
        columns = module.out_proj.weight.detach().float().view(-1, module.heads, module.head_dim)
        scores[name] = columns.pow(2).sum(dim=(0, 2)).sqrt()
    return scores
