"""Batched prefill: LM prompts of different lengths, left-padded and fed together, decode exactly as alone."""

from __future__ import annotations

import pytest
import torch

from hybridformer import ConfigError, ModelConfig, build_model
from hybridformer.blocks import LAYERS
from hybridformer.checkpoint import Checkpoint
from hybridformer.engines import GenerationOptions
from hybridformer.engines.torch import TorchEngine

PROMPTS = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14, 15, 16, 17, 18], [19]]
ARCHITECTURES = {  # name -> ModelConfig overrides (tiny decoder_lm, GQA: kv_heads=1)
    "rope": {"position": "rope"},
    "learned": {"position": "learned", "max_positions": 64},
    "sinusoidal": {},
    "alibi": {"position": "alibi"},
    "t5-bias": {"position": "t5"},
    "rope-yarn": {"position": "rope", "rope_scaling": {"type": "yarn", "factor": 2.0, "original_max_positions": 8}},
    "sliding-window": {"position": "rope", "attention": {"name": "sliding_window", "window": 3}},
    "chunked": {"position": "alibi", "attention": {"name": "chunked", "chunk_size": 2}},
    "linear": {"position": "rope", "attention": {"name": "linear", "chunk_size": 4}},
    "performer": {"position": "rope", "attention": {"name": "performer", "feature_dim": 8}},
    **{f"layer-{name}": {"layer": name} for name in LAYERS},
}


def engine_for(tiny_tokenizer, **overrides) -> TorchEngine:
    stack = {"layers": 2, "layer": overrides.pop("layer", "transformer"),
             "attention": overrides.pop("attention", {"name": "full"}), "conv": {"kernel_size": 3, "heads": 2},
             "ssm": {"state_size": 4, "head_dim": 8, "chunk_size": 4}}
    cfg = ModelConfig(arch="decoder_lm", vocab_size=tiny_tokenizer.get_vocab_size(), d_model=16, heads=2, kv_heads=1,
                      ffn_dim=32, dropout=0.0, decoder=stack, **overrides)
    return TorchEngine.load([Checkpoint(build_model(cfg).eval(), cfg, tiny_tokenizer, "tiny")])


@pytest.mark.parametrize("overrides", ARCHITECTURES.values(), ids=ARCHITECTURES.keys())
def test_ragged_prefill_and_steps_equal_each_prompt_alone(tiny_tokenizer, overrides, one_thread):
    engine = engine_for(tiny_tokenizer, **overrides)
    assert engine.scorer.left_padding
    together, state = engine.prefill(PROMPTS)
    alone = [engine.prefill([p]) for p in PROMPTS]
    for step in range(4):
        for row, (log_probs, _) in enumerate(alone):
            torch.testing.assert_close(together[row], log_probs[0], atol=1e-5, rtol=0)
        tokens = together.argmax(-1)
        assert tokens.tolist() == [int(lp.argmax()) for lp, _ in alone], f"step {step}"
        together, state = engine.step(state, tokens)
        alone = [engine.step(s, t[None]) for (_, s), t in zip(alone, tokens, strict=True)]


@pytest.mark.parametrize("overrides", [ARCHITECTURES["rope"], ARCHITECTURES["learned"],
                                       ARCHITECTURES["sliding-window"], ARCHITECTURES["layer-conformer"]])
def test_greedy_decoding_of_a_ragged_batch_equals_each_prompt_alone(tiny_tokenizer, overrides, one_thread):
    engine = engine_for(tiny_tokenizer, **overrides)
    opts = GenerationOptions(beam=1, max_len_a=0.0, max_len_b=6)
    assert engine.ragged(opts, PROMPTS)
    streamed: list[tuple[int, int]] = []
    outputs = engine.decode_batch(PROMPTS, opts)
    assert outputs == [engine.decode_batch([p], opts)[0] for p in PROMPTS]
    assert engine.stream(PROMPTS, opts, emit=lambda row, token, _: streamed.append((row, token))) == outputs
    for row, ids in enumerate(outputs):
        assert [t for r, t in streamed if r == row] == ids


def test_rows_leave_a_running_batch(tiny_tokenizer, one_thread):
    engine = engine_for(tiny_tokenizer, position="rope")
    together, state = engine.prefill(PROMPTS)
    state = engine.keep(state, torch.tensor([2, 0]))  # rows 1 and 3 finished
    together, state = engine.step(state, together[[2, 0]].argmax(-1))
    for row, prompt in zip((0, 1), (PROMPTS[2], PROMPTS[0]), strict=True):
        log_probs, alone = engine.prefill([prompt])
        expected, _ = engine.step(alone, log_probs.argmax(-1))
        torch.testing.assert_close(together[row], expected[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("overrides", [
    {"attention": {"name": "sliding_window", "window": 3, "num_global": 1}},
    {"attention": {"name": "block_sparse", "block_size": 2}},
    {"rope_scaling": {"type": "dynamic", "factor": 2.0, "original_max_positions": 8}}])
def test_column_placed_attention_batches_prompts_of_one_length(tiny_tokenizer, overrides):
    """Sinks and BigBird blocks sit at columns, which left padding would move, and dynamic RoPE scaling follows
    a call's largest position: such models fall back to batches of one prompt length, and refuse a ragged
    batch handed to them directly."""
    engine = engine_for(tiny_tokenizer, position="rope", **overrides)
    opts = GenerationOptions(beam=1, max_len_b=3)
    assert not engine.scorer.left_padding and not engine.ragged(opts, PROMPTS)
    assert engine.stream(PROMPTS, opts) == [engine.decode_batch([p], opts)[0] for p in PROMPTS]
    with pytest.raises(ConfigError, match="one length"):
        engine.prefill(PROMPTS)
