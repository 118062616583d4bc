"""Sampling: truncations reduce to greedy, seeds reproduce, and draws follow the tempered distribution."""

from __future__ import annotations

import torch

from hybridformer import ModelConfig, build_model
from hybridformer.decoding import ModelScorer, greedy_search, sample_search, sample_tokens


def lm_and_prompt():
    cfg = ModelConfig(arch="decoder_lm", vocab_size=23, d_model=16, heads=2, ffn_dim=32, dropout=0.0,
                      decoder={"layers": 1})
    return ModelScorer(build_model(cfg).eval()), torch.tensor([[5, 6, 7], [8, 9, 10]])


def run(scorer, prompt, **kw):
    return sample_search(scorer, scorer.init_state(None), prompt, eos_id=2, max_new_tokens=8, **kw)


def test_top_k_one_and_tiny_top_p_are_greedy():
    scorer, prompt = lm_and_prompt()
    greedy = greedy_search(scorer, scorer.init_state(None), prompt, eos_id=2, max_new_tokens=8)
    assert run(scorer, prompt, top_k=1, generator=torch.Generator().manual_seed(0)) == greedy
    assert run(scorer, prompt, top_p=1e-6, generator=torch.Generator().manual_seed(1)) == greedy


def test_seed_reproduces_and_differs_across_seeds():
    scorer, prompt = lm_and_prompt()
    outs = [run(scorer, prompt, temperature=2.0, generator=torch.Generator().manual_seed(s)) for s in (3, 3, 4)]
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]


def test_draws_follow_the_tempered_distribution():
    log_probs = torch.tensor([0.6, 0.3, 0.1]).log().expand(20000, 3)
    g = torch.Generator().manual_seed(0)
    for temperature in (1.0, 0.5):
        draws = sample_tokens(log_probs, temperature=temperature, generator=g)
        expected = (log_probs[0] / temperature).softmax(-1)
        observed = torch.bincount(draws, minlength=3).float() / len(draws)
        assert torch.allclose(observed, expected, atol=0.015)
    draws = sample_tokens(log_probs, top_k=2, generator=g)
    assert set(draws.tolist()) == {0, 1}
