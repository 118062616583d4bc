"""Sliding-window attention with optional global tokens (Longformer), computed band by band."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..cache import RollingKVCache
from ..errors import ConfigError
from ..position import Rotation
from .base import AttentionKernel, attend, attend_lse, expand_kv, merge_attention
from .bias import ScoreBias
from .full import FullAttention
from .masks import drop_empty_padding, position_mask
from .snapkv import gather_keys, observe, select_kept


class SlidingWindowAttention(AttentionKernel):
    """Each query sees ``window`` keys on each side (causal: the ``window`` previous and itself);
    the first ``num_global`` tokens attend to and are attended by every token (Beltagy et al., 2020).

    Queries go in blocks of ``chunk_size``; a block attends only its band of keys (plus the global
    keys) with SDPA's fused kernel, so time and memory are O(L · (window + chunk)) forward and
    backward — never an L × L mask. Global query rows are one extra dense pass over all keys. Causal inference
    (no gradient, padding or bias) goes in smaller blocks over strided views of the keys (:meth:`_bands`).
    Decoding keeps a rolling cache bounded by ``num_global + window`` keys however long the output.

    ``sink_positions``: where a causal query sees the global (sink) tokens. ``absolute``: at their own
    positions, so a query at position p sees sink s at distance p - s, which grows without bound.
    ``cache`` (StreamingLLM, Xiao et al., 2023): at their positions in the rolling cache, which holds the
    sinks followed by the window, so the query sits at cache position ``min(p, num_global + window)``
    and every distance it sees stays within ``num_global + window``. Window keys keep their distances
    either way. With RoPE the kernel receives the call's rotation (``rope``) and re-rotates the queries
    for the sink scores; a score bias (ALiBi, T5) is evaluated at the same cache positions.

    ``keep`` (SnapKV, Li et al., 2024; :mod:`.snapkv`): decoding also keeps, per kv head, the ``keep`` older keys
    the prompt's last ``observe`` queries (which attend their whole past, as SnapKV's prefill does) attend most;
    every generated token attends them beside the sinks, so a key before the window can be recalled. Kept keys sit
    where ``sink_positions`` puts the sinks: at their own positions, or after the sinks in the cache (a token then
    sees them from ``num_global + keep + window``). A full forward (perplexity) is the plain window; so is a prompt
    the window and sinks hold whole.
    """

    bounded_state = True  # a ring of the sinks, the kept keys and the window

    def __init__(self, *, window: int = 256, num_global: int = 0, chunk_size: int = 128, dropout: float = 0.0,
                 sink_positions: str = "absolute", keep: int = 0, observe: int = 32) -> None:
        super().__init__()
        for name, value, least in (("window", window, 1), ("num_global", num_global, 0), ("chunk_size", chunk_size, 1),
                                   ("keep", keep, 0), ("observe", observe, 1)):
            if value < least:
                raise ConfigError(f"attention 'sliding_window': {name} must be >= {least}, got {value}")
        if keep and observe > window:
            raise ConfigError(f"attention 'sliding_window': observe ({observe}) must be <= window ({window}): "
                              "the observing queries are the prompt's last, inside the window")
        if sink_positions not in ("absolute", "cache"):
            raise ConfigError(f"attention 'sliding_window': sink_positions must be 'absolute' or 'cache' "
                              f"(StreamingLLM), got {sink_positions!r}")
        self.window, self.num_global, self.chunk_size, self.dropout = window, num_global, chunk_size, dropout
        self.sink_positions, self.keep, self.observe = sink_positions, keep, observe
        self.rotates_sinks = sink_positions == "cache" and (num_global > 0 or keep > 0)
        self.left_padding = num_global == 0 and keep == 0  # global and kept keys sit at columns
        self.exact = FullAttention(dropout=dropout)  # prefill rows whose window holds their whole past

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool,
        key_padding_mask: Tensor | None = None, bias: ScoreBias | None = None, rope: Rotation | None = None,
    ) -> Tensor:
        q_len, k_len = q.shape[2], k.shape[2]
        offset = k_len - q_len  # query i sits at key position offset + i
        padding = drop_empty_padding(key_padding_mask)
        if self.rotates_sinks and not causal:
            raise ConfigError("attention 'sliding_window': sink_positions='cache' (StreamingLLM) is for causal "
                              "stacks; an encoder's global tokens keep their absolute positions")
        if offset == 0 and causal and padding is None and bias is None and not _needs_grad(q, k, v):
            return self._bands(q, k, v, rope)
        if offset == 0 and not self._moves_sinks(k_len - 1):
            out = self._all_blocks(q, k, v, causal, padding, bias)
        else:  # a chunk after a cache, or sinks seen from cache positions: band by band
            out = self._block_by_block(q, k, v, causal, padding, bias, offset, rope)
        global_rows = min(q_len, max(0, self.num_global - offset))
        if global_rows:  # global queries attend every key
            q_pos = torch.arange(global_rows, device=q.device) + offset
            dense = self._attend(q[:, :, :global_rows], k, v, q_pos, torch.arange(k_len, device=q.device),
                                 causal, padding, bias, window=None)
            out = torch.cat([dense, out[:, :, global_rows:]], dim=2)
        return out

    def _all_blocks(self, q: Tensor, k: Tensor, v: Tensor, causal: bool, padding: Tensor | None,
                    bias: ScoreBias | None) -> Tensor:
        """Queries in blocks of ``window``: block b needs only key blocks b-1, b (and b+1 when not causal)
        plus the global keys, so all blocks go through SDPA together (a few large calls, no Python loop
        per block) over an unfolded (blocks, span) view of the keys — O(L · window) time and memory."""
        batch, heads, length, dim = q.shape
        k, v = expand_kv(k, heads), expand_kv(v, heads)
        c, g, device = self.window, min(self.num_global, length), q.device
        n = -(-length // c)
        left, right = c, 0 if causal else c
        span = left + c + right

        def unfold(x: Tensor, fill: float) -> Tensor:  # (..., L, D) -> (..., n, span, D)
            x = F.pad(x, (0, 0, left, n * c - length + right), value=fill)
            return x.unfold(-2, span, c).transpose(-1, -2)

        q_pos = torch.arange(n * c, device=device).view(n, c, 1)
        k_pos = (torch.arange(n, device=device) * c - left).view(n, 1, 1) + torch.arange(span, device=device)
        allowed = (k_pos >= g) & (k_pos < length) & ((q_pos - k_pos).abs() <= self.window)  # (n, c, span)
        g_pos = torch.arange(g, device=device).view(1, 1, g)
        allowed_g = (g_pos <= q_pos) if causal else torch.ones(n, c, g, dtype=torch.bool, device=device)
        if causal:
            allowed = allowed & (k_pos <= q_pos)
        allowed = torch.cat([allowed_g.expand(n, c, g), allowed], -1)[None]  # (1|batch, n, c, g + span)
        if padding is not None:
            pad_blocks = unfold(padding[..., None].float(), 1.0)[..., 0].bool()  # (batch, n, span)
            allowed = allowed & ~torch.cat([padding[:, None, :g].expand(-1, n, -1), pad_blocks], -1)[:, :, None]
        scores = None
        if bias is not None:
            scores = torch.cat([bias.between(q_pos, g_pos), bias.between(q_pos, k_pos)], -1)  # (heads, n, c, ·)
        empty = ~allowed.any(-1, keepdim=True)  # rows with nothing to see (beyond the end, or all padding)
        allowed = allowed | empty

        q_blocks = F.pad(q, (0, 0, 0, n * c - length)).unflatten(2, (n, c))  # (B, H, n, c, D)
        k_blocks, v_blocks = unfold(k, 0.0), unfold(v, 0.0)  # views; copied once, group by group
        if g:
            k_blocks = torch.cat([k[:, :, None, :g].expand(-1, -1, n, -1, -1), k_blocks], -2)
            v_blocks = torch.cat([v[:, :, None, :g].expand(-1, -1, n, -1, -1), v_blocks], -2)
        # One SDPA call for all blocks (its flash kernel never materializes scores); with a score bias the
        # additive float mask is materialized, so blocks go in groups of bounded size.
        group = n if scores is None else max(1, (1 << 22) // (heads * c * (g + span)))
        dropout = self.dropout if self.training else 0.0
        outputs = []
        # torch.split (not slicing) so backward joins the groups' gradients in one cat, not a zero-filled
        # full-size tensor per group.
        for qg, kg, vg, mask, start in zip(q_blocks.split(group, 2), k_blocks.split(group, 2),
                                           v_blocks.split(group, 2), allowed.split(group, 1), range(0, n, group),
                                           strict=True):
            mask = mask.unsqueeze(1)  # (1|B, 1, G, c, S)
            if scores is not None:
                mask = scores[None, :, start : start + group].to(q.dtype).masked_fill(~mask, float("-inf"))
            outputs.append(_sdpa_blocks(qg, kg, vg, mask, dropout))
        out = torch.cat(outputs, 2) if len(outputs) > 1 else outputs[0]
        out = out.masked_fill(empty[:, None], 0.0)
        return out.flatten(2, 3)[:, :, :length]

    def _bands(self, q: Tensor, k: Tensor, v: Tensor, rope: Rotation | None, offset: int = 0, shift: int = 0) -> Tensor:
        """Causal inference without padding or bias (a prompt's prefill, perplexity, a chunk after a cache).

        Queries sit at positions ``offset`` on; k, v hold the sinks and then contiguous positions, column
        ``c`` at position ``c + shift`` (``shift`` > 0 after a chunk that dropped keys from the window). Queries
        up to position ``num_global + window`` see their whole past, so they are plain causal attention; every
        later query sees its ``window + 1`` band keys, in blocks of ``BAND_QUERIES`` queries over strided views of
        the keys (no copies, one SDPA call), and the sinks, a second tiny attention merged by log-sum-exp, seen
        from the query's cache position when ``sink_positions='cache'``. The kernel computes
        ``window + BAND_QUERIES`` scores per query for ``window + 1`` useful ones. With ``product_dtype`` set (bf16
        weights) both parts go through :func:`_band_products` instead."""
        n, g, w = q.shape[2], self.num_global, self.window
        head = min(n, max(0, g + w + 1 - offset))  # here shift is 0: every earlier key is kept
        parts = []
        if head and self.product_dtype is not None:
            parts.append(_band_products(q[:, :, :head], k[:, :, : offset + head], v[:, :, : offset + head], None,
                                        None, self.product_dtype))
        elif head:
            parts.append(self.exact(q[:, :, :head], k[:, :, : offset + head], v[:, :, : offset + head], causal=True))
        if head < n:
            first = offset + head
            lo = first - w - shift  # column of the first query's oldest band key
            q_band = q_sink = q[:, :, head:]
            if g and self.rotates_sinks and rope is not None:  # every one of these queries sits at cache position g + w
                q_sink = rope.shift(q_sink, torch.arange(first, offset + n, device=q.device) - (g + w))
            if self.product_dtype is not None:
                sinks = (q_sink, k[:, :, :g], v[:, :, :g]) if g else None
                rest = _band_products(q_band, k[:, :, lo:], v[:, :, lo:], w, sinks, self.product_dtype)
            else:
                rest, lse = _band_attention(q_band, k[:, :, lo:], v[:, :, lo:], w)
                if g:
                    rest = merge_attention(rest, lse, *attend_lse(q_sink, k[:, :, :g], v[:, :, :g]))
            parts.append(rest)
        return torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]

    def _block_by_block(self, q: Tensor, k: Tensor, v: Tensor, causal: bool, padding: Tensor | None,
                        bias: ScoreBias | None, offset: int, rope: Rotation | None = None) -> Tensor:
        """One band of keys (plus the global keys) per block of ``chunk_size`` queries: a chunk decoded
        after a cache, or sinks at cache positions (each block gathers its own keys)."""
        q_len, k_len = q.shape[2], k.shape[2]
        outputs = []
        for start in range(0, q_len, self.chunk_size):
            q_pos = torch.arange(start, min(start + self.chunk_size, q_len), device=q.device) + offset
            lo = max(0, int(q_pos[0]) - self.window)
            hi = int(q_pos[-1]) + 1 if causal else min(k_len, int(q_pos[-1]) + 1 + self.window)
            k_pos = torch.arange(lo, hi, device=q.device)
            if self.num_global and lo > 0:  # global keys left of the band
                k_pos = torch.cat([torch.arange(min(self.num_global, lo), device=q.device), k_pos])
            outputs.append(self._attend(q[:, :, start : start + self.chunk_size], k, v, q_pos, k_pos, causal,
                                        padding, bias, window=self.window, rope=rope))
        return torch.cat(outputs, dim=2) if len(outputs) > 1 else outputs[0]

    def _attend(
        self, q: Tensor, k: Tensor, v: Tensor, q_pos: Tensor, k_pos: Tensor, causal: bool,
        padding: Tensor | None, bias: ScoreBias | None, *, window: int | None, rope: Rotation | None = None,
    ) -> Tensor:
        """Queries at absolute ``q_pos`` over the keys at ``k_pos`` (gathered; contiguous when possible)."""
        contiguous = int(k_pos[-1]) - int(k_pos[0]) + 1 == len(k_pos)
        cols = slice(int(k_pos[0]), int(k_pos[-1]) + 1) if contiguous else k_pos
        keys, values = k[:, :, cols], v[:, :, cols]
        allowed = position_mask(
            q_pos[:, None], k_pos[None, :], causal=causal, window=window, num_global=self.num_global,
            key_padding=None if padding is None else padding[:, None, None, cols])
        dropout = self.dropout if self.training else 0.0
        scores = self._position_scores(q, keys, q_pos, k_pos, bias, rope)
        return attend(q, keys, values, allowed=allowed, bias=scores, dropout=dropout)

    def new_state(self) -> RollingKVCache:
        return RollingKVCache(self.window, self.num_global)

    def step(self, q: Tensor, k: Tensor, v: Tensor, state: RollingKVCache, *, bias: ScoreBias | None = None,
             rope: Rotation | None = None, start: Tensor | None = None) -> Tensor:
        """Attend the new tokens over the kept keys (global + last ``window``) and themselves; the window is
        relative, so left padding (the columns before ``start``, without global keys) is only masked.

        Without left padding, a score bias or gradients, a chunk attends the ring's keys in position order and its
        own through :meth:`_bands` (a prompt into an empty cache too), and one token the ring through
        :meth:`_ring_step`; otherwise a prompt goes through :meth:`_prefill`, never the dense (L, L) mask.
        With ``keep``, a prompt longer than the window and sinks goes through :meth:`_prefill_kept`."""
        if self.keep and state.length == 0 and q.shape[2] > self.num_global + self.window:
            if bias is not None or start is not None:
                raise ConfigError("attention 'sliding_window': keep= (SnapKV) takes neither a score bias (ALiBi/T5) "
                                  "nor left-padded batches; use position=rope, or drop keep")
            if not _needs_grad(q, k, v):
                return self._prefill_kept(q, k, v, state, rope)
        if state.pinned and q.shape[2] > 1:  # a chunk after kept keys: one token at a time
            return torch.cat([self.step(q[:, :, i : i + 1], k[:, :, i : i + 1], v[:, :, i : i + 1], state, rope=rope)
                              for i in range(q.shape[2])], 2)
        if q.shape[2] > 1 and start is None and bias is None and not _needs_grad(q, k, v):
            offset = state.length
            kept_k, kept_v, shift = state.ordered() if offset else (k[:, :, :0], v[:, :, :0], 0)
            keys, values = torch.cat([kept_k, k], 2), torch.cat([kept_v, v], 2)  # before extend overwrites slots
            state.extend(k, v)
            return self._bands(q, keys, values, rope, offset, shift)
        if state.length == 0 and q.shape[2] > 1:
            state.extend(k, v)
            columns = torch.arange(k.shape[2], device=k.device)
            padding = None if start is None else columns[None] < start[:, None]
            return self._prefill(q, k, v, padding, bias, rope)
        keys, values, k_pos = state.extend(k, v)
        if q.shape[2] == 1 and start is None and bias is None:
            return self._ring_step(q, keys, values, state.length - 1, rope, self.num_global + state.pinned)
        q_pos = torch.arange(state.length - q.shape[2], state.length, device=q.device)
        padding = None if start is None else (k_pos[None] < start[:, None])[:, None, None, :]
        allowed = position_mask(q_pos[:, None], k_pos[None, :], causal=True, window=self.window,
                                num_global=self.num_global, key_padding=padding)
        return attend(q, keys, values, allowed=allowed, bias=self._position_scores(q, keys, q_pos, k_pos, bias, rope))

    def _ring_step(self, q: Tensor, keys: Tensor, values: Tensor, position: int, rope: Rotation | None,
                   g: int) -> Tensor:
        """One token over the ring: every slot in use holds a key the query sees (the ``g`` sinks and kept keys,
        and at most ``window + 1`` positions up to its own), so no mask is built, and a kv head's query heads go in
        as its queries (GQA without copying the keys). Sinks seen from the cache position are a second attention
        over the sink slots with the re-rotated query, merged by log-sum-exp: no score bias."""
        batch, heads, _, dim = q.shape
        q = q.reshape(batch, keys.shape[1], heads // keys.shape[1], dim)
        if rope is None or not self._moves_sinks(position, g):
            out = F.scaled_dot_product_attention(q, keys, values)
        else:
            q_sink = rope.shift(q, torch.tensor([position - g - self.window], device=q.device))
            out, lse = attend_lse(q, keys[:, :, g:], values[:, :, g:])
            out = merge_attention(out, lse, *attend_lse(q_sink, keys[:, :, :g], values[:, :, :g]))
        return out.reshape(batch, heads, 1, dim)

    def _prefill(self, q: Tensor, k: Tensor, v: Tensor, padding: Tensor | None, bias: ScoreBias | None,
                 rope: Rotation | None) -> Tensor:
        """Causal attention of a whole prompt. Its first ``window + 1`` queries see all their past, so they are
        plain causal attention on SDPA's fused kernel (which skips the masked half); later queries go band by
        band, each block of ``chunk_size`` queries over its ``window`` keys and the sinks."""
        head = min(q.shape[2], self.window + 1)
        if bias is not None or head <= self.num_global:  # a bias needs the blocked path's positions
            return self(q, k, v, causal=True, key_padding_mask=padding, bias=bias, rope=rope)
        out = self.exact(q[:, :, :head], k[:, :, :head], v[:, :, :head], causal=True,
                         key_padding_mask=None if padding is None else padding[:, :head])
        if head == q.shape[2]:
            return out
        rest = self._block_by_block(q[:, :, head:], k, v, True, drop_empty_padding(padding), None, head, rope)
        return torch.cat([out, rest], dim=2)

    def _prefill_kept(self, q: Tensor, k: Tensor, v: Tensor, state: RollingKVCache, rope: Rotation | None) -> Tensor:
        """A prompt of n tokens with SnapKV's selection. Every query but the last ``observe`` sees its window and the
        sinks (:meth:`_bands`); the last ones (the question) attend their whole past and choose, per kv head, the
        ``keep`` keys they attend most among the ones the first generated token's window no longer holds (after
        the sinks, before n - window). The state keeps the sinks, the chosen keys and the window. Beyond the
        window's, the selection's memory is those queries' scores: (heads · observe · n) floats per layer."""
        n, g, w = q.shape[2], self.num_global, self.window
        first, end = n - self.observe, n - w
        last, weights = observe(q[:, :, first:], k, v)
        kept = select_kept(weights, first=g, end=end, keep=min(self.keep, end - g))  # (batch, kv_heads, K)
        kept_k, kept_v = gather_keys(k, kept), gather_keys(v, kept)
        if self.sink_positions == "cache" and rope is not None:  # kept keys at cache positions g, g + 1, ...
            kept_k = rope.shift(kept_k, kept - torch.arange(g, g + kept.shape[-1], device=q.device))
        out = torch.cat([self._bands(q[:, :, :first], k[:, :, :first], v[:, :, :first], rope), last], 2)
        state.extend(k, v)
        state.pin(kept_k, kept_v)
        return out

    def _moves_sinks(self, last_position: int, prefix: int | None = None) -> bool:
        """Whether some query up to ``last_position`` sees the sinks (and the ``prefix - num_global`` kept keys)
        from a cache position other than its own."""
        prefix = self.num_global if prefix is None else prefix
        return self.sink_positions == "cache" and prefix > 0 and last_position > prefix + self.window

    def _position_scores(self, q: Tensor, keys: Tensor, q_pos: Tensor, k_pos: Tensor, bias: ScoreBias | None,
                         rope: Rotation | None) -> Tensor | None:
        """Additive scores of a gathered block (heads|batch, heads, q, k): the score bias, and with
        ``sink_positions='cache'`` the sink columns scored from the query's cache position
        ``min(p, num_global + window)``: the re-rotated query's score minus the one SDPA computes."""
        if not self._moves_sinks(int(q_pos[-1])):
            return None if bias is None else bias.between(q_pos[:, None], k_pos[None, :])
        sink = (k_pos >= 0) & (k_pos < self.num_global)  # (k,)
        q_cache = q_pos.clamp(max=self.num_global + self.window)
        scores = None
        if bias is not None:
            scores = bias.between(torch.where(sink[None, :], q_cache[:, None], q_pos[:, None]), k_pos[None, :])
        if rope is not None:
            cols = sink.nonzero().squeeze(1)
            sink_keys = expand_kv(keys[:, :, cols], q.shape[1]).transpose(-1, -2)  # (batch, heads, head_dim, s)
            moved = (rope.shift(q, q_pos - q_cache) - q) @ sink_keys * q.shape[-1] ** -0.5  # (batch, heads, q, s)
            extra = q.new_zeros(*q.shape[:3], len(k_pos)).index_copy_(-1, cols, moved)
            scores = extra if scores is None else scores + extra
        return scores


