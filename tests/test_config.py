"""Configs load from YAML with overrides; every bad key or value is one ConfigError naming the path."""

import pytest

from hybridformer import ConfigError, ModelConfig, load_config, names
from hybridformer.config import apply_overrides


def test_yaml_with_overrides(tmp_path):
    path = tmp_path / "model.yaml"
    path.write_text("d_model: 64\nheads: 4\ndecoder:\n  layers: 2\n  attention: {name: reference}\n")
    cfg = load_config(path, ["decoder.layers=5", "position=rope", "kv_heads=2", "dropout=0.2"])
    assert (cfg.d_model, cfg.decoder.layers, cfg.position, cfg.num_kv_heads, cfg.dropout) == (64, 5, "rope", 2, 0.2)
    assert cfg.decoder.attention.name == "reference"


@pytest.mark.parametrize(
    "overrides, fragments",
    [
        (["position=rop"], ["position", "'rope'", "'rop'"]),
        (["activation=tanh"], ["activation", "'swiglu'", "'tanh'"]),
        (["decoder.bogus=1"], ["decoder.bogus", "unknown key", "layers"]),
        (["encoder.layer=nope"], ["encoder", "'nope'", "transformer"]),
        (["decoder.attention.name=magic"], ["decoder.attention", "'magic'", "full"]),
        (["decoder.attention.window=4"], ["decoder.attention", "'window'", "'full'", "chunk_size"]),
        (["kv_heads=3"], ["heads=4", "kv_heads=3"]),
        (["d_model=30"], ["d_model=30", "heads=4"]),
        (["residual=deepnet"], ["deepnet", "norm_placement"]),
        (["dropout=1.5"], ["dropout"]),
        (["d_model=abc"], ["d_model", "'abc'"]),
    ],
)
def test_bad_values_name_key_value_and_allowed(overrides, fragments):
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert "pydantic" not in message and "Traceback" not in message


def test_bad_override_syntax_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_overrides({}, ["no_equals_sign"])
    with pytest.raises(ConfigError, match="is a value"):
        apply_overrides({"d_model": 3}, ["d_model.x=1"])
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("d_model: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listy)


def test_defaults_round_trip_through_dump():
    cfg = ModelConfig(position="t5", kv_heads=1)
    assert ModelConfig.model_validate(cfg.model_dump()) == cfg


def test_causal_incompatible_mechanism_is_rejected_at_build(monkeypatch):
    """Kernels veto impossible requests through `check`, which build_stack calls with the key path."""
    from hybridformer import build_model
    from hybridformer.attention import ATTENTION, FullAttention

    class NonCausal(FullAttention):
        @classmethod
        def check(cls, *, causal, position, where):
            if causal:
                raise ConfigError(f"{where}.name='noncausal' cannot be causal")

    monkeypatch.setitem(ATTENTION, "noncausal", NonCausal)
    monkeypatch.setattr(names, "ATTENTION_NAMES", (*names.ATTENTION_NAMES, "noncausal"))
    with pytest.raises(ConfigError, match="model.decoder.attention.name='noncausal' cannot be causal"):
        build_model(ModelConfig(decoder={"attention": {"name": "noncausal"}}))
    build_model(ModelConfig(arch="encoder_classifier", encoder={"attention": {"name": "noncausal"}}))


def test_derived_facts_pad_positions_and_output_cap():
    """One home for the pad rule, the position capacity and the output cap (engines, data, exporters read them)."""
    from hybridformer.config import INPUT_LIMIT
    from hybridformer.errors import DataError

    assert ModelConfig(vocab_size=50, pad_id=0).pad_in_vocab and not ModelConfig(vocab_size=50, pad_id=50).pad_in_vocab
    learned = ModelConfig(position="learned", max_positions=64)
    assert learned.position_capacity() == 64
    assert ModelConfig(position="rope", max_positions=64).position_capacity() == INPUT_LIMIT
    assert ModelConfig(position="rope", max_positions=10**5).position_capacity() == 10**5
    assert learned.output_cap(prefix_len=10, src_len=10) == 54  # what the table has left
    assert ModelConfig(position="rope", max_positions=64).output_cap(prefix_len=10, src_len=500) == 64
    sinusoid = ModelConfig(position="sinusoidal", max_positions=64)
    assert sinusoid.output_cap(prefix_len=1, src_len=500) == 64  # no table: max_positions
    assert sinusoid.output_cap(prefix_len=60, src_len=60, table=100) == 40  # an export's table of 100 rows
    for cfg, table in ((learned, None), (sinusoid, 100)):
        with pytest.raises(DataError, match="does not fit"):
            cfg.output_cap(prefix_len=1, src_len=(table or 64) + 1, table=table)
