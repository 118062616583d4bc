"""Activation checkpointing (Chen et al., 2016): each layer's activations recomputed in the backward pass,
all of them or, *selectively*, only the cheap ones (Korthikanti et al., 2022)."""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts, noop_context_fn

from ..blocks import Layer

aten = torch.ops.aten
_PRODUCTS = {aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default}
_ATTENTION = {aten._scaled_dot_product_flash_attention_for_cpu.default,
              aten._scaled_dot_product_flash_attention.default, aten._scaled_dot_product_efficient_attention.default,
              aten._scaled_dot_product_cudnn_attention.default}
SHORT_PRODUCT = 128  # inner dimension below which a product is cheaper to redo than to keep (a LoRA B · (A x))


def keep_products(ctx, op, *args, **kwargs) -> CheckpointPolicy:  # noqa: ANN001 - torch's policy signature
    """Keep the outputs of attention and of matrix products over at least ``SHORT_PRODUCT`` terms; recompute the
    rest (norms, activations, rotary embeddings, dtype casts, short products): the backward pass then redoes
    only elementwise work, never a layer's GEMMs."""
    if op in _ATTENTION:
        return CheckpointPolicy.MUST_SAVE
    if op in _PRODUCTS and args[-2].shape[-1] >= SHORT_PRODUCT:  # (…, n, k) · (…, k, m)
        return CheckpointPolicy.MUST_SAVE
    return CheckpointPolicy.PREFER_RECOMPUTE


def enable_activation_checkpointing(model: nn.Module, selective: bool = False) -> None:
    """Recompute each layer's activations in the backward pass instead of storing them; ``selective`` keeps
    what :func:`keep_products` keeps."""
    context = functools.partial(create_selective_checkpoint_contexts, keep_products) if selective else noop_context_fn
    for module in model.modules():
        if isinstance(module, Layer):
            module.forward = functools.partial(checkpoint, module.forward, use_reentrant=False, context_fn=context)
