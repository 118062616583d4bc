"""The small pieces searches are built from, against hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from hybridformer.decoding.logits import (
    argmax_rows,
    banned_ngram_mask,
    best_extensions,
    block_repeated_ngrams,
    length_penalty,
    max_lengths,
    penalized,
    top_k_filter,
    top_p_filter,
)


def banned(history: list[list[int]], n: int, vocab: int = 8) -> list[list[int]]:
    mask = banned_ngram_mask(torch.tensor(history), n, vocab)
    return [row.nonzero().flatten().tolist() for row in mask]


def test_banned_ngrams_by_hand():
    assert banned([[5, 6, 5]], 2) == [[6]]  # "5 6" seen: after 5, never 6 again
    assert banned([[1, 2, 3, 1, 2]], 3) == [[3]]  # "1 2 3" seen
    assert banned([[1, 2, 3, 1, 2]], 2) == [[3]]  # after 2: only "2 3" exists
    assert banned([[4, 4, 4]], 2) == [[4]]
    assert banned([[1, 2, 3]], 2) == [[]]  # 3 never seen before
    assert banned([[1, 2, 3], [7, 1, 7]], 1) == [[1, 2, 3], [1, 7]]
    assert banned([[1, 2]], 3) == [[]]  # shorter than one n-gram


def test_eos_is_never_blocked():
    log_probs = torch.zeros(1, 8)
    out = block_repeated_ngrams(log_probs, torch.tensor([[2, 5, 2]]), 2, eos_id=2)
    assert out[0, 2] == 0 and out[0, 5] == -math.inf


def test_max_lengths_and_penalty():
    assert max_lengths(torch.tensor([0, 4, 10]), 1.5, 2).tolist() == [2, 8, 17]
    assert max_lengths(torch.tensor([0, 10]), 0.0, 0, cap=5).tolist() == [1, 1]
    assert max_lengths(torch.tensor([10]), 1.0, 0, cap=5).tolist() == [5]
    assert length_penalty(torch.tensor([1, 4]), 0.5).tolist() == [1.0, 2.0]


def test_top_k_keeps_exactly_k():
    logits = torch.tensor([[0.1, 3.0, 2.0, -1.0, 2.5]])
    kept = top_k_filter(logits, 2).isfinite()[0].tolist()
    assert kept == [False, True, False, False, True]
    assert torch.equal(top_k_filter(logits, 0), logits)


@pytest.mark.parametrize(("p", "expected"), [(0.5, [0]), (0.6, [0, 1]), (0.85, [0, 1, 2]), (1.0, [0, 1, 2, 3])])
def test_top_p_keeps_the_smallest_nucleus(p, expected):
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    order = torch.tensor([2, 0, 3, 1])  # shuffle columns: the filter must follow probabilities, not positions
    logits = probs.log()[:, order]
    kept = top_p_filter(logits, p).isfinite()[0]
    assert sorted(order[kept].tolist()) == expected


def test_penalties_by_hand():
    log_probs = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    counts = torch.tensor([[2.0, 0.0, 1.0]])
    out = penalized(log_probs, counts, presence=0.5, frequency=0.25)
    scores = torch.tensor([[math.log(0.5) - 0.5 - 0.5, math.log(0.3), math.log(0.2) - 0.5 - 0.25]])
    assert torch.allclose(out, scores - torch.logsumexp(scores, -1, keepdim=True))
    assert torch.allclose(penalized(log_probs, torch.zeros_like(counts), 0.0, 0.0), log_probs)


def test_argmax_rows_is_torch_argmax_first_on_ties():
    scores = torch.tensor([[0.0, 3.0, 3.0, -1.0], [2.0, 1.0, 2.0, 2.0], [-5.0, float("-inf"), -4.0, -4.5]])
    assert argmax_rows(scores).tolist() == [1, 0, 2] == scores.argmax(-1).tolist()
    assert argmax_rows(scores).dtype == torch.long
    big = torch.randn(8, 4099)
    assert torch.equal(argmax_rows(big), big.argmax(-1))
    assert torch.equal(argmax_rows(big.bfloat16()), big.bfloat16().argmax(-1))  # other dtypes: torch's own


@pytest.mark.parametrize("vocab", [8000, 1000, 37, 8003])  # tiled, tiled, one topk, tiled with a padded tile
def test_best_extensions_equal_one_topk_over_all_candidates(vocab):
    torch.manual_seed(vocab)
    sentences, k, n = 3, 5, 10
    log_probs = torch.randn(sentences * k, vocab).log_softmax(-1)
    log_probs[2, : vocab // 2] = float("-inf")  # banned tokens
    # a beam whose best tokens sit in one tile, and a dead beam (the state of every beam but the first at step 0)
    log_probs[5, 64:70] = 0.0
    scores = torch.randn(sentences, k)
    scores[1, 2] = float("-inf")
    expected = (scores.reshape(-1, 1) + log_probs).reshape(sentences, -1).topk(n, dim=1)
    values, index = best_extensions(log_probs, scores, n)
    assert torch.equal(values, expected.values)
    assert torch.equal(index.sort(1).values, expected.indices.sort(1).values)  # no ties here


def test_best_extensions_with_fewer_live_candidates_than_asked():
    """A sentence with 3 finite candidates: they come first; the rest are -inf at valid indices."""
    vocab, k = 1000, 4
    log_probs = torch.full((k, vocab), float("-inf"))
    log_probs[0, [3, 500, 999]] = torch.tensor([-1.0, -2.0, -3.0])
    values, index = best_extensions(log_probs, torch.zeros(1, k), 8)
    assert values[0, :3].tolist() == [-1.0, -2.0, -3.0] and index[0, :3].tolist() == [3, 500, 999]
    assert values[0, 3:].isneginf().all() and bool(((index >= 0) & (index < k * vocab)).all())
