"""Checkpoints written before the issue-16 restructure (commit 518bad8) still load bit-exactly.

The fixtures under tests/fixtures/before_518bad8 were written by that commit's code
(tests/fixtures/make_before_checkpoints.py): a head-pruned ALiBi seq2seq model with a Conformer
decoder, an int8-quantized GQA/RoPE/SwiGLU LM and a Branchformer classifier, each with the logits
it computed then. Loading must give back every stored tensor bit for bit and the same logits (to fp32's last
bits, which another CPU's kernels may round differently; the int8 LM's within int8's error: its activation
quantization has since become more accurate).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hybridformer import load_checkpoint

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "before_518bad8"


@pytest.mark.parametrize("name", ["seq2seq_pruned_alibi", "lm_int8", "classifier"])
def test_old_checkpoint_loads_bit_exactly(name: str) -> None:
    ckpt = load_checkpoint(FIXTURES / name)
    stored = load_file(str(FIXTURES / name / "model.safetensors"))
    state = ckpt.model.state_dict()
    for key, tensor in stored.items():
        assert torch.equal(state[key], tensor), key
    expected = load_file(str(FIXTURES / name / "expected.safetensors"))
    tokens = expected["tokens"]
    with torch.no_grad():
        if ckpt.config.arch == "encoder_decoder":
            logits = ckpt.model(tokens, tokens[:, :5])
        else:
            logits = ckpt.model(tokens)
    if name == "lm_int8":  # int8 activations have since got 8 bits (VNNI) and one scale per row: same weights,
        # a more accurate product, so the logits move within int8's error (tests/compress/test_weight_formats.py)
        assert (logits - expected["logits"]).abs().max() <= 0.05 * expected["logits"].abs().max()
    else:  # the same weights and code; fp32 sums may round differently on another CPU's instruction set
        torch.testing.assert_close(logits, expected["logits"], atol=1e-6, rtol=1e-6)  # (AVX2: 6e-8 off)
    assert ckpt.meta.get("made_by") == "518bad8"
