"""Converted SmolLM2-135M (GGUF) longified: the covering-window limit keeps its logits (float64, 30 layers)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hybridformer import load_checkpoint
from hybridformer.longify import LongifyPlan, longify_checkpoint, parse_attention_spec

GGUF = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "smollm2-135m-instruct" / \
    "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    if not GGUF.is_file():
        pytest.skip(f"SmolLM2 GGUF not found at {GGUF} (needs ../shared/models beside the checkout)")
    interop = pytest.importorskip("hybridformer.interop")
    if not hasattr(interop, "convert"):
        pytest.skip("the GGUF converter (hybridformer.interop.convert) is not in this checkout")
    pytest.importorskip("gguf")
    return load_checkpoint(interop.convert(GGUF, tmp_path_factory.mktemp("smollm2") / "ckpt"))


def test_converted_smollm2_covering_window_parity(smollm2):
    """In float32 the 30 layers round differently (max |diff| ~5e-5 on logits up to ~37); float64 shows
    the mechanisms themselves are exact."""
    tokens = torch.tensor([[504, 3458, 282, 4649, 314, 3575, 47] * 6])
    with torch.no_grad():
        expected = smollm2.model.double()(tokens)
    for spec in ("sliding_window:window=48,num_global=4",
                 "block_sparse:block_size=16,window_blocks=3,num_random_blocks=0"):
        model, cfg, _ = longify_checkpoint(smollm2, LongifyPlan(parse_attention_spec(spec), max_positions=32768))
        assert cfg.decoder.attention.name == spec.split(":")[0] and cfg.max_positions == 32768
        with torch.no_grad():
            got = model.double()(tokens)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
