"""Retrieval heads keep their whole past, streaming heads a window with sinks (DuoAttention, RazorAttention)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..cache import SplitHeadsState
from ..errors import ConfigError
from ..position import Rotation
from .base import AttentionKernel, no_score_bias, refuse_score_bias
from .bias import ScoreBias
from .full import FullAttention
from .local import SlidingWindowAttention


class RetrievalHeadsAttention(AttentionKernel):
    """The kv heads ``full_heads`` (with their query heads) attend every earlier key; every other head is a
    ``sliding_window`` streaming head: its ``window`` last keys and ``num_global`` sinks.

    A few heads fetch a fact from far back (retrieval heads, Wu et al., 2024); the rest read local context, and
    a window with sinks serves them (StreamingLLM). Keeping a full cache for the retrieval heads only keeps
    recall at a fraction of full attention's decoding memory (DuoAttention, Xiao et al., 2024; RazorAttention,
    Tang et al., 2024). Each layer lists its own heads; ``hybridformer longify --retrieval-heads N`` scores every
    kv head on generated pass-key prompts and keeps the N best (:mod:`hybridformer.retrieval`).
    """

    def __init__(self, *, full_heads: tuple[int, ...] = (0,), window: int = 256, num_global: int = 0,
                 sink_positions: str = "absolute", chunk_size: int = 128) -> None:
        super().__init__()
        if any(h < 0 for h in full_heads) or len(set(full_heads)) != len(full_heads):
            raise ConfigError(f"attention 'retrieval_heads': full_heads must be distinct kv head indices >= 0, "
                              f"got {list(full_heads)}")
        self.full_heads = tuple(sorted(full_heads))
        self.full = FullAttention()
        self.local = SlidingWindowAttention(window=window, num_global=num_global, sink_positions=sink_positions,
                                            chunk_size=chunk_size)
        self.rotates_sinks, self.left_padding = self.local.rotates_sinks, self.local.left_padding
        self._split: dict[tuple[int, int, torch.device], tuple[Tensor, ...]] = {}

    @classmethod
    def check(cls, *, causal: bool, position: str, where: str) -> None:
        if not causal:
            raise ConfigError(f"{where}: attention 'retrieval_heads' is for causal (decoder) stacks: it keeps a "
                              "decoding cache per head")
        no_score_bias("retrieval_heads", position, where)

    def _heads(self, q: Tensor, k: Tensor) -> tuple[Tensor, ...]:
        """Query and kv head indices of the retrieval heads and of the streaming heads (grouped query heads
        follow their kv head)."""
        kv_heads, groups = k.shape[1], q.shape[1] // k.shape[1]
        key = (kv_heads, groups, q.device)
        if key not in self._split:
            if self.full_heads and self.full_heads[-1] >= kv_heads:
                raise ConfigError(f"attention 'retrieval_heads': full_heads lists kv head {self.full_heads[-1]}, but "
                                  f"the layer has kv heads 0..{kv_heads - 1}")
            full = torch.tensor(self.full_heads, dtype=torch.long, device=q.device)
            local = torch.tensor([h for h in range(kv_heads) if h not in self.full_heads], dtype=torch.long,
                                 device=q.device)
            queries = torch.arange(groups, device=q.device)
            self._split[key] = (full, local, (full[:, None] * groups + queries).flatten(),
                                (local[:, None] * groups + queries).flatten())
        return self._split[key]

    def forward(self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool, key_padding_mask: Tensor | None = None,
                bias: ScoreBias | None = None, rope: Rotation | None = None) -> Tensor:
        refuse_score_bias("retrieval_heads", bias)
        return self._merge(q, k, v, lambda *part: self.full(*part, causal=causal, key_padding_mask=key_padding_mask),
                           lambda *part: self.local(*part, causal=causal, key_padding_mask=key_padding_mask, rope=rope))

    def new_state(self) -> SplitHeadsState:
        return SplitHeadsState(self.full.new_state(), self.local.new_state())

    def step(self, q: Tensor, k: Tensor, v: Tensor, state: SplitHeadsState, *, bias: ScoreBias | None = None,
             rope: Rotation | None = None, start: Tensor | None = None) -> Tensor:
        refuse_score_bias("retrieval_heads", bias)
        return self._merge(q, k, v, lambda *part: self.full.step(*part, state.full, start=start),
                           lambda *part: self.local.step(*part, state.local, rope=rope, start=start))

    def _merge(self, q: Tensor, k: Tensor, v: Tensor, full, local) -> Tensor:
        """Each group of heads through its own kernel, the outputs back in head order."""
        full_kv, local_kv, full_q, local_q = self._heads(q, k)
        if not len(local_kv):
            return full(q, k, v)
        if not len(full_kv):
            return local(q, k, v)
        out = q.new_empty(*q.shape[:3], v.shape[-1])
        out[:, full_q] = full(q[:, full_q], k[:, full_kv], v[:, full_kv])
        out[:, local_q] = local(q[:, local_q], k[:, local_kv], v[:, local_kv])
        return out