BAND_QUERIES = 32  # queries per band block: 32 measured fastest on CPU at windows 256 and 2,048 (docs/RESULTS.md)


def _needs_grad(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _band_attention(q: Tensor, k: Tensor, v: Tensor, window: int) -> tuple[Tensor, Tensor]:
    """Causal band attention and its log-sum-exp. q (B, H, L, D); k, v (B, kv_heads, window + L, D): query i sits
    at key i + window and sees keys i .. i + window. Block b of ``c`` queries sees the ``window + c`` keys from
    b·c on, an overlapping strided view (unfold) of the keys, so all blocks go through SDPA as one batch of
    blocks without copying the keys; one (c, window + c) mask serves every block."""
    batch, heads, length, dim = q.shape
    c = min(BAND_QUERIES, length)
    n, span = -(-length // c), window + c
    q_blocks = F.pad(q, (0, 0, 0, n * c - length)).unflatten(2, (n, c)).transpose(1, 2)  # (B, n, H, c, D)

    def unfold(x: Tensor) -> Tensor:  # (B, kv_heads, window + L, D) -> (B, n, kv_heads, span, D), a view
        x = F.pad(x, (0, 0, 0, n * c + window - x.shape[2]))
        return x.unfold(2, span, c).permute(0, 2, 1, 4, 3)

    i, j = torch.arange(c, device=q.device)[:, None], torch.arange(span, device=q.device)[None]
    mask = torch.zeros(c, span, dtype=q.dtype, device=q.device).masked_fill((j < i) | (j > i + window),
                                                                              float("-inf"))
    k_blocks, v_blocks = unfold(k), unfold(v)
    outs, lses = zip(*(attend_lse(q_blocks[b], k_blocks[b], v_blocks[b], mask) for b in range(batch)), strict=True)
    out = torch.stack(outs).transpose(1, 2).flatten(2, 3)[:, :, :length]  # (B, H, L, D)
    return out, torch.stack(lses).transpose(1, 2).flatten(2, 3)[:, :, :length]


PRODUCT_QUERIES = 64  # queries per block of the products path: measured fastest at window 2,048 (docs/RESULTS.md)


def _band_products(q: Tensor, k: Tensor, v: Tensor, window: int | None,
                   sinks: tuple[Tensor, Tensor, Tensor] | None, dtype: torch.dtype) -> Tensor:
    """Causal attention as batched GEMMs in ``dtype`` (bf16), block by block, out in q's dtype: query i sits at key
    column ``k_len - q_len + i`` and sees the ``window`` keys before it and itself (``None``: all before it).

    Each block of ``c`` queries scores the keys its rows see (``window + c`` in a band), and the sinks' scores
    (from ``q_sink``, the queries at their sink positions) as the first columns of the same matrix; one softmax
    (accumulated in fp32) covers both, so nothing is merged. GQA heads share a kv head as extra rows of one product."""
    batch, heads, length, dim = q.shape
    kv_heads, group, first = k.shape[1], heads // k.shape[1], k.shape[2] - q.shape[2]
    scale = dim**-0.5  # folded into the queries (a power of two for head_dim 64: exact in bf16)

    def rows(x: Tensor) -> Tensor:  # (B, H, L, D) -> (B, kv_heads, group, L, D) in dtype
        return (x * scale).to(dtype).view(batch, kv_heads, group, length, dim)

    queries, keys, values = rows(q), k.to(dtype), v.to(dtype)
    g, sink_queries = 0, None  # None: the band's queries score the sinks too
    if sinks is not None:
        q_sink, k_sink, v_sink = sinks
        g, k_sink, v_sink = k_sink.shape[2], k_sink.to(dtype), v_sink.to(dtype)
        sink_queries = None if q_sink is q else rows(q_sink)
    out, masks = q.new_empty(batch, kv_heads, group, length, dim), {}
    for start in range(0, length, PRODUCT_QUERIES):
        n = min(PRODUCT_QUERIES, length - start)
        lo = 0 if window is None else max(0, first + start - window)  # the block's first and last key columns
        hi = first + start + n
        block = queries[:, :, :, start : start + n].reshape(batch, kv_heads, group * n, dim)
        block_k, block_v = keys[:, :, lo:hi], values[:, :, lo:hi]
        if g:
            block_k, block_v = torch.cat([k_sink, block_k], 2), torch.cat([v_sink, block_v], 2)
        scores = block @ block_k.transpose(-1, -2)  # (B, kv_heads, group·n, g + hi - lo)
        if sink_queries is not None:
            sink_block = sink_queries[:, :, :, start : start + n].reshape(batch, kv_heads, group * n, dim)
            scores[..., :g] = sink_block @ k_sink.transpose(-1, -2)
        shape = (n, hi - lo, first + start - lo)  # rows, keys, the first row's own key: they fix the mask
        if shape not in masks:  # every full block of a band has the same one
            own = torch.arange(shape[2], shape[2] + n, device=q.device)[:, None]
            column = torch.arange(hi - lo, device=q.device)[None]
            hidden = (column > own) if window is None else (column > own) | (column < own - window)
            masks[shape] = scores.new_zeros(n, g + hi - lo)
            masks[shape][:, g:].masked_fill_(hidden, float("-inf"))
        scores.view(batch, kv_heads, group, n, -1).add_(masks[shape])  # additive, every head's rows at once
        weighted = torch.softmax(scores, dim=-1) @ block_v
        out[:, :, :, start : start + n] = weighted.view(batch, kv_heads, group, n, dim)
    return out.view(batch, heads, length, dim)


def _sdpa_blocks(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, dropout: float) -> Tensor:
    """SDPA over (B, H, G, c, D) blocks: the G blocks join the batch, so every call is 4-D."""
    batch, heads, blocks, c, dim = q.shape

    def fold(x: Tensor) -> Tensor:  # (B, H, G, n, D) -> (B·G, H, n, D)
        return x.transpose(1, 2).reshape(batch * blocks, heads, x.shape[-2], x.shape[-1])

    mask = mask.expand(batch, mask.shape[1], blocks, c, mask.shape[-1]).transpose(1, 2)
    mask = mask.reshape(batch * blocks, mask.shape[2], c, mask.shape[-1])
    out = F.scaled_dot_product_attention(fold(q), fold(k), fold(v), attn_mask=mask, dropout_p=dropout)
    return out.reshape(batch, blocks, heads, c, dim).transpose(1, 2)
