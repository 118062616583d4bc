from __future__ import annotations

import random

import pytest

from hybridformer.data.batching import BatchStream, DataPosition, collate, make_batches
from hybridformer.data.datasets import Example
from hybridformer.errors import ConfigError


def _examples(n: int = 200, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s, t = rng.randint(1, 30), rng.randint(1, 30)
        out.append(Example([5] * s, [1] + [6] * t, [6] * t + [2]))
    return out


def test_budget_and_every_example_once_per_epoch():
    examples = _examples()
    sizes = [ex.size for ex in examples]
    for epoch in range(3):
        batches = make_batches(sizes, 120, seed=1, epoch=epoch)
        assert sorted(i for b in batches for i in b) == list(range(len(examples)))
        for batch in batches:
            assert len(batch) * max(sizes[i] for i in batch) <= 120
            padded = collate([examples[i] for i in batch], 0)
            assert padded["src"].numel() <= 120 and padded["tgt_in"].numel() <= 120


def test_seeded_shuffle_is_deterministic_and_varies_by_epoch():
    sizes = [ex.size for ex in _examples()]
    assert make_batches(sizes, 120, seed=1, epoch=0) == make_batches(sizes, 120, seed=1, epoch=0)
    assert make_batches(sizes, 120, seed=1, epoch=0) != make_batches(sizes, 120, seed=1, epoch=1)
    assert make_batches(sizes, 120, seed=1, epoch=0) != make_batches(sizes, 120, seed=2, epoch=0)


def test_example_over_budget_is_config_error():
    with pytest.raises(ConfigError, match="max_tokens=10"):
        make_batches([5, 11], 10, seed=0, epoch=0)


def test_stream_position_restores_exactly():
    examples = _examples()
    full = BatchStream(examples, 120, seed=3, per_step=2)
    seen = [full.next_step() for _ in range(40)]  # crosses an epoch boundary
    assert full.position.epoch >= 1
    half = BatchStream(examples, 120, seed=3, per_step=2)
    for _ in range(17):
        half.next_step()
    resumed = BatchStream(examples, 120, seed=3, per_step=2,
                          position=DataPosition.from_state(half.position.state_dict()))
    assert [resumed.next_step() for _ in range(23)] == seen[17:]
