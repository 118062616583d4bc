"""longify: covering-window parity per position scheme, LED position tiling, per-layer attention, rejections."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hybridformer import ModelConfig, build_model, load_checkpoint
from hybridformer.cache import DecodingCache, RollingKVCache
from hybridformer.checkpoint import Checkpoint
from hybridformer.errors import ConfigError
from hybridformer.longify import (
    LongifyPlan,
    longify,
    longify_checkpoint,
    longify_config,
    parse_attention_spec,
    parse_layers,
    tile_positions,
)

LENGTH = 24  # tokens per test sequence; every "covering" window below sees all of them
COVERING = {  # mechanisms exact when their window / block pattern covers the input
    "sliding_window": {"window": LENGTH, "chunk_size": 8},
    "sliding_window+global": {"window": LENGTH, "num_global": 2},
    "block_sparse": {"block_size": 8, "window_blocks": 3, "num_random_blocks": 0},
    "chunked": {"chunk_size": 8},
}
POSITIONS = ["learned", "sinusoidal", "rope", "alibi", "t5"]


def tiny(arch: str, position: str, **overrides) -> Checkpoint:
    stacks = {"encoder": {"layers": 2}, "decoder": {"layers": 2}}
    cfg = ModelConfig(arch=arch, vocab_size=50, d_model=32, heads=4, ffn_dim=48, dropout=0.0, position=position,
                      max_positions=32, **(stacks | overrides))
    model = build_model(cfg).eval()
    return Checkpoint(model, cfg, None, Path("in-memory"))


def spec(mechanism: str) -> dict:
    return {"name": mechanism.split("+")[0], **COVERING[mechanism]}


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("mechanism", list(COVERING))
@pytest.mark.parametrize("arch", ["decoder_lm", "encoder_classifier"])
def test_covering_window_keeps_the_logits(arch, mechanism, position):
    original = tiny(arch, position)
    plan = LongifyPlan(parse_attention_spec(spec(mechanism)), max_positions=64)
    model, cfg, record = longify_checkpoint(original, plan)
    tokens = torch.randint(3, 50, (2, LENGTH))
    tokens[1, -5:] = 0  # padding in the second row
    with torch.no_grad():
        expected, got = original.model(tokens), model(tokens)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    stack = "decoder" if arch == "decoder_lm" else "encoder"
    assert getattr(cfg, stack).attention.name == spec(mechanism)["name"] and cfg.max_positions == 64
    assert record["stacks"] == {stack: [0, 1]}


def test_seq2seq_encoder_and_both_stacks_keep_the_logits():
    original = tiny("encoder_decoder", "learned")
    src, tgt = torch.randint(3, 50, (2, LENGTH)), torch.randint(3, 50, (2, 10))
    expected = original.model(src, tgt)
    for stack in (None, "both"):
        model, cfg, _ = longify_checkpoint(original, LongifyPlan(parse_attention_spec(spec("sliding_window")),
                                                                 stack=stack, max_positions=96))
        torch.testing.assert_close(model(src, tgt), expected, atol=1e-5, rtol=0)
        assert cfg.encoder.attention.name == "sliding_window"
        assert cfg.decoder.attention.name == ("sliding_window" if stack == "both" else "full")


def test_tiling_puts_trained_rows_where_led_does():
    table = torch.arange(2 + 5, dtype=torch.float32)[:, None].expand(-1, 3)  # 2 offset rows + 5 trained
    grown = tile_positions(table, 2 + 13, offset=2)
    assert grown.shape == (15, 3)
    torch.testing.assert_close(grown[:2], table[:2])  # offset rows stay in front
    for position in range(13):  # position p reads the trained row of p mod 5 (LED copies old[2:] k times)
        torch.testing.assert_close(grown[2 + position], table[2 + position % 5])


def test_longified_learned_table_repeats_the_trained_positions():
    original = tiny("decoder_lm", "learned")
    model, _, _ = longify_checkpoint(original, LongifyPlan(parse_attention_spec("sliding_window:window=8"),
                                                           max_positions=80))
    old, new = original.model.decoder.absolute, model.decoder.absolute
    positions = torch.arange(80)
    torch.testing.assert_close(new(positions), old(positions % 32))


def test_layer_subsets_and_config_overrides():
    original = tiny("decoder_lm", "rope", decoder={"layers": 5})
    _, cfg, _ = longify_checkpoint(original, LongifyPlan(parse_attention_spec("sliding_window:window=4"),
                                                         layers="every:2"))
    assert cfg.decoder.attention.name == "full" and sorted(cfg.decoder.layer_attention) == [0, 2, 4]
    assert parse_layers("1, 3", 5, where="decoder") == [1, 3]
    model = build_model(cfg)
    kernels = [type(layer.sublayers[0].body.kernel).__name__ for layer in model.decoder.layers]
    assert kernels == ["SlidingWindowAttention", "FullAttention"] * 2 + ["SlidingWindowAttention"]
    from hybridformer.config import load_config

    same = load_config(None, ["arch=decoder_lm", "decoder.layers=5", "decoder.layer_attention.1.name=chunked"])
    assert same.decoder.attention_of(1).name == "chunked" and same.decoder.attention_of(0).name == "full"


@pytest.mark.parametrize("position", ["rope", "alibi"])
def test_rolling_cache_decoding_equals_the_full_forward(position):
    original = tiny("decoder_lm", position)
    model, _, _ = longify_checkpoint(original, LongifyPlan(parse_attention_spec("sliding_window:window=5"),
                                                           global_tokens=2, max_positions=64))
    tokens = torch.randint(3, 50, (2, LENGTH))
    with torch.no_grad():
        full = model(tokens)
        cache = DecodingCache()
        steps = [model.decode(tokens[:, i : i + 1], cache=cache, offset=i) for i in range(LENGTH)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=0)
    kept = [state for state in cache.values() if isinstance(state, RollingKVCache)]
    assert kept and all(state.keys.shape[2] == 2 + 5 + 1 for state in kept)  # sinks + window (+ next), not all


@pytest.mark.parametrize("position", ["rope", "alibi", "t5"])
def test_sinks_at_cache_positions_covering_window_and_decoding(position):
    """StreamingLLM positions: with the window covering the input the logits are the original's; with a
    short window, decoding through the ring (token by token and in chunks) equals the full forward."""
    original = tiny("decoder_lm", position)
    tokens = torch.randint(3, 50, (2, LENGTH))
    for window, expected in ((LENGTH, original.model(tokens)), (5, None)):
        plan = LongifyPlan(parse_attention_spec(f"sliding_window:window={window},sink_positions=cache,chunk_size=4"),
                           global_tokens=2, max_positions=64)
        model, cfg, _ = longify_checkpoint(original, plan)
        assert cfg.decoder.attention.options["sink_positions"] == "cache"
        with torch.no_grad():
            full = model(tokens)
            if expected is not None:
                torch.testing.assert_close(full, expected, atol=1e-5, rtol=0)
                continue
            absolute, _, _ = longify_checkpoint(original, LongifyPlan(
                parse_attention_spec("sliding_window:window=5"), global_tokens=2, max_positions=64))
            assert (absolute(tokens) - full).abs()[:, 2 + 5 + 1 :].max() > 1e-4  # the positions did change
            for pieces in ([1] * LENGTH, [9, 6, 1, 8]):
                cache, start, steps = DecodingCache(), 0, []
                for n in pieces:
                    steps.append(model.decode(tokens[:, start : start + n], cache=cache, offset=start))
                    start += n
                torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=0)


def test_checkpoint_round_trip_records_the_change(tmp_path, tiny_checkpoint):
    source = tiny_checkpoint("decoder_lm", position="learned", max_positions=16)
    out = longify(source, tmp_path / "long", attention="sliding_window:window=4,chunk_size=4", global_tokens=1,
                  max_positions=40)
    loaded, before = load_checkpoint(out), load_checkpoint(source)
    tokens = torch.randint(3, 20, (1, 12))
    ref = build_model(loaded.config).eval()
    assert loaded.config.max_positions == 40 and loaded.tokenizer is not None
    (record,) = loaded.meta["longify"]
    assert record["attention"] == {"name": "sliding_window", "window": 4, "chunk_size": 4, "num_global": 1}
    assert record["max_positions"] == [16, 40] and record["source"] == str(source)
    ref.load_state_dict(loaded.model.state_dict())
    torch.testing.assert_close(loaded.model(tokens), ref(tokens))
    torch.testing.assert_close(loaded.model.decoder.absolute.table.weight[16:32],
                               before.model.decoder.absolute.table.weight)
    again = longify(out, tmp_path / "longer", attention="sliding_window:window=8", max_positions=64)
    assert [r["max_positions"] for r in load_checkpoint(again).meta["longify"]] == [[16, 40], [40, 64]]


def test_a_longer_classifier_reads_longer_documents(tmp_path):
    """The truncation length a classifier was trained with (meta.json ``max_len``) grows with the table."""
    from hybridformer.checkpoint import save_checkpoint

    short = tiny("encoder_classifier", "learned", num_classes=2)
    source = save_checkpoint(tmp_path / "short", short.model, short.config, None, meta={"max_len": 32})
    out = longify(source, tmp_path / "long", attention="sliding_window:window=8", global_tokens=1, max_positions=128)
    loaded = load_checkpoint(out)
    assert loaded.meta["max_len"] == 128 and loaded.meta["longify"][0]["max_len"] == [32, 128]
    same = longify(source, tmp_path / "same", attention="sliding_window:window=8")  # no new positions
    assert load_checkpoint(same).meta["max_len"] == 32


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"attention": "linformer"}, "cannot be causal"),
    ({"attention": "sliding_window", "max_positions": 8}, "below the model's current max_positions=16"),
    ({"attention": "sliding_window", "layers": "0,7"}, "layer 7 does not exist in the decoder stack"),
    ({"attention": "sliding_window:window"}, "must look like key=value"),
    ({"attention": "sliding_window:windw=4"}, "option 'windw' is not accepted"),
    ({"attention": "nope"}, "unknown attention 'nope'"),
    ({"attention": "chunked", "global_tokens": 2}, "has no global tokens"),
    ({"attention": "full", "rope_scaling": "linear:2"}, "applies to RoPE models"),
    ({"attention": "full", "rope_scaling": "stretch:2"}, "expected none or TYPE:FACTOR"),
    ({"attention": "full", "stack": "encoder"}, "has no encoder stack"),
    ({"attention": "sliding_window:num_global=1", "global_tokens": 2}, "contradicts num_global=1"),
    ({"attention": "chunked", "layer": "lightconv"}, "has no self-attention"),
    ({"attention": "sliding_window:sink_positions=cache", "global_tokens": 2}, "changes nothing with position"),
    ({"attention": "sliding_window:sink_positions=sideways"}, "sink_positions must be 'absolute' or 'cache'"),
])
def test_impossible_configs_are_refused(tmp_path, tiny_checkpoint, kwargs, message):
    layer = kwargs.pop("layer", "transformer")
    source = tiny_checkpoint("decoder_lm", position="learned", max_positions=16, decoder={"layers": 1, "layer": layer})
    with pytest.raises(ConfigError, match=message):
        longify(source, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_position_offset_rows_stay_in_front():
    original = tiny("decoder_lm", "learned", position_offset=2)
    model, _, _ = longify_checkpoint(original, LongifyPlan(parse_attention_spec("chunked"), max_positions=100))
    old, new = original.model.decoder.absolute.table.weight, model.decoder.absolute.table.weight
    assert new.shape[0] == 102
    torch.testing.assert_close(new[:2], old[:2])
    torch.testing.assert_close(new[2 + 32 * 2 : 2 + 32 * 3], old[2:])
    tokens = torch.randint(3, 50, (1, LENGTH))
    torch.testing.assert_close(model(tokens), original.model(tokens), atol=1e-5, rtol=0)


def test_rope_scaling_stretches_from_the_trained_length():
    original = tiny("decoder_lm", "rope")
    _, cfg, record = longify_checkpoint(original, LongifyPlan(parse_attention_spec("full"), max_positions=128,
                                                             rope_scaling="yarn:4"))
    assert cfg.rope_scaling.type == "yarn" and cfg.rope_scaling.factor == 4.0
    assert cfg.rope_scaling.original_max_positions == 32 and cfg.max_positions == 128
    assert record["rope_scaling"]["type"] == "yarn"
    _, cfg, _ = longify_checkpoint(original, LongifyPlan(parse_attention_spec("full"), rope_scaling="none"))
    assert cfg.rope_scaling is None


def test_sink_positions_cache_is_refused_in_an_encoder():
    with pytest.raises(ConfigError, match="is for causal decoders"):
        longify_checkpoint(tiny("encoder_classifier", "rope"), LongifyPlan(
            parse_attention_spec("sliding_window:window=4,sink_positions=cache"), global_tokens=1))


def test_layers_keep_their_own_rope_base() -> None:
    """Gemma 3's local layers rotate with their own base: a new kernel on every layer keeps each layer's base."""
    cfg = ModelConfig(arch="decoder_lm", vocab_size=40, d_model=16, heads=2, ffn_dim=32, position="rope",
                      rope_base=1e6, decoder={"layers": 3, "layer_attention": {2: {"name": "full"}},
                                              "attention": {"name": "sliding_window", "window": 3, "rope_base": 1e4}})
    new, _ = longify_config(cfg, LongifyPlan(parse_attention_spec("sliding_window:window=8")))
    assert [new.decoder.attention_of(i).rope_base for i in range(3)] == [1e4, 1e4, None]
    assert {new.decoder.attention_of(i).options["window"] for i in range(3)} == {8}
    partial, _ = longify_config(cfg, LongifyPlan(parse_attention_spec("full"), layers="0"))
    assert (partial.decoder.attention_of(0).name, partial.decoder.attention_of(0).rope_base) == ("full", 1e4)


@pytest.mark.parametrize("pattern", ["every:3", "local,local,global", "l,l,g,l,l,g"])
def test_a_layer_pattern_at_a_covering_window_keeps_the_logits(pattern):
    """Windowed layers plus global layers (Gemma 3's local/global): with the window covering the input, and
    with a RoPE scaling on the global layers that only acts past the trained length (dynamic), the model
    computes what the original computed."""
    original = tiny("decoder_lm", "rope", decoder={"layers": 6})
    tokens = torch.randint(3, 50, (2, LENGTH))
    for scaling in (None, "dynamic:4"):
        plan = LongifyPlan(parse_attention_spec(f"sliding_window:window={LENGTH}"), global_tokens=2, max_positions=128,
                           rope_scaling=scaling, pattern=pattern)
        model, cfg, record = longify_checkpoint(original, plan)
        with torch.no_grad():
            torch.testing.assert_close(model(tokens), original.model(tokens), atol=1e-5, rtol=0)
        assert [cfg.decoder.attention_of(i).name for i in range(6)] == ["sliding_window"] * 2 + ["full"] + \
            ["sliding_window"] * 2 + ["full"]
        assert record["global_layers"] == {"decoder": [2, 5]} and record["stacks"] == {"decoder": [0, 1, 3, 4]}
        assert cfg.rope_scaling is None  # the windowed layers keep the trained rotations
        assert sorted(cfg.decoder.layer_rope_scaling) == ([2, 5] if scaling else [])
        assert record["decoding_memory"]["kv_tokens_per_layer"] == [LENGTH + 2] * 2 + [128] + [LENGTH + 2] * 2 + [128]


def test_global_layers_scale_their_rope_and_decode_like_their_full_forward():
    """YaRN on the global layers only: those layers' rotations change, the windowed ones' do not, and
    decoding through both kinds of cache equals the full forward."""
    original = tiny("decoder_lm", "rope", decoder={"layers": 4})
    plan = LongifyPlan(parse_attention_spec("sliding_window:window=5"), global_tokens=1, max_positions=128,
                       rope_scaling="yarn:4", pattern="every:2")
    model, cfg, _ = longify_checkpoint(original, plan)
    assert set(model.decoder.layer_ropes) == {"1", "3"} and model.decoder.layer_ropes["1"].scaling == "yarn"
    assert model.decoder.layer_ropes["1"] is model.decoder.layer_ropes["3"]  # one rotation for equal scalings
    assert model.decoder.rope.scaling is None
    tokens = torch.randint(3, 50, (2, LENGTH))
    with torch.no_grad():
        full = model(tokens)
        plain = LongifyPlan(parse_attention_spec("sliding_window:window=5"), global_tokens=1, max_positions=128,
                            pattern="every:2")
        unscaled, _, _ = longify_checkpoint(original, plain)
        assert (unscaled(tokens) - full).abs().max() > 1e-4  # the scaling does act
        cache = DecodingCache()
        steps = [model.decode(tokens[:, i : i + 1], cache=cache, offset=i) for i in range(LENGTH)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=0)
    loaded = build_model(ModelConfig.model_validate(cfg.model_dump()))  # the config round-trips
    assert set(loaded.decoder.layer_ropes) == {"1", "3"}


def test_decoding_memory_counts_window_caches_and_global_kv():
    original = tiny("decoder_lm", "rope", decoder={"layers": 6}, kv_heads=2)
    _, _, record = longify_checkpoint(original, LongifyPlan(parse_attention_spec("sliding_window:window=1000"),
                                                            global_tokens=4, max_positions=32768, pattern="every:6"))
    per_layer_token = 2 * 2 * 8 * 4  # keys + values, 2 kv heads, head_dim 8, float32
    memory = record["decoding_memory"]
    assert memory["kv_tokens_per_layer"] == [1004] * 5 + [32768]
    assert memory["kv_mib"] == round((5 * 1004 + 32768) * per_layer_token / 2**20, 2)
    assert memory["original_kv_mib"] == round(6 * 32768 * per_layer_token / 2**20, 2)


@pytest.mark.parametrize(("pattern", "layers", "message"), [
    ("every:8", "all", "leaves no global layer"),
    ("local,sideways", "all", "expected a comma-separated pattern"),
    ("l,l,l,l,l,l,l,g", "all", "lists 8 layers but the decoder stack has 6"),
    ("every:2", "0,1", "not both"),
])
def test_impossible_layer_patterns_are_refused(pattern, layers, message):
    original = tiny("decoder_lm", "rope", decoder={"layers": 6})
    with pytest.raises(ConfigError, match=message):
        longify_checkpoint(original, LongifyPlan(parse_attention_spec("sliding_window:window=4"), layers=layers,
                                                 pattern=pattern))


def test_kept_keys_decode_in_bounded_memory_and_are_counted():
    """``keep`` (SnapKV): the prompt's rows before its last ``observe`` are the plain window's, the cache holds the
    sinks, the kept keys and the window, a chunk after it decodes as token by token, and the memory counts it."""
    original = tiny("decoder_lm", "rope", decoder={"layers": 2}, kv_heads=2)
    spec = "sliding_window:window=5,sink_positions=cache,keep=4,observe=3"
    model, cfg, record = longify_checkpoint(original, LongifyPlan(parse_attention_spec(spec), global_tokens=2,
                                                                  max_positions=64))
    assert cfg.decoder.attention.options["keep"] == 4
    assert record["decoding_memory"]["kv_tokens_per_layer"] == [2 + 4 + 5] * 2
    plain, _, _ = longify_checkpoint(original, LongifyPlan(parse_attention_spec(
        "sliding_window:window=5,sink_positions=cache"), global_tokens=2, max_positions=64))
    tokens = torch.randint(3, 50, (2, LENGTH + 4))
    with torch.no_grad():
        outs = []
        for pieces in ([1, 1, 1, 1], [1, 3]):
            cache, start = DecodingCache(), LENGTH
            steps = [model.decode(tokens[:, :LENGTH], cache=cache, offset=0)]
            for n in pieces:
                steps.append(model.decode(tokens[:, start : start + n], cache=cache, offset=start))
                start += n
            outs.append(torch.cat(steps, 1))
        torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=0)
        torch.testing.assert_close(outs[0][:, : LENGTH - 3], plain(tokens[:, :LENGTH])[:, : LENGTH - 3], atol=1e-5,
                                   rtol=0)
    kept = [state for state in cache.values() if isinstance(state, RollingKVCache)]
    assert kept and all(state.keys.shape[2] == 2 + 4 + 5 + 1 and state.pinned == 4 for state in kept)
