"""Converted SmolLM2-135M (GGUF) longified: the covering-window limit keeps its logits (float64, 30 layers)."""

from __future__ import annotations

import pytest
import torch

from hybridformer import load_checkpoint
from hybridformer.longify import LongifyPlan, longify_checkpoint, parse_attention_spec


@pytest.fixture(scope="module")
def smollm2(smollm2_checkpoint):
    return load_checkpoint(smollm2_checkpoint)


def test_converted_smollm2_covering_window_parity(smollm2):
    """In float32 the 30 layers round differently (max |diff| ~5e-5 on logits up to ~37); float64 shows
    the mechanisms themselves are exact."""
    tokens = torch.tensor([[504, 3458, 282, 4649, 314, 3575, 47] * 6])
    with torch.no_grad():
        expected = smollm2.model.double()(tokens)
    for spec in ("sliding_window:window=48,num_global=4", "sliding_window:window=48,num_global=4,sink_positions=cache",
                 "block_sparse:block_size=16,window_blocks=3,num_random_blocks=0"):
        model, cfg, _ = longify_checkpoint(smollm2, LongifyPlan(parse_attention_spec(spec), max_positions=32768))
        assert cfg.decoder.attention.name == spec.split(":")[0] and cfg.max_positions == 32768
        with torch.no_grad():
            got = model.double()(tokens)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_converted_smollm2_streaming_sinks_decode_like_the_full_forward(smollm2):
    """StreamingLLM positions on the real model: a 16-token window with 4 sinks over 48 tokens (queries past
    position 20 see the sinks from cache position 20); the ring cache, fed in pieces, equals the full forward."""
    from hybridformer.cache import DecodingCache

    tokens = torch.tensor([[504, 3458, 282, 4649, 314, 3575, 47, 1090] * 6])
    spec = "sliding_window:window=16,sink_positions=cache,chunk_size=8"
    model, _, _ = longify_checkpoint(smollm2, LongifyPlan(parse_attention_spec(spec), global_tokens=4))
    model = model.double()
    with torch.no_grad():
        full = model(tokens)
        cache, start, pieces = DecodingCache(), 0, []
        for n in (19, 1, 1, 27):
            pieces.append(model.decode(tokens[:, start : start + n], cache=cache, offset=start))
            start += n
    torch.testing.assert_close(torch.cat(pieces, 1), full, atol=1e-6, rtol=0)
