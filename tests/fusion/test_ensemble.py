"""The Ensemble Scorer: identities, a hand-computed combination, mixed architectures, and its errors."""

from __future__ import annotations

import math

import pytest
import torch
from fusion.fusion_helpers import VOCAB, tiny_config, tokenizer

from hybridformer import CheckpointError, Ensemble, load_checkpoint
from hybridformer.decoding import ModelScorer, greedy_search
from hybridformer.engines import load_engine
from hybridformer.fusion import combine_log_probs

SRC = torch.tensor([[5, 6, 7, 8, 2], [9, 4, 2, 0, 0]])  # (batch, src_len), 0 = padding
STEPS = [torch.tensor([[1], [1]]), torch.tensor([[7], [3]]), torch.tensor([[4], [12]])]  # teacher-forced inputs


def step_all(scorer, src=SRC, steps=STEPS):
    state = scorer.init_state(src)
    out = []
    for tokens in steps:
        lp, state = scorer.step(state, tokens)
        out.append(lp)
    return torch.stack(out)


def greedy(scorer, src=SRC):
    return greedy_search(scorer, scorer.init_state(src), torch.ones(src.shape[0], 1, dtype=torch.long),
                         eos_id=2, max_new_tokens=6)


@pytest.mark.parametrize("combine", ["prob", "log_prob"])
def test_one_checkpoint_twice_is_that_checkpoint(ckpt, combine):
    path = ckpt("a", seed=1)
    single = ModelScorer(load_checkpoint(path).model)
    ensemble = load_engine([load_checkpoint(path), load_checkpoint(path)], combine=combine).scorer
    expected = step_all(single)
    assert torch.allclose(step_all(ensemble), expected, atol=1e-6)
    assert greedy(ensemble) == greedy(single)


def test_weights_one_zero_equal_the_first_model(ckpt):
    a, b = load_checkpoint(ckpt("a", seed=1)), load_checkpoint(ckpt("b", seed=2))
    expected = step_all(ModelScorer(a.model))
    assert torch.equal(step_all(Ensemble([a.model, b.model], weights=[1, 0])), expected)
    log_mean = step_all(Ensemble([a.model, b.model], weights=[1, 0], combine="log_prob"))
    assert torch.allclose(log_mean, expected, atol=1e-6)
    assert not torch.allclose(step_all(Ensemble([a.model, b.model])), expected, atol=1e-3)


def test_combination_by_hand():
    p1, p2 = torch.tensor([[0.5, 0.5]]), torch.tensor([[0.9, 0.1]])
    stacked = torch.stack([p1.log(), p2.log()])
    assert torch.allclose(combine_log_probs(stacked, [0.5, 0.5], "prob").exp(), torch.tensor([[0.7, 0.3]]))
    # geometric mean √(.5·.9) : √(.5·.1) = 3 : 1, renormalised
    assert torch.allclose(combine_log_probs(stacked, [0.5, 0.5], "log_prob").exp(), torch.tensor([[0.75, 0.25]]))
    assert torch.allclose(combine_log_probs(stacked, [0.25, 0.75], "prob").exp(), torch.tensor([[0.8, 0.2]]))


def test_transformer_with_a_differently_shaped_model(ckpt):
    a = load_checkpoint(ckpt("a", seed=1))
    other_cfg = tiny_config(d_model=16, heads=4, kv_heads=2, ffn_dim=24, position="rope", activation="swiglu",
                            norm="rmsnorm", encoder={"layers": 2}, decoder={"layers": 2})
    b = load_checkpoint(ckpt("b", seed=2, cfg=other_cfg))
    ensemble = load_engine([a, b], weights=[1, 3]).scorer
    expected = torch.logsumexp(torch.stack([step_all(ModelScorer(a.model)) + math.log(0.25),
                                            step_all(ModelScorer(b.model)) + math.log(0.75)]), dim=0)
    assert torch.allclose(step_all(ensemble), expected, atol=1e-6)
    hypotheses = greedy(ensemble)
    assert len(hypotheses) == 2 and all(0 <= t < VOCAB for row in hypotheses for t in row)


def test_reorder_reorders_every_member(ckpt):
    a = load_checkpoint(ckpt("a", seed=1))
    b = load_checkpoint(ckpt("b", seed=2, cfg=tiny_config(d_model=16, position="rope")))
    ensemble = load_engine([a, b]).scorer
    index = torch.tensor([1, 0, 0])
    state = ensemble.init_state(SRC)
    _, state = ensemble.step(state, STEPS[0])
    state = ensemble.reorder(state, index)
    got, _ = ensemble.step(state, STEPS[1][index])
    fresh = ensemble.init_state(SRC[index])  # the same hypotheses, decoded from scratch in the new order
    _, fresh = ensemble.step(fresh, STEPS[0][index])
    want, _ = ensemble.step(fresh, STEPS[1][index])
    assert torch.allclose(got, want, atol=1e-6)


def test_language_model_ensemble(ckpt):
    lm = dict(arch="decoder_lm", encoder={"layers": 0})
    a = load_checkpoint(ckpt("a", seed=1, cfg=tiny_config(**lm)))
    b = load_checkpoint(ckpt("b", seed=2, cfg=tiny_config(**lm, position="alibi")))
    ensemble = load_engine([a, b]).scorer
    assert ensemble.seq2seq is False
    prompt = torch.tensor([[1, 5, 6], [1, 7, 8]])
    assert len(greedy_search(ensemble, ensemble.init_state(None), prompt, eos_id=2, max_new_tokens=4)) == 2


def test_load_engine_scorer(ckpt):
    a, b = ckpt("a", seed=1), ckpt("b", seed=2)
    assert isinstance(load_engine([a]).scorer, ModelScorer)
    ensemble = load_engine([a, b], combine="log_prob").scorer
    assert isinstance(ensemble, Ensemble) and ensemble.weights == [0.5, 0.5]


def test_different_vocabularies_name_both_checkpoints(ckpt):
    words = ["<pad>", "<s>", "</s>", "<unk>"] + [f"x{i}" for i in range(12)]
    a, b = ckpt("a"), ckpt("b", tok=tokenizer(words))
    with pytest.raises(CheckpointError, match=f"{a} and {b} have different vocabularies"):
        load_engine([a, b])
    c = ckpt("c", cfg=tiny_config(vocab_size=20))
    with pytest.raises(CheckpointError, match=f"{a} and {c} have different vocabularies: vocab_size 16 vs 20"):
        load_engine([a, c])


def test_mixed_task_shapes_are_refused(ckpt):
    a = ckpt("a")
    lm = ckpt("lm", cfg=tiny_config(arch="decoder_lm"))
    with pytest.raises(CheckpointError, match="must all be encoder_decoder or all decoder_lm"):
        load_engine([a, lm])
    clf = ckpt("clf", cfg=tiny_config(arch="encoder_classifier"))
    with pytest.raises(CheckpointError, match="is an encoder_classifier"):
        load_engine([a, clf])
