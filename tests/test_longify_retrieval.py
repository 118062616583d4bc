"""``longify --retrieval-heads``: scored kv heads keep full attention, the others a window; cache, memory, refusals."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_one_line_error, run_entry

from hybridformer import load_checkpoint
from hybridformer.cache import DecodingCache
from hybridformer.checkpoint import load_meta
from hybridformer.errors import ConfigError
from hybridformer.longify import LongifyPlan, longify_checkpoint, parse_attention_spec
from hybridformer.retrieval import retrieval_scores, top_heads

WINDOW = "sliding_window:window=5"


@pytest.fixture
def lm(tiny_checkpoint):
    path = tiny_checkpoint("decoder_lm", position="rope", max_positions=256, heads=4, kv_heads=2,
                           decoder={"layers": 3})
    return load_checkpoint(path)


def test_the_best_scored_heads_stay_full_and_decoding_equals_the_full_forward(lm):
    scores = retrieval_scores(lm)
    assert scores.shape == (3, 2) and torch.equal(scores, retrieval_scores(lm))  # deterministic prompts
    assert ((scores >= 0) & (scores <= 1)).all() and scores.sum() > 0
    plan = LongifyPlan(parse_attention_spec(WINDOW), global_tokens=1, retrieval_heads=2)
    model, cfg, record = longify_checkpoint(lm, plan)
    chosen = top_heads(scores, 2)
    assert record["retrieval_heads"]["full_heads"] == chosen
    for layer in range(3):
        attention = cfg.decoder.attention_of(layer)
        if layer in chosen:
            assert attention.name == "retrieval_heads" and list(attention.options["full_heads"]) == chosen[layer]
            assert attention.options["window"] == 5 and attention.options["num_global"] == 1
        else:
            assert attention.name == "sliding_window"
    tokens = torch.randint(4, cfg.vocab_size, (2, 17))
    with torch.no_grad():
        full = model(tokens)
        cache = DecodingCache()
        steps = [model.decode(tokens[:, :6], cache=cache)]
        steps += [model.decode(tokens[:, i : i + 1], cache=cache, offset=i) for i in range(6, 17)]
        torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=0)
        covering, _, _ = longify_checkpoint(lm, LongifyPlan(parse_attention_spec("sliding_window:window=64"),
                                                            retrieval_heads=3))
        torch.testing.assert_close(covering(tokens), lm.model(tokens), atol=1e-5, rtol=0)  # nothing out of reach


def test_decoding_memory_counts_full_heads_and_windows(lm):
    _, _, record = longify_checkpoint(lm, LongifyPlan(parse_attention_spec("sliding_window:window=100"),
                                                      global_tokens=4, max_positions=4096, retrieval_heads=1))
    tokens = record["decoding_memory"]["kv_tokens_per_layer"]
    # one layer keeps one of its two kv heads whole: (4,096 + 104) / 2 tokens per kv head on average
    assert sorted(tokens) == [104, 104, 2100]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"attention": "chunked"}, "use --attention sliding_window"),
    ({"pattern": "every:2"}, "drop --layers, --global-every"),
    ({"retrieval_heads": 7}, "choose 1 to 6 kv heads"),
])
def test_impossible_plans_are_refused(lm, kwargs, message):
    plan = LongifyPlan(parse_attention_spec(kwargs.pop("attention", WINDOW)), **({"retrieval_heads": 1} | kwargs))
    with pytest.raises(ConfigError, match=message):
        longify_checkpoint(lm, plan)


def test_cli_keeps_retrieval_heads_and_refuses_a_longified_model(tmp_path, tiny_checkpoint):
    source = tiny_checkpoint("decoder_lm", position="rope", max_positions=256, decoder={"layers": 2})
    done = run_entry("longify", source, "--attention", "sliding_window:window=8,sink_positions=cache",
                     "--global-tokens", "2", "--retrieval-heads", "1", "--max-positions", "1024",
                     "--out", tmp_path / "retrieval")
    assert done.returncode == 0, done.stderr
    assert "retrieval heads (layer: kv heads) kept whole:" in done.stdout and "decoding memory" in done.stdout
    record = load_meta(tmp_path / "retrieval")["longify"][-1]
    assert sum(len(heads) for heads in record["retrieval_heads"]["full_heads"].values()) == 1
    generated = run_entry("generate", tmp_path / "retrieval", "--input", "-", "--max-len-b", "4", input="the cat\n")
    assert generated.returncode == 0, generated.stderr
    again = run_entry("longify", tmp_path / "retrieval", "--attention", "sliding_window:window=8",
                      "--retrieval-heads", "1", "--out", tmp_path / "twice")
    assert_one_line_error(again, 2, "scored on full attention")
