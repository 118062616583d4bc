"""Per-layer incremental decoding state.

A :class:`DecodingCache` maps each stateful module (an attention or a convolution mixer) to
its own state object; beam search only ever calls :meth:`DecodingCache.reorder`. Caches are
for inference (``torch.no_grad``): they write into preallocated buffers in place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class KVCache:
    """Growing key/value cache; capacity doubles so a decoding step appends without re-allocating."""

    def __init__(self) -> None:
        self.keys: Tensor | None = None  # (batch, kv_heads, capacity, head_dim)
        self.values: Tensor | None = None
        self.length = 0

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add ``k, v: (batch, kv_heads, n, head_dim)``; return all cached keys and values so far."""
        end = self.length + k.shape[2]
        if self.keys is None or end > self.keys.shape[2]:
            self._grow(k, v, max(end, 2 * self.length, 64))
        self.keys[:, :, self.length : end] = k
        self.values[:, :, self.length : end] = v
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]

    def _grow(self, k: Tensor, v: Tensor, capacity: int) -> None:
        batch, heads, _, dim = k.shape
        keys = k.new_empty(batch, heads, capacity, dim)
        values = v.new_empty(batch, heads, capacity, v.shape[-1])
        if self.keys is not None:
            keys[:, :, : self.length] = self.keys[:, :, : self.length]
            values[:, :, : self.length] = self.values[:, :, : self.length]
        self.keys, self.values = keys, values

    def reserve(self, columns: int) -> None:
        """Room for ``columns`` keys without growing (a compiled step must never take the growing branch)."""
        if self.keys is not None and columns > self.keys.shape[2]:
            self._grow(self.keys, self.values, columns)

    def positions(self, device: torch.device | None = None) -> Tensor:
        """Absolute positions of the cached keys (decoding always starts at position 0)."""
        return torch.arange(self.length, device=device)

    def reorder(self, index: Tensor) -> None:
        """Gather the filled part straight into new buffers of the same capacity: one copy per beam step (a
        gather, then a copy back into the old buffers, took 1.5-2.4x as long on CPU)."""
        if self.keys is None:
            return
        filled = slice(0, self.length)
        keys = self.keys.new_empty(len(index), *self.keys.shape[1:])
        values = self.values.new_empty(len(index), *self.values.shape[1:])
        torch.index_select(self.keys[:, :, filled], 0, index, out=keys[:, :, filled])
        torch.index_select(self.values[:, :, filled], 0, index, out=values[:, :, filled])
        self.keys, self.values = keys, values

    def shift(self, n: int) -> None:
        """Move the keys ``n`` columns right, empty ones before them (a batch joining a longer one; the rows'
        ``start`` masks them); ``n < 0`` drops the first ``-n`` columns (padding in every row)."""
        if self.keys is not None:
            keys, values = self.keys[:, :, max(0, -n) : self.length], self.values[:, :, max(0, -n) : self.length]
            self.keys, self.values = F.pad(keys, (0, 0, max(0, n), 0)), F.pad(values, (0, 0, max(0, n), 0))
        self.length += n

    def cat(self, other: KVCache) -> None:
        """Append ``other``'s rows (same number of columns)."""
        self.keys = torch.cat([self.keys[:, :, : self.length], other.keys[:, :, : other.length]])
        self.values = torch.cat([self.values[:, :, : self.length], other.values[:, :, : other.length]])


