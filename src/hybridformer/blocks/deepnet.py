"""DeepNet residual scaling (Wang et al., 2022): up-weight the skip path, down-scale some inits.

With post-norm ``norm(α·x + f(x))`` and value/output/FFN weights initialised with gain β, the
model update per layer stays bounded, so post-norm stacks of hundreds of layers train stably.
"""

from __future__ import annotations

from torch import nn

from ..attention.multihead import CrossAttention, MultiHeadAttention
from ..ffn import FeedForward


def deepnet_constants(arch: str, encoder_layers: int, decoder_layers: int) -> dict[str, tuple[float, float]]:
    """``{"encoder": (α, β), "decoder": (α, β)}`` from the paper's Table 1."""
    n, m = max(encoder_layers, 1), max(decoder_layers, 1)
    if arch == "encoder_decoder":
        return {
            "encoder": (0.81 * (n**4 * m) ** (1 / 16), 0.87 * (n**4 * m) ** (-1 / 16)),
            "decoder": ((3 * m) ** 0.25, (12 * m) ** -0.25),
        }
    layers = m if arch == "decoder_lm" else n
    single = ((2 * layers) ** 0.25, (8 * layers) ** -0.25)
    return {"encoder": single, "decoder": single}


def deepnet_init(stack: nn.Module, beta: float) -> None:
    """Xavier-normal init: gain β for values, attention outputs and FFNs; gain 1 for queries/keys."""
    for module in stack.modules():
        if isinstance(module, FeedForward):
            for linear in (module.linear1, module.linear2):
                nn.init.xavier_normal_(linear.weight, gain=beta)
        elif isinstance(module, MultiHeadAttention):
            q_k = (module.heads + module.kv_heads) * module.head_dim
            nn.init.xavier_normal_(module.qkv_proj.weight[:q_k])
            nn.init.xavier_normal_(module.qkv_proj.weight[q_k:], gain=beta)
            nn.init.xavier_normal_(module.out_proj.weight, gain=beta)
        elif isinstance(module, CrossAttention):
            k = module.kv_heads * module.head_dim
            nn.init.xavier_normal_(module.q_proj.weight)
            nn.init.xavier_normal_(module.kv_proj.weight[:k])
            nn.init.xavier_normal_(module.kv_proj.weight[k:], gain=beta)
            nn.init.xavier_normal_(module.out_proj.weight, gain=beta)
