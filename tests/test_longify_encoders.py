"""The encoder case of longify (Longformer's recipe) on tiny BERT and RoBERTa converted from transformers:
learned positions tiled past the trained 40 (RoBERTa's offset rows kept in front), a sliding window whose
first token is global. Oracle: the transformers model itself, given the same tiled table."""

from __future__ import annotations

import pytest
import torch
from interop import test_hf_encoders

from hybridformer.longify import LongifyPlan, longify_checkpoint, parse_attention_spec

transformers = pytest.importorskip("transformers")
pair = test_hf_encoders.pair  # the fixture: tiny BERT and RoBERTa from transformers, converted
LONG = 4 * 40  # the new position limit: 4x the trained one (BERT 512 -> 2048 in miniature)


def longified(ckpt, window: int, global_tokens: int = 1):
    spec = parse_attention_spec(f"sliding_window:window={window},chunk_size=16")
    plan = LongifyPlan(spec, global_tokens=global_tokens,
                       max_positions=ckpt.config.max_positions + LONG - 40)
    model, cfg, _ = longify_checkpoint(ckpt, plan)
    return model, cfg


def tokens_of(length: int, vocab: int, pad: int) -> torch.Tensor:
    tokens = torch.randint(3, vocab, (2, length), generator=torch.Generator().manual_seed(length))
    tokens[1, -7:] = pad  # a padded row
    return tokens


def test_covering_window_equals_the_original_within_the_trained_length(pair):
    _, ckpt = pair
    model, _ = longified(ckpt, window=64)
    tokens = tokens_of(ckpt.config.max_positions, ckpt.config.vocab_size, ckpt.config.pad_id)
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), ckpt.model(tokens), atol=1e-5, rtol=0)


def test_past_the_trained_length_equals_transformers_with_the_tiled_table(pair):
    hf, ckpt = pair
    model, cfg = longified(ckpt, window=LONG)
    offset, trained = cfg.position_offset, ckpt.config.max_positions
    new_table = model.encoder.absolute.table.weight
    old_table = ckpt.model.encoder.absolute.table.weight
    rows = torch.arange(cfg.max_positions)
    torch.testing.assert_close(new_table[offset + rows], old_table[offset + rows % trained])  # LED's tiling
    torch.testing.assert_close(new_table[:offset], old_table[:offset])
    long_config = type(hf.config)(**{**hf.config.to_dict(), "max_position_embeddings": len(new_table)})
    long_hf = type(hf)(long_config, add_pooling_layer=hf.pooler is not None)
    long_hf.load_state_dict({**hf.state_dict(), "embeddings.position_embeddings.weight": new_table}, strict=True)
    tokens = tokens_of(LONG - 10, cfg.vocab_size, cfg.pad_id)
    real = tokens.ne(cfg.pad_id)
    with torch.no_grad():
        expected = long_hf.eval()(input_ids=tokens, attention_mask=real).last_hidden_state
        states, _ = model.encode(tokens)
    assert (states - expected)[real].abs().max().item() < 1e-4


def test_a_short_window_keeps_the_first_token_global(pair):
    _, ckpt = pair
    tokens = tokens_of(LONG - 10, ckpt.config.vocab_size, ckpt.config.pad_id)[:1]
    changed = tokens.clone()
    changed[0, -3] = 3 if int(tokens[0, -3]) != 3 else 4  # a token ~145 positions after the first
    for global_tokens, reaches_first in ((1, True), (0, False)):  # two layers of an 8-token window reach 16
        model, _ = longified(ckpt, window=8, global_tokens=global_tokens)
        with torch.no_grad():
            (before, _), (after, _) = model.encode(tokens), model.encode(changed)
        assert ((after - before)[0, 0].abs().max() > 1e-4) == reaches_first
