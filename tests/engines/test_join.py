"""Rows joining a running batch (continuous batching): prompts prefilled apart and appended to a batch that has
been decoding for a while, shorter or longer than its columns, decode exactly as each prompt alone."""

from __future__ import annotations

import pytest
import torch
from engines.test_prefill import ARCHITECTURES, engine_for

from hybridformer.engines import load_engine
from hybridformer.quantized import quantize_linears

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


class Batch:
    """A running batch driven greedily, remembering per prompt what it was fed and the log-probs it saw."""

    def __init__(self, engine) -> None:
        self.engine, self.state, self.log_probs, self.rows = engine, None, None, []
        self.prompts: list[list[int]] = []
        self.fed: list[list[int]] = []
        self.seen: list[list[torch.Tensor]] = []

    def join(self, prompts: list[list[int]]) -> None:
        log_probs, state = self.engine.prefill(prompts)
        first = len(self.prompts)
        self.prompts += prompts
        self.fed += [[] for _ in prompts]
        self.seen += [[row] for row in log_probs]
        self.rows += range(first, first + len(prompts))
        if self.state is None:
            self.state, self.log_probs = state, log_probs
        else:
            self.state, self.log_probs = self.engine.join(self.state, state), torch.cat([self.log_probs, log_probs])

    def leave(self, prompt: int) -> None:
        index = [i for i, row in enumerate(self.rows) if row != prompt]
        self.state = self.engine.keep(self.state, torch.tensor(index))
        self.log_probs, self.rows = self.log_probs[index], [self.rows[i] for i in index]

    def steps(self, n: int) -> None:
        for _ in range(n):
            tokens = self.log_probs.argmax(-1)
            self.log_probs, self.state = self.engine.step(self.state, tokens)
            for i, (row, token) in enumerate(zip(self.rows, tokens.tolist(), strict=True)):
                self.fed[row].append(token)
                self.seen[row].append(self.log_probs[i])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("steps_before", [1, 9])  # the arriving rows have more columns / fewer columns
def test_rows_joining_mid_flight_decode_as_alone(tiny_tokenizer, kind, steps_before, one_thread):
    engine = engine_for(tiny_tokenizer, **ARCHITECTURES[kind])
    assert engine.joins
    batch = Batch(engine)
    batch.join(RUNNING)
    batch.steps(steps_before)
    batch.join(ARRIVING)
    batch.leave(0)
    batch.steps(3)
    batch.leave(2)  # the longest row leaves: its columns are padding for every row left, dropped at the next join
    batch.join([[24, 25, 26]])
    batch.steps(3)
    for row, prompt in enumerate(batch.prompts):
        for got, expected in zip(batch.seen[row], alone(engine, prompt, batch.fed[row]), strict=True):
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_bf16_rows_decode_to_the_bit_as_alone(tiny_tokenizer, one_thread):
    """bf16 products round every sum to 8 bits, so a last-bit difference turns into another answer: a row of a
    running batch (each prompt prefilled in a pass of its own, as the server does) must get, to the bit, the
    log-probs it gets alone, whichever rows share its steps."""
    engine = engine_for(tiny_tokenizer, position="rope")
    quantize_linears(engine.scorer.model, "bf16")
    batch = Batch(engine)
    for prompt in RUNNING:
        batch.join([prompt])
    batch.steps(2)
    for prompt in ARRIVING:
        batch.join([prompt])
    batch.leave(0)
    batch.steps(3)
    batch.leave(2)
    batch.join([[24, 25, 26]])
    batch.steps(3)
    for row, prompt in enumerate(batch.prompts):
        for got, expected in zip(batch.seen[row], alone(engine, prompt, batch.fed[row]), strict=True):
            assert torch.equal(got, expected), (row, (got - expected).abs().max())

def test_engines_say_whether_rows_join(tiny_checkpoint, tiny_tokenizer):
    assert not load_engine(tiny_checkpoint("encoder_decoder")).joins  # seq2seq: whole searches
    sinks = engine_for(tiny_tokenizer, position="rope",
                       attention={"name": "sliding_window", "window": 3, "num_global": 1})
    assert not sinks.joins  # global keys sit at columns
