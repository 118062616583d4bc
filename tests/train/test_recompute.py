"""Selective activation checkpointing: the same loss and gradients as storing everything (full model and LoRA),
and a backward pass that redoes no long matrix product and no attention (counted by torch's FLOP counter)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from hybridformer import ModelConfig, build_model
from hybridformer.config import LoraConfig
from hybridformer.train import enable_activation_checkpointing
from hybridformer.train.losses import chunked_label_nll

CFG = ModelConfig(arch="decoder_lm", vocab_size=61, d_model=128, heads=4, kv_heads=2, ffn_dim=256,
                  activation="swiglu", norm="rmsnorm", position="rope", dropout=0.0, attention_bias=False,
                  ffn_bias=False, decoder={"layers": 2})


def _step(recompute: str | None, lora: bool) -> tuple[float, int, dict[str, torch.Tensor]]:
    """(loss, FLOPs of the backward pass, gradients) of one bf16-autocast step of the same model."""
    torch.manual_seed(0)
    model = build_model(CFG)
    if lora:
        from hybridformer.lora import add_lora, lora_layout

        add_lora(model, lora_layout(model, CFG, {}), LoraConfig(rank=4, alpha=8))
        for name, param in model.named_parameters():
            if "lora_B" in name:  # B starts at zero: give the adapters a gradient to check through them
                param.data.normal_(std=0.1)
    if recompute:
        enable_activation_checkpointing(model, selective=recompute == "selective")
    tokens = torch.randint(3, CFG.vocab_size, (2, 33), generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", torch.bfloat16):
        loss, _, count = chunked_label_nll(model.states(tokens[:, :-1]), model.output, tokens[:, 1:], chunk=16,
                                           epsilon=0.1, ignore_index=0)
    with FlopCounterMode(display=False) as flops:
        (loss / count).backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
    return loss.item(), flops.get_total_flops(), grads


@pytest.mark.parametrize("lora", [False, True])
def test_selective_recompute_gives_the_same_gradients_and_keeps_less(lora: bool) -> None:
    (loss, flops, grads), (sel_loss, sel_flops, sel_grads), (_, all_flops, _) = (
        _step(recompute, lora) for recompute in (None, "selective", "all"))
    assert sel_loss == pytest.approx(loss, rel=1e-6)
    assert grads.keys() == sel_grads.keys() and len(grads) > 0
    for name, grad in grads.items():
        torch.testing.assert_close(sel_grads[name], grad, rtol=1e-5, atol=1e-6, msg=name)
    redone, all_redone = sel_flops - flops, all_flops - flops  # forward work redone in the backward pass
    assert all_redone > 0 and 0 <= redone <= (0.1 * all_redone if lora else 0)  # only LoRA's B · (A x) products
