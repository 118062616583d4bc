"""Rows joining a running batch (continuous batching): prompts prefilled apart and appended to a batch that has
been decoding for a while, shorter or longer than its columns, decode exactly as each prompt alone."""

from __future__ import annotations

import pytest
import torch
from engines.test_prefill import ARCHITECTURES, engine_for

from hybridformer.engines import load_engine

RUNNING, ARRIVING = [[5, 6, 7, 8, 9], [10, 11]], [[12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22], [23]]
KINDS = ["rope", "alibi", "learned", "sliding-window", "linear", "layer-shortconv", "layer-mamba2",
         "layer-conformer"]


def alone(engine, prompt: list[int], tokens: list[int]) -> list[torch.Tensor]:
    """The prompt's next-token log-probs after it and after each of ``tokens`` fed one by one."""
    log_probs, state = engine.prefill([prompt])
    seen = [log_probs[0]]
    for token in tokens:
        log_probs, state = engine.step(state, torch.tensor([token]))
        seen.append(log_probs[0])
    return seen


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("steps_before", [1, 9])  # the arriving rows have more columns / fewer columns
def test_rows_joining_mid_flight_decode_as_alone(tiny_tokenizer, kind, steps_before, one_thread):
    engine = engine_for(tiny_tokenizer, **ARCHITECTURES[kind])
    assert engine.joins
    log_probs, state = engine.prefill(RUNNING)
    fed: list[list[int]] = [[] for _ in RUNNING + ARRIVING]
    seen: list[list[torch.Tensor]] = [[row] for row in log_probs]
    for _ in range(steps_before):
        tokens = log_probs.argmax(-1)
        log_probs, state = engine.step(state, tokens)
        for row, token in enumerate(tokens.tolist()):
            fed[row].append(token)
            seen[row].append(log_probs[row])
    arriving, other = engine.prefill(ARRIVING)
    seen += [[row] for row in arriving]
    state, log_probs = engine.join(state, other), torch.cat([log_probs, arriving])
    state = engine.keep(state, torch.tensor([1, 2, 3]))  # the first running row leaves
    log_probs, rows = log_probs[[1, 2, 3]], [1, 2, 3]
    for _ in range(4):
        tokens = log_probs.argmax(-1)
        log_probs, state = engine.step(state, tokens)
        for i, (row, token) in enumerate(zip(rows, tokens.tolist(), strict=True)):
            fed[row].append(token)
            seen[row].append(log_probs[i])
    for row, prompt in enumerate(RUNNING + ARRIVING):
        for got, expected in zip(seen[row], alone(engine, prompt, fed[row]), strict=True):
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_engines_say_whether_rows_join(tiny_checkpoint, tiny_tokenizer):
    assert not load_engine(tiny_checkpoint("encoder_decoder")).joins  # seq2seq: whole searches
    sinks = engine_for(tiny_tokenizer, position="rope",
                       attention={"name": "sliding_window", "window": 3, "num_global": 1})
    assert not sinks.joins  # global keys sit at columns
