"""Beam search against hand-built scorers whose best sequence is known, and against greedy."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from hybridformer import ModelConfig, build_model
from hybridformer.decoding import ModelScorer, beam_search, greedy_search, logits

EOS, A, B = 2, 3, 4
VOCAB = 5  # 0 pad, 1 bos, 2 eos, 3 a, 4 b


class TableScorer:
    """A Scorer from a table {generated tokens (tuple) -> {token: prob}}; unknown prefixes end (EOS)."""

    def __init__(self, table: dict[tuple, dict[int, float]] | None = None, seed: int | None = None) -> None:
        self.table, self.seed = table or {}, seed

    def init_state(self, src):
        return None

    def distribution(self, generated: tuple) -> torch.Tensor:
        if self.seed is not None:  # a fixed random distribution over EOS, a, b for every prefix
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + hash(generated) % 1_000_003)
            logits = torch.full((VOCAB,), float("-inf"))
            logits[[EOS, A, B]] = torch.randn(3, generator=g) * 2
            return logits.log_softmax(-1)
        probs = self.table.get(generated, {EOS: 1.0})
        out = torch.full((VOCAB,), float("-inf"))
        for token, p in probs.items():
            out[token] = math.log(p)
        return out

    def step(self, state, prev_tokens):
        rows = [tuple(row) for row in prev_tokens.tolist()]
        state = [r[1:] if s is None else s + r for s, r in zip(state or [None] * len(rows), rows, strict=True)]
        return torch.stack([self.distribution(s) for s in state]), state

    def reorder(self, state, index):
        return [state[i] for i in index.tolist()]


def run_beam(scorer, beam, **kw):
    prefix = torch.ones(1, 1, dtype=torch.long)
    return beam_search(scorer, scorer.init_state(None), prefix, beam=beam, eos_id=EOS, **kw)[0]


def test_beam_finds_the_best_sequence_where_greedy_does_not():
    # greedy: a (0.6) then EOS (0.4) = 0.24; the best is b (0.4) then EOS (0.9) = 0.36
    table = {(): {A: 0.6, B: 0.4}, (A,): {EOS: 0.4, A: 0.3, B: 0.3}, (B,): {EOS: 0.9, A: 0.05, B: 0.05}}
    scorer = TableScorer(table)
    greedy = greedy_search(scorer, None, torch.ones(1, 1, dtype=torch.long), eos_id=EOS, max_new_tokens=5)
    assert greedy == [[A]]
    best = run_beam(scorer, 2, max_len=5, lenpen=0.0)
    assert best.tokens == [B]
    assert best.log_prob == pytest.approx(math.log(0.36), abs=1e-5)


@pytest.mark.parametrize("at_budget", ["eos", "stop"])  # EOS well within the budget: both conventions agree
@pytest.mark.parametrize("early_stopping", [True, False])
def test_length_penalty_changes_the_choice(early_stopping, at_budget):
    # [] scores log .5 = -0.69 (length 1); [a, b] scores log .256 = -1.36 (length 3, mean -0.45)
    table = {(): {EOS: 0.5, A: 0.4, B: 0.1}, (A,): {B: 0.8, EOS: 0.1, A: 0.1}, (A, B): {EOS: 0.8, A: 0.1, B: 0.1},
             (B,): {A: 1.0}}
    scorer = TableScorer(table)
    options = {"max_len": 6, "early_stopping": early_stopping, "at_budget": at_budget}
    assert run_beam(scorer, 2, lenpen=0.0, **options).tokens == []
    chosen = run_beam(scorer, 2, lenpen=1.0, **options)
    assert chosen.tokens == [A, B]
    assert chosen.score == pytest.approx(math.log(0.256) / 3, abs=1e-5)


def brute_force_best(scorer: TableScorer, max_len: int, lenpen: float, at_budget: str = "eos",
                     ) -> tuple[list[int], float]:
    """Every output the budget allows: ``eos``: up to ``max_len`` tokens, then EOS (scored); ``stop``: up to
    ``max_len - 1`` tokens then EOS, or exactly ``max_len`` tokens and no EOS."""
    best, best_score = None, -math.inf
    for n in range(max_len + 1):
        for seq in itertools.product([A, B], repeat=n):
            log_prob = sum(float(scorer.distribution(seq[:i])[t]) for i, t in enumerate(seq))
            ends_with_eos = at_budget == "eos" or n < max_len
            log_prob += float(scorer.distribution(seq)[EOS]) if ends_with_eos else 0.0
            score = log_prob / (n + ends_with_eos) ** lenpen
            if score > best_score:
                best, best_score = list(seq), score
    return best, best_score


@pytest.mark.parametrize("at_budget", ["eos", "stop"])
@pytest.mark.parametrize("lenpen", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_exact_beam_with_room_for_every_prefix_equals_brute_force(seed, lenpen, at_budget):
    scorer = TableScorer(seed=seed)
    best = run_beam(scorer, 16, max_len=3, lenpen=lenpen, early_stopping=False, at_budget=at_budget)
    tokens, score = brute_force_best(scorer, 3, lenpen, at_budget)
    assert best.tokens == tokens
    assert best.score == pytest.approx(score, abs=1e-5)


def test_budget_forces_eos():
    always_a = {A: 0.99, EOS: 0.01}
    scorer = TableScorer({(): always_a, (A,): always_a, (A, A): always_a})
    best = run_beam(scorer, 2, max_len=2, early_stopping=False)
    assert best.tokens == [A, A]
    assert best.log_prob == pytest.approx(2 * math.log(0.99) + math.log(0.01), abs=1e-5)


def test_budget_conventions_on_a_hand_checked_case():
    """One token of budget, beam 2, lenpen 1. EOS (0.1) ranks third at step 0, so no hypothesis ends there.

    eos (fairseq): EOS is forced after the budget's token and scored, length 2:
        [a] log(0.6 · 0.1) / 2 = -1.41, [b] log(0.3 · 0.9) / 2 = -0.65 -> [b]
    stop (transformers' max_new_tokens=1): the two best extensions end as they are, length 1:
        [a] log 0.6 = -0.51, [b] log 0.3 = -1.20 -> [a]
    """
    table = {(): {A: 0.6, B: 0.3, EOS: 0.1}, (A,): {A: 0.9, EOS: 0.1}, (B,): {EOS: 0.9, A: 0.1}}
    scorer = TableScorer(table)
    fairseq = run_beam(scorer, 2, max_len=1, lenpen=1.0, at_budget="eos")
    assert fairseq.tokens == [B]
    assert fairseq.log_prob == pytest.approx(math.log(0.27), abs=1e-5)
    assert fairseq.score == pytest.approx(math.log(0.27) / 2, abs=1e-5)
    hf = run_beam(scorer, 2, max_len=1, lenpen=1.0, at_budget="stop")
    assert hf.tokens == [A]
    assert hf.log_prob == pytest.approx(math.log(0.6), abs=1e-5)
    assert hf.score == pytest.approx(math.log(0.6), abs=1e-5)
    with pytest.raises(ValueError, match="at_budget"):
        run_beam(scorer, 2, max_len=1, at_budget="truncate")


def tiny(arch: str) -> torch.nn.Module:
    cfg = ModelConfig(arch=arch, vocab_size=13, d_model=16, heads=2, ffn_dim=32, dropout=0.0, position="rope",
                      encoder={"layers": 1}, decoder={"layers": 2})
    return build_model(cfg).eval()


@pytest.mark.parametrize("early_stopping", [True, False])
@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder_lm"])
def test_beam_one_equals_greedy(arch, early_stopping):
    model = tiny(arch)
    scorer = ModelScorer(model)
    src = torch.tensor([[5, 6, 7, 2], [8, 9, 2, 0], [3, 2, 0, 0]])
    prefix = torch.ones(3, 1, dtype=torch.long) if arch == "encoder_decoder" else src[:, :2]
    budget = torch.tensor([7, 3, 5])
    greedy = greedy_search(scorer, scorer.init_state(src), prefix, eos_id=2, max_new_tokens=budget)
    beam = beam_search(scorer, scorer.init_state(src), prefix, beam=1, eos_id=2, max_len=budget,
                       early_stopping=early_stopping)
    assert [h.tokens for h in beam] == greedy
    assert [len(g) for g in greedy] <= budget.tolist()


def test_batched_beam_equals_one_sentence_at_a_time():
    model = tiny("encoder_decoder")
    scorer = ModelScorer(model)
    src = torch.tensor([[5, 6, 7, 2], [8, 9, 2, 0], [3, 2, 0, 0]])
    together = beam_search(scorer, scorer.init_state(src), torch.ones(3, 1, dtype=torch.long), beam=3, eos_id=2,
                           max_len=torch.tensor([6, 4, 5]))
    for row, length, hyp in zip(src, [6, 4, 5], together, strict=True):
        row = row[row.ne(0)][None]
        alone = beam_search(scorer, scorer.init_state(row), torch.ones(1, 1, dtype=torch.long), beam=3, eos_id=2,
                            max_len=length)[0]
        assert alone.tokens == hyp.tokens
        assert alone.score == pytest.approx(hyp.score, abs=1e-4)


# Outputs of the beam search as it stood before its bookkeeping moved to the host (tokens, score, log_prob per
# source), on the tiny Conformer -> Transformer model below: the rewrite must keep them exactly.
BEFORE = {
    (5, True, "eos", 0, 1.0): [([36], -2.78197, -5.56395), ([23] * 12, -1.84108, -23.93408),
                               ([1, 36, 12, 12, 12, 12], -1.9527, -13.6689),
                               ([36, 36, 36, 16, 16, 16, 16, 16, 16], -2.5711, -25.711),
                               ([16] * 12, -1.62347, -21.10515)],
    (3, False, "stop", 2, 1.0): [([1, 29, 29], -0.4613, -1.38389),
                                 ([23, 23, 29, 23, 20, 29, 29, 8, 8, 36, 36, 23], -1.88511, -22.62128),
                                 ([1, 36, 12, 12, 21, 21], -0.72028, -4.3217),
                                 ([36, 36, 23, 29, 29, 15, 15, 8, 8], -1.75757, -15.81815),
                                 ([16, 16, 24, 24, 15, 15, 22, 22, 11, 11], -3.69909, -40.68996)],
    (5, False, "eos", 0, 0.0): [([36], -5.56395, -5.56395), ([23] * 12, -23.93408, -23.93408),
                                ([1, 36, 12, 12, 12, 12], -13.6689, -13.6689),
                                ([36, 36, 36, 16, 16, 16, 16, 16, 16], -25.711, -25.711),
                                ([16] * 12, -21.10515, -21.10515)],
    (3, True, "eos", 2, 1.0): [([1, 36, 36], -2.53496, -10.13984),
                               ([23, 23, 29, 23, 20, 29, 29, 8, 8, 23, 38, 38], -3.10322, -40.34192),
                               ([1, 36, 12, 12, 15, 15], -3.25481, -22.78364),
                               ([36, 36, 23, 29, 29, 15, 15, 8, 8], -2.98953, -29.89532),
                               ([16, 16, 24, 15, 15, 22, 22], -3.70588, -29.64701)],
}
GREEDY_BEFORE = [[1] * 12, [16] * 12, [36, 12] + [15] * 10, [29] * 12, [16] * 12]


def tiny_seq2seq() -> tuple[ModelScorer, torch.Tensor]:
    """A random Conformer -> Transformer model with sharpened weights (and a likelier EOS, so some hypotheses end
    early) and five padded sources of different lengths."""
    torch.manual_seed(0)
    cfg = ModelConfig(arch="encoder_decoder", vocab_size=40, d_model=32, heads=4, ffn_dim=64, dropout=0.0,
                      encoder={"layers": 2, "layer": "conformer", "conv": {"kernel_size": 3}}, decoder={"layers": 2})
    model = build_model(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.5)
        model.output.weight[2] *= 1.8
    src = torch.randint(3, 40, (5, 9), generator=torch.Generator().manual_seed(1))
    for row, length in enumerate([9, 4, 7, 2, 9]):
        src[row, length - 1], src[row, length:] = EOS, 0
    return ModelScorer(model), src


@pytest.mark.parametrize("tile", [64, 3])  # 40 tokens: one topk over all candidates, or tiles (the last padded)
@pytest.mark.parametrize("options", list(BEFORE))
def test_seq2seq_outputs_are_unchanged(options, tile, monkeypatch):
    monkeypatch.setattr(logits, "TILE", tile)
    beam, early_stopping, at_budget, no_repeat_ngram, lenpen = options
    scorer, src = tiny_seq2seq()
    bos = torch.ones(len(src), 1, dtype=torch.long)
    hyps = beam_search(scorer, scorer.init_state(src), bos, beam=beam, eos_id=EOS,
                       max_len=torch.tensor([3, 12, 6, 9, 12]), lenpen=lenpen, early_stopping=early_stopping,
                       no_repeat_ngram=no_repeat_ngram, at_budget=at_budget)
    for hyp, (tokens, score, log_prob) in zip(hyps, BEFORE[options], strict=True):
        assert hyp.tokens == tokens
        assert (hyp.score, hyp.log_prob) == (pytest.approx(score, abs=2e-4), pytest.approx(log_prob, abs=2e-4))
    assert greedy_search(scorer, scorer.init_state(src), bos, eos_id=EOS, max_new_tokens=12) == GREEDY_BEFORE