class StaticKV:
    """Keys, values and key padding computed once per source sentence (cross-attention over the encoder output).

    Beam search reorders the rows every step, yet all beams of a sentence attend the same source. So the
    state keeps one copy of the keys per sentence and a group size, and :meth:`grouped` hands the attention
    both: it folds each sentence's beams into extra queries. A reorder that keeps the layout (beams move within
    their sentence) costs one comparison; keys are gathered only when the layout changes (a sentence finished),
    and rows that do not form equal consecutive groups are gathered one by one, so any reorder stays correct.
    The decision is made here, at the reorder, so a decoding step reads the state without branching on data.
    """

    def __init__(self, keys: Tensor, values: Tensor, padding: Tensor | None) -> None:
        self.keys, self.values, self.padding = keys, values, padding  # (sources, kv_heads, S, d), (sources, S)
        self.rows = torch.arange(len(keys), device=keys.device)  # row -> entry: entries in order, `group` rows each
        self.group = 1

    def reorder(self, index: Tensor) -> None:
        rows = self.rows.index_select(0, index)
        if not torch.equal(rows, self.rows):
            self._regroup(rows)

    def grouped(self) -> tuple[Tensor, Tensor, Tensor | None, int]:
        """``(keys, values, padding, group)``: rows ``g·i … g·i + g − 1`` all attend entry ``i``."""
        return self.keys, self.values, self.padding, self.group

    def _regroup(self, rows: Tensor) -> None:
        entries, counts = torch.unique_consecutive(rows, return_counts=True)
        group = int(counts[0])
        if not bool(counts.eq(group).all()):
            entries, group = rows, 1  # no common group size: one entry per row
        if len(entries) != len(self.keys) or not bool(entries.eq(torch.arange(len(entries), device=rows.device)).all()):
            self.keys, self.values = self.keys.index_select(0, entries), self.values.index_select(0, entries)
            if self.padding is not None:
                self.padding = self.padding.index_select(0, entries)
        self.rows = torch.arange(len(entries), device=rows.device).repeat_interleave(group)
        self.group = group


class TransposedWeight:
    """A contiguous transpose of a projection weight, valid while the weight is unchanged.

    Made once and reused by every later decoding session of the same model (``DecodingCache.shared``):
    an in-place update (an optimizer step, ``load_state_dict``) bumps the weight's version, a new
    tensor has a new address, and either makes :meth:`matches` false so the copy is rebuilt.
    """

    def __init__(self, weight: Tensor) -> None:
        self.weight = weight.detach().t().contiguous()
        self.source = (weight.data_ptr(), weight._version, tuple(weight.shape))

    def matches(self, weight: Tensor) -> bool:
        return self.source == (weight.data_ptr(), weight._version, tuple(weight.shape))


def project(linear: nn.Module, x: Tensor, cache: DecodingCache | None) -> Tensor:
    """``linear(x)``. In a one-row decoding step (batch 1, greedy or sampling) a plain ``nn.Linear``
    multiplies by a contiguous transpose of its weight instead, kept in ``cache.shared`` while the
    weight is unchanged: on CPU (MKL, 1 thread) that GEMM layout read SmolLM2-135M's layer weights
    1.3x faster and its 49,152-row vocabulary head 1.9x faster than ``F.linear`` (docs/RESULTS.md). It
    costs one copy of the weights, made at the first one-row step; wider steps never make it. A compiled step
    only reads the copies (:func:`keep_transposes` makes them before it).
    """
    if cache is None or type(linear) is not nn.Linear or x.numel() != x.shape[-1]:
        return linear(x)
    state = cache.shared.get(linear)
    if torch.compiler.is_compiling():
        if state is None:
            return linear(x)
    elif state is None or not state.matches(linear.weight):
        state = cache.shared[linear] = TransposedWeight(linear.weight)
    out = torch.matmul(x, state.weight)
    return out if linear.bias is None else out + linear.bias


def plain_linears(model: nn.Module) -> list[nn.Linear]:
    """The layers :func:`project` keeps transposes of (listed once: walking a 30-layer model cost 0.3 ms a step)."""
    return [module for module in model.modules() if type(module) is nn.Linear]


def keep_transposes(linears: list[nn.Linear], shared: dict) -> None:
    """Make or refresh :func:`project`'s transposed copies of ``linears`` (:func:`plain_linears`) in ``shared``:
    before a compiled one-row step, which reads them but cannot check them (their check reads addresses)."""
    for module in linears:
        state = shared.get(module)
        if state is None or not state.matches(module.weight):
            shared[module] = TransposedWeight(module.weight)


