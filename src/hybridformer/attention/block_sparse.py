"""Block-sparse attention with BigBird's pattern: sliding blocks + global blocks + random blocks."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

from ..errors import ConfigError
from .base import AttentionKernel, attend, expand_kv
from .bias import ScoreBias
from .masks import drop_empty_padding, position_mask


class BlockSparseAttention(AttentionKernel):
    """BigBird (Zaheer et al., 2020): keys and queries in blocks of ``block_size``; query block i
    attends key blocks i-``window_blocks``..i+``window_blocks`` (causal: up to i), the first
    ``global_blocks`` blocks, and ``num_random_blocks`` other blocks drawn per row from ``seed``.
    Global query blocks attend everything. Each query block gathers only its selected key blocks,
    so time and memory are O(L · selected blocks · block_size).

    The random choice for block i depends only on (seed, i) and, when causal, only on earlier
    blocks, so decoding token by token (through a growing KV cache) sees exactly the pattern of
    the full forward.
    """

    left_padding = False  # blocks are cut at columns: left padding would move every block boundary

    def __init__(self, *, block_size: int = 64, window_blocks: int = 1, global_blocks: int = 1,
                 num_random_blocks: int = 2, seed: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        for name, value, least in (("block_size", block_size, 1), ("window_blocks", window_blocks, 0),
                                   ("global_blocks", global_blocks, 0), ("num_random_blocks", num_random_blocks, 0)):
            if value < least:
                raise ConfigError(f"attention 'block_sparse': {name} must be >= {least}, got {value}")
        self.block_size, self.window_blocks, self.global_blocks = block_size, window_blocks, global_blocks
        self.num_random_blocks, self.seed, self.dropout = num_random_blocks, seed, dropout
        self._layouts: dict[tuple[int, bool], Tensor] = {}

    def selected_blocks(self, block: int, num_blocks: int, causal: bool) -> list[int]:
        """Sorted key blocks query block ``block`` attends (before causal masking inside the diagonal)."""
        last = block + 1 if causal else num_blocks
        chosen = set(range(max(0, block - self.window_blocks), min(last, block + self.window_blocks + 1)))
        chosen |= set(range(min(self.global_blocks, last)))
        candidates = [j for j in range(last) if j not in chosen]
        if candidates and self.num_random_blocks:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + block)
            picks = torch.randperm(len(candidates), generator=generator)[: self.num_random_blocks]
            chosen |= {candidates[i] for i in picks.tolist()}
        return sorted(chosen)

    def layout(self, num_blocks: int, causal: bool) -> Tensor:
        """(num_blocks, max_selected) key-block indices per query block, -1 where a row has fewer."""
        key = (num_blocks, causal)
        if key not in self._layouts:
            rows = [self.selected_blocks(i, num_blocks, causal) for i in range(num_blocks)]
            width = max(len(r) for r in rows)
            self._layouts[key] = torch.tensor([r + [-1] * (width - len(r)) for r in rows], dtype=torch.long)
        return self._layouts[key]

    def dense_mask(self, length: int, *, causal: bool) -> Tensor:
        """The (length, length) allowed mask this kernel applies (for tests and inspection)."""
        b, num_blocks = self.block_size, -(-length // self.block_size)
        block_mask = torch.zeros(num_blocks, num_blocks, dtype=torch.bool)
        for i, row in enumerate(self.layout(num_blocks, causal).tolist()):
            block_mask[i, [j for j in row if j >= 0]] = True
        block_mask[: self.global_blocks] = True
        mask = block_mask.repeat_interleave(b, 0).repeat_interleave(b, 1)[:length, :length]
        pos = torch.arange(length)
        return mask & position_mask(pos[:, None], pos[None, :], causal=causal)

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool,
        key_padding_mask: Tensor | None = None, bias: ScoreBias | None = None,
    ) -> Tensor:
        heads, q_len, k_len, b = q.shape[1], q.shape[2], k.shape[2], self.block_size
        k, v = expand_kv(k, heads), expand_kv(v, heads)
        padding = drop_empty_padding(key_padding_mask)
        offset = k_len - q_len  # query i sits at key position offset + i
        num_key_blocks = -(-k_len // b)
        first, last = offset // b, (k_len - 1) // b  # query blocks this call touches
        front = offset - first * b
        q_blocks = last - first + 1
        q_pad = torch.nn.functional.pad(q, (0, 0, front, q_blocks * b - front - q_len))
        q_pad = rearrange(q_pad, "b h (n c) d -> b h n c d", c=b)

        select = self.layout(num_key_blocks, causal)[first : last + 1].to(q.device)  # (n, s)
        key_pad = num_key_blocks * b - k_len
        gather = select.clamp(min=0)
        k_blocks = rearrange(torch.nn.functional.pad(k, (0, 0, 0, key_pad)), "b h (n c) d -> b h n c d", c=b)
        v_blocks = rearrange(torch.nn.functional.pad(v, (0, 0, 0, key_pad)), "b h (n c) d -> b h n c d", c=b)
        keys = rearrange(k_blocks[:, :, gather], "b h n s c d -> b h n (s c) d")
        values = rearrange(v_blocks[:, :, gather], "b h n s c d -> b h n (s c) d")

        k_pos = rearrange(gather[..., None] * b + torch.arange(b, device=q.device), "n s c -> n (s c)")
        valid = rearrange((select >= 0)[..., None].expand(-1, -1, b), "n s c -> n (s c)") & (k_pos < k_len)
        q_pos = (first * b + torch.arange(q_blocks * b, device=q.device)).view(q_blocks, b)
        key_padding = None
        if padding is not None:
            key_padding = padding[:, k_pos.clamp(max=k_len - 1)][:, None, :, None, :]  # (batch, 1, n, 1, s*c)
        allowed = position_mask(q_pos[..., None], k_pos[:, None, :], causal=causal, key_padding=key_padding)
        allowed = allowed & valid[:, None, :]
        score_bias = None if bias is None else bias.between(q_pos[..., None], k_pos[:, None, :])
        dropout = self.dropout if self.training else 0.0
        out = attend(q_pad, keys, values, allowed=allowed, bias=score_bias, dropout=dropout)
        out = rearrange(out, "b h n c d -> b h (n c) d")[:, :, front : front + q_len]

        global_rows = min(q_len, max(0, self.global_blocks * b - offset))
        if global_rows:  # global query blocks attend every key
            q_pos = torch.arange(global_rows, device=q.device) + offset
            k_pos = torch.arange(k_len, device=q.device)
            allowed = position_mask(q_pos[:, None], k_pos[None, :], causal=causal,
                                    key_padding=None if padding is None else padding[:, None, None, :])
            score_bias = None if bias is None else bias.between(q_pos[:, None], k_pos[None, :])
            dense = attend(q[:, :, :global_rows], k, v, allowed=allowed, bias=score_bias, dropout=dropout)
            out = torch.cat([dense, out[:, :, global_rows:]], dim=2)
        return out
