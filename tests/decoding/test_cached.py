"""Incremental decoding through the caches gives the same tokens as recomputing the whole prefix."""

from __future__ import annotations

import pytest
import torch

from hybridformer import ModelConfig, build_model
from hybridformer.decoding import ModelScorer, beam_search, greedy_search, output_log_probs, sample_search


class FullRecomputeScorer:
    """The oracle: every step runs the model's plain forward over the whole sequence so far."""

    def __init__(self, model) -> None:
        self.model, self.seq2seq = model, hasattr(model, "encode")

    def init_state(self, src):
        return {"src": src, "tokens": None}

    @torch.no_grad()
    def step(self, state, prev_tokens):
        tokens = prev_tokens if state["tokens"] is None else torch.cat([state["tokens"], prev_tokens], 1)
        state["tokens"] = tokens
        logits = self.model(state["src"], tokens) if self.seq2seq else self.model(tokens)
        log_probs = logits[:, -1].float().log_softmax(-1)
        log_probs[:, self.model.pad_id] = float("-inf")
        return log_probs, state

    def reorder(self, state, index):
        state["tokens"] = state["tokens"].index_select(0, index)
        if state["src"] is not None:
            state["src"] = state["src"].index_select(0, index)
        return state


def search(kind: str, scorer, src, prefix, budget):
    state = scorer.init_state(src)
    if kind == "greedy":
        return greedy_search(scorer, state, prefix, eos_id=2, max_new_tokens=budget, no_repeat_ngram=0)
    if kind == "sample":
        g = torch.Generator().manual_seed(7)
        return sample_search(scorer, state, prefix, eos_id=2, max_new_tokens=budget, top_k=8, generator=g)
    return [h.tokens for h in beam_search(scorer, state, prefix, beam=3, eos_id=2, max_len=budget,
                                          no_repeat_ngram=2 if kind == "beam-ngram" else 0)]


@pytest.mark.parametrize("kind", ["beam", "beam-ngram", "sample"])  # greedy == beam 1: test_beam.py
@pytest.mark.parametrize("position", ["sinusoidal", "learned", "rope", "alibi", "t5"])
@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder_lm"])
def test_cached_equals_full_recomputation(arch, position, kind):
    cfg = ModelConfig(arch=arch, vocab_size=17, d_model=16, heads=2, kv_heads=1, ffn_dim=32, dropout=0.0,
                      position=position, encoder={"layers": 1}, decoder={"layers": 2})
    model = build_model(cfg).eval()
    src = torch.tensor([[5, 6, 7, 8, 2], [9, 10, 2, 0, 0]])
    prefix = torch.ones(2, 1, dtype=torch.long) if arch == "encoder_decoder" else torch.tensor([[5, 6, 7], [9, 3, 4]])
    budget = torch.tensor([9, 6])
    cached = search(kind, ModelScorer(model), src, prefix, budget)
    full = search(kind, FullRecomputeScorer(model), src, prefix, budget)
    assert cached == full
    assert any(cached)  # the comparison is not between empty outputs


class AllLogitsScorer(ModelScorer):
    """The same cached decoding, but every step projects every position onto the vocabulary (the old prompt pass)."""

    @torch.no_grad()
    def step(self, state, prev_tokens):
        if self.seq2seq:
            logits = self.model.decode(prev_tokens, state.memory, state.memory_padding_mask,
                                       cache=state.cache, offset=state.offset)
            state.memory = state.memory_padding_mask = None
        else:
            logits = self.model.decode(prev_tokens, cache=state.cache, offset=state.offset)
        assert logits.shape[1] == prev_tokens.shape[1]
        state.offset += prev_tokens.shape[1]
        return output_log_probs(logits[:, -1], self.model.pad_id), state


@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder_lm"])
def test_last_position_prompt_pass_gives_the_same_tokens_and_scores(arch):
    """Scoring only the last prompt position (logits_to_keep=1) changes nothing: same next-token
    log-probs, same greedy tokens, same beam hypotheses and scores as projecting every position."""
    cfg = ModelConfig(arch=arch, vocab_size=23, d_model=16, heads=2, kv_heads=1, ffn_dim=32, dropout=0.0,
                      position="rope", encoder={"layers": 1}, decoder={"layers": 2})
    model = build_model(cfg).eval()
    src = torch.tensor([[5, 6, 7, 8, 2], [9, 10, 2, 0, 0]])
    prefix = torch.ones(2, 1, dtype=torch.long) if arch == "encoder_decoder" else torch.tensor(
        [[5, 6, 7, 11, 12, 13], [9, 3, 4, 14, 15, 16]])
    last, every = ModelScorer(model), AllLogitsScorer(model)
    first_last, _ = last.step(last.init_state(src), prefix)
    first_every, _ = every.step(every.init_state(src), prefix)
    torch.testing.assert_close(first_last, first_every)
    budget = torch.tensor([9, 6])
    assert search("greedy", last, src, prefix, budget) == search("greedy", every, src, prefix, budget)
    hyps = [beam_search(s, s.init_state(src), prefix, beam=3, eos_id=2, max_len=budget) for s in (last, every)]
    assert [h.tokens for h in hyps[0]] == [h.tokens for h in hyps[1]] and any(h.tokens for h in hyps[0])
    torch.testing.assert_close(torch.tensor([h.score for h in hyps[0]]), torch.tensor([h.score for h in hyps[1]]))


@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder_lm"])
def test_one_row_steps_through_transposed_weights_equal_full_recomputation(arch):
    """Batch 1 greedy: every step has one row, so every projection multiplies by its kept transpose
    (``cache.project``); the tokens still equal a full forward's, also in a second session (reused copies)."""
    cfg = ModelConfig(arch=arch, vocab_size=17, d_model=16, heads=2, kv_heads=1, ffn_dim=32, dropout=0.0,
                      position="rope", encoder={"layers": 1}, decoder={"layers": 2}, attention_bias=True)
    model = build_model(cfg).eval()
    src = torch.tensor([[5, 6, 7, 8, 2]])
    prefix = torch.ones(1, 1, dtype=torch.long) if arch == "encoder_decoder" else torch.tensor([[5, 6, 7]])
    scorer = ModelScorer(model)
    full = search("greedy", FullRecomputeScorer(model), src, prefix, 9)
    assert search("greedy", scorer, src, prefix, 9) == full and any(full)
    copies = len(scorer.shared)
    assert copies >= 4 * 2 + 1  # qkv, out, two FFN projections per layer, and the vocabulary head
    assert search("greedy", scorer, src, prefix, 9) == full and len(scorer.shared) == copies
