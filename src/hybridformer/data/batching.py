"""Token-budget batching (as in fairseq's ``max_tokens``): length buckets, seeded order, resumable position.

Examples are sorted by length (ties broken by a seeded permutation) and packed greedily so that
``batch_size * longest_example <= max_tokens`` — padding is what costs memory, so that is what
the budget counts. The order of batches is then shuffled with ``(seed, epoch)``. Because an
epoch's batch list is a pure function of ``(seed, epoch)``, the whole data state is two ints,
:class:`DataPosition`, which the trainer saves and restores for exact resume.

Under data parallelism each optimizer step consumes ``accumulate * world_size`` consecutive
batches; micro-step ``j`` of rank ``r`` takes batch ``j * world_size + r``. One process with
``accumulate=2`` therefore sees exactly the batches two processes with ``accumulate=1`` see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..errors import CheckpointError, ConfigError
from .datasets import Example
from .text import pad


@dataclass
class DataPosition:
    epoch: int = 0
    batch: int = 0  # index of the next unread batch in this epoch's list

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch": self.batch}

    @classmethod
    def from_state(cls, state: dict[str, int]) -> DataPosition:
        return cls(int(state["epoch"]), int(state["batch"]))


def make_batches(sizes: Sequence[int], max_tokens: int, *, seed: int, epoch: int, shuffle: bool = True,
                 ) -> list[list[int]]:
    """Index lists, each within the token budget; every example appears in exactly one batch."""
    if not sizes:
        return []
    longest = max(sizes)
    if longest > max_tokens:
        raise ConfigError(f"data.max_tokens={max_tokens} is smaller than the longest example ({longest} tokens); "
                          "raise data.max_tokens or lower the length limits")
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(sizes), generator=generator).tolist() if shuffle else list(range(len(sizes)))
    order.sort(key=lambda i: sizes[i])  # stable: equal lengths keep the seeded order
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        # sorted ascending, so this example is the longest of the batch so far
        if current and (len(current) + 1) * sizes[index] > max_tokens:
            batches.append(current)
            current = []
        current.append(index)
    batches.append(current)
    if shuffle:
        permutation = torch.randperm(len(batches), generator=generator).tolist()
        batches = [batches[i] for i in permutation]
    return batches


class BatchStream:
    """Endless stream of batches over epochs, with a position that can be saved and restored."""

    def __init__(self, examples: Sequence[Example], max_tokens: int, *, seed: int, per_step: int = 1,
                 shuffle: bool = True, position: DataPosition | None = None) -> None:
        self.examples, self.max_tokens, self.seed, self.shuffle = examples, max_tokens, seed, shuffle
        self.per_step = per_step  # batches one optimizer step consumes across all ranks
        self.position = position or DataPosition()
        self._epoch_cache: tuple[int, list[list[int]]] | None = None
        count = len(self.batches(self.position.epoch))
        if count < per_step:
            raise ConfigError(f"one optimizer step needs {per_step} batches but an epoch has only "
                              f"{count}; lower data.max_tokens or train.accumulate")
        if self.position.batch > count:  # a resumed position must lie inside this data's epoch
            raise CheckpointError(f"the saved data position (epoch {self.position.epoch}, batch "
                                  f"{self.position.batch:,}) lies beyond the {count} batches of an epoch of this "
                                  "data; the trainer state does not belong to this run")

    def batches(self, epoch: int) -> list[list[int]]:
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            sizes = [ex.size for ex in self.examples]
            self._epoch_cache = (epoch, make_batches(sizes, self.max_tokens, seed=self.seed, epoch=epoch,
                                                     shuffle=self.shuffle))
        return self._epoch_cache[1]

    def next_step(self) -> list[list[Example]]:
        """The ``per_step`` batches of the next optimizer step; an epoch's incomplete tail is skipped."""
        if self.position.batch + self.per_step > len(self.batches(self.position.epoch)):
            self.position = DataPosition(self.position.epoch + 1, 0)
        start = self.position.batch
        chosen = self.batches(self.position.epoch)[start: start + self.per_step]
        self.position = DataPosition(self.position.epoch, start + self.per_step)
        return [[self.examples[i] for i in batch] for batch in chosen]


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad a batch: ``src`` (batch, S) when present, ``tgt_in``/``tgt_out`` (batch, T), or ``labels`` (batch,)."""
    if examples[0].label is not None:  # classification: documents and their class ids
        return {"src": pad([ex.src for ex in examples], pad_id),
                "labels": torch.tensor([ex.label for ex in examples], dtype=torch.long)}
    batch = {"tgt_in": pad([ex.tgt_in for ex in examples], pad_id),
             "tgt_out": pad([ex.tgt_out for ex in examples], pad_id)}
    if examples[0].src:
        batch["src"] = pad([ex.src for ex in examples], pad_id)
    return batch