class DecodingCache(dict):
    """All incremental state of one model: ``{module: state}``, each state with ``reorder(index)``.

    ``shared`` holds what does not depend on the rows and outlives one decoding session (e.g. a
    :class:`TransposedWeight`); a scorer hands the same dict to each new cache, and ``reorder`` skips it.
    ``start`` (batch,): set when the rows are prompts of different lengths, left-padded to one length and
    prefilled together; row r's tokens begin at column ``start[r]``. Every column before it is padding, which
    no later query sees, and row r's token at column c sits at position ``c - start[r]``: so each row is
    decoded exactly as if it were alone, while all rows share one column offset.
    """

    def __init__(self, shared: dict | None = None, start: Tensor | None = None) -> None:
        super().__init__()
        self.shared = {} if shared is None else shared
        self.start = start

    def reserve(self, columns: int) -> None:
        """Make every growing state hold ``columns`` columns without reallocating (see ``KVCache.reserve``)."""
        for state in self.values():
            if hasattr(state, "reserve"):
                state.reserve(columns)

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (beam search's surviving hypotheses), in that order."""
        for state in self.values():
            state.reorder(index)
        if self.start is not None:
            self.start = self.start.index_select(0, index)

    def join(self, other: DecodingCache, columns: int, other_columns: int) -> None:
        """Append the rows of ``other`` (continuous batching: prompts prefilled apart join a running batch; both
        have ``start``; ``columns``: each side's tokens fed). The side with fewer columns gets empty ones on its left,
        masked by shifting its rows' ``start``, so every row still decodes exactly as alone."""
        width = max(columns, other_columns)
        self.shift(width - columns)
        other.shift(width - other_columns)
        for module, state in self.items():
            state.cat(other[module])
        self.start = torch.cat([self.start, other.start])

    def shift(self, n: int) -> None:
        """Move every state ``n`` columns right (``n < 0``: drop columns that are padding in every row)."""
        if n:
            for state in self.values():
                state.shift(n)
            self.start = self.start + n

    def trim(self) -> int:
        """Drop the leading columns that are padding in every row (their rows left); returns how many."""
        n = int(self.start.min()) if self.start is not None and len(self.start) else 0
        self.shift(-n)
        return n


class ConvState:
    """The last ``k − 1`` inputs of a causal convolution, so decoding step by step equals the full forward.

    Decoding starts at position 0, so the history starts as zeros: exactly the left padding the
    full causal forward uses.
    """

    def __init__(self, batch: int, history: int, channels: int, like: Tensor) -> None:
        self.history = like.new_zeros(batch, history, channels)  # (batch, k-1, channels)

    def extend(self, x: Tensor) -> Tensor:
        """x: (batch, n, channels) new inputs -> (batch, k-1+n, channels) window the conv needs."""
        window = torch.cat([self.history, x], dim=1)
        self.history = window[:, window.shape[1] - self.history.shape[1] :]
        return window

    def reorder(self, index: Tensor) -> None:
        self.history = self.history.index_select(0, index)

    def shift(self, n: int) -> None:
        """Nothing to do: the history is per row, and left padding never enters it (padded inputs are zeros)."""

    def cat(self, other: ConvState) -> None:
        self.history = torch.cat([self.history, other.history])


class RollingKVCache:
    """Sliding-window decoding memory: the ``num_global`` first keys plus the last ``window`` keys.

    The keys live in a preallocated ring of ``num_global + window + 1`` slots: a decoding step writes
    its key into the slot of the key that has just left the window (one key copied per layer, never
    the window: concatenating and gathering the window every step was a third of a 2k-window step on
    CPU), then the query attends the whole buffer. Once the ring wraps its slots are out of position
    order; the kernel masks by ``kept_positions``, so order does not matter. Memory stays bounded by
    ``num_global + window + 1`` keys however long the generation runs.

    :meth:`pin` keeps ``pinned`` more keys for good between the sinks and the ring (SnapKV's selection,
    ``sliding_window:keep=``); every later query attends them as it does the sinks.
    """

    def __init__(self, window: int, num_global: int = 0) -> None:
        self.window, self.num_global = window, num_global
        self.slots = num_global + window + 1
        self.keys: Tensor | None = None  # (batch, kv_heads, slots, head_dim)
        self.values: Tensor | None = None
        self.kept_positions: Tensor | None = None  # (slots,) absolute position held by each slot
        self.length = 0
        self.pinned = 0

    def _slot(self, position: int) -> int:
        g = self.num_global
        return position if position < g else g + self.pinned + (position - g) % (self.window + 1)

    def extend(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Add ``n`` new keys/values; return the keys, values and absolute positions the new queries
        attend (the kept ones and the new ones, in any order)."""
        if self.keys is None:
            batch, heads, _, dim = k.shape
            self.keys = k.new_zeros(batch, heads, self.slots, dim)
            self.values = v.new_zeros(batch, heads, self.slots, v.shape[-1])
            self.kept_positions = torch.full((self.slots,), -1, dtype=torch.long, device=k.device)
        n, filled = k.shape[2], min(self.length, self.slots)
        if n == 1:  # decoding step: write into the ring, attend the ring
            slot = self._slot(self.length)
            self.keys[:, :, slot] = k[:, :, 0]
            self.values[:, :, slot] = v[:, :, 0]
            self.kept_positions[slot] = self.length
            self.length += 1
            used = min(self.length + self.pinned, self.slots)
            return self.keys[:, :, :used], self.values[:, :, :used], self.kept_positions[:used]
        first, g = self.length, self.num_global
        positions = torch.cat([self.kept_positions[:filled], torch.arange(first, first + n, device=k.device)])
        keys = torch.cat([self.keys[:, :, :filled], k], dim=2)
        values = torch.cat([self.values[:, :, :filled], v], dim=2)
        self.length += n
        # the new keys that stay: global ones (a prefix) and the last window + 1 (a suffix)
        global_end = min(n, max(0, g - first))
        index = torch.cat([torch.arange(global_end), torch.arange(max(global_end, n - self.window - 1), n)])
        index = index.to(k.device)
        kept = index + first
        slots = torch.where(kept < g, kept, g + (kept - g) % (self.window + 1))
        self.keys[:, :, slots] = k[:, :, index]
        self.values[:, :, slots] = v[:, :, index]
        self.kept_positions[slots] = kept
        return keys, values, positions

    def pin(self, keys: Tensor, values: Tensor) -> None:
        """Keep ``keys, values`` (batch, kv_heads, n, head_dim) after the sinks for good, once the prompt is in
        (they may hold other positions in each head, so their slots are marked -2, not by position); a later chunk
        then goes one token at a time (:meth:`ordered` knows no pinned keys)."""
        g, n = self.num_global, keys.shape[2]
        self.keys = torch.cat([self.keys[:, :, :g], keys, self.keys[:, :, g:]], 2)
        self.values = torch.cat([self.values[:, :, :g], values, self.values[:, :, g:]], 2)
        marks = self.kept_positions.new_full((n,), -2)
        self.kept_positions = torch.cat([self.kept_positions[:g], marks, self.kept_positions[g:]])
        self.pinned, self.slots = self.pinned + n, self.slots + n

    def ordered(self) -> tuple[Tensor, Tensor, int]:
        """The kept keys and values in position order (the sinks, then the window), and the window keys' shift
        (position minus column): a chunk after the cache then sees a contiguous band of keys (rows without
        left padding only)."""
        if self.length <= self.slots:  # not wrapped: slot = position
            return self.keys[:, :, : self.length], self.values[:, :, : self.length], 0
        g, oldest = self.num_global, self.length - self.window - 1
        first = self._slot(oldest)
        order = torch.cat([torch.arange(g), torch.arange(first, self.slots), torch.arange(g, first)])
        order = order.to(self.keys.device)
        return self.keys.index_select(2, order), self.values.index_select(2, order), oldest - g

    def reorder(self, index: Tensor) -> None:
        if self.keys is not None:
            self.keys = self.keys.index_select(0, index)
            self.values = self.values.index_select(0, index)

    def shift(self, n: int) -> None:
        """Move every kept key ``n`` columns: with no global keys (left padding refuses them) a position's slot is
        ``position mod (window + 1)``, so the ring rolls by ``n``; a position moved below 0 is empty."""
        if self.keys is not None:
            self.keys, self.values = self.keys.roll(n, 2), self.values.roll(n, 2)
            moved = self.kept_positions.roll(n)
            self.kept_positions = torch.where(moved < 0, -1, moved + n).clamp(min=-1)
        self.length += n

    def cat(self, other: RollingKVCache) -> None:
        """Append ``other``'s rows (same length): a slot one side has empty holds that side's left padding."""
        self.keys, self.values = torch.cat([self.keys, other.keys]), torch.cat([self.values, other.values])
        self.kept_positions = torch.maximum(self.kept_positions, other.kept_positions)


class SplitHeadsState:
    """Two states over disjoint kv heads of one layer: a growing cache for the heads that attend their whole
    past and a window's ring for the others (``retrieval_heads``)."""

    def __init__(self, full: KVCache, local: RollingKVCache) -> None:
        self.full, self.local = full, local

    def reserve(self, columns: int) -> None:
        self.full.reserve(columns)

    def reorder(self, index: Tensor) -> None:
        self.full.reorder(index)
        self.local.reorder(index)

    def shift(self, n: int) -> None:
        self.full.shift(n)
        self.local.shift(n)

    def cat(self, other: SplitHeadsState) -> None:
        self.full.cat(other.full)
        self.local.cat(other.local)


class LinearAttentionState:
    """Recurrent state of kernelized attention (Katharopoulos et al., 2020): O(1) memory per token.

    ``kv`` = Σ φ(k) vᵀ (batch, heads, features, head_dim) and ``k_sum`` = Σ φ(k) (batch, heads, features).
    """

    def __init__(self) -> None:
        self.kv: Tensor | None = None
        self.k_sum: Tensor | None = None
        self.length = 0

    def reorder(self, index: Tensor) -> None:
        if self.kv is not None:
            self.kv = self.kv.index_select(0, index)
            self.k_sum = self.k_sum.index_select(0, index)

    def shift(self, n: int) -> None:
        self.length += n  # columns only: left padding never enters the running sums

    def cat(self, other: LinearAttentionState) -> None:
        self.kv, self.k_sum = torch.cat([self.kv, other.kv]), torch.cat([self.k_sum, other.k_sum])


class WindowLinearState:
    """Decoding memory of window + linear attention (LoLCATs): the last ``window`` keys and values, and the
    running sums over every older key (``kv`` = Σ φ(k) vᵀ, ``k_sum`` = Σ φ(k)) — flat in the length."""

    def __init__(self) -> None:
        self.keys: Tensor | None = None  # (batch, kv_heads, <= window, head_dim)
        self.values: Tensor | None = None
        self.kv: Tensor | None = None  # (batch, heads, features, head_dim)
        self.k_sum: Tensor | None = None  # (batch, heads, features)
        self.length = 0

    def extend(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """The kept keys/values followed by the new ones (the caller then folds the oldest into the sums)."""
        self.length += k.shape[2]
        if self.keys is not None:
            k, v = torch.cat([self.keys, k], dim=2), torch.cat([self.values, v], dim=2)
        self.keys, self.values = k, v
        return k, v

    def keep(self, window: int) -> None:
        self.keys, self.values = self.keys[:, :, -window:], self.values[:, :, -window:]

    def reorder(self, index: Tensor) -> None:
        for name in ("keys", "values", "kv", "k_sum"):
            if getattr(self, name) is not None:
                setattr(self, name, getattr(self, name).index_select(0, index))


class SSMState:
    """The recurrent state of a state-space mixer (Mamba-2): (batch, heads, head_dim, state), whatever the length.

    Its convolution keeps its own ``ConvState``; together they are all a Mamba-2 layer remembers.
    """

    def __init__(self) -> None:
        self.state: Tensor | None = None

    def reorder(self, index: Tensor) -> None:
        if self.state is not None:
            self.state = self.state.index_select(0, index)

    def shift(self, n: int) -> None:
        """Nothing to do: the state is per row, whatever the columns."""

    def cat(self, other: SSMState) -> None:
        self.state = torch.cat([self.state, other.state])
