"""The one bounded JSON/YAML reader: huge integers, deep nesting, repeated keys, endless files and NaN weights
are each one line (exit 2 from the CLI), on every path that reads JSON or YAML."""

from __future__ import annotations

import json

import pytest

from hybridformer import structured
from hybridformer.errors import ConfigError, DataError
from tests.conftest import assert_one_line_error, run_entry

HUGE = "9" * 5000
DEEP_JSON = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("text, yaml_syntax, words", [
    (f'{{"a": {HUGE}}}', False, "5000 digits"),
    (f"a: {HUGE}\n", True, "5000 digits"),
    (DEEP_JSON, False, "nested too deeply"),
    ("[" * 100_000, True, "nested too deeply"),
    ("[" * 70 + "]" * 70, False, "nested too deeply"),  # within the parser's stack, beyond any real config
    ("a: 1\nb: 2\na: 3\n", True, "duplicate key 'a' (line 3)"),
    ('{"a": 1, "a": 2}', False, "duplicate key 'a'"),
    ("{not json", False, "invalid JSON"),
])
def test_hostile_documents_are_one_line(text, yaml_syntax, words):
    with pytest.raises(ConfigError, match="^where") as info:
        structured.parse(text, where="where", yaml_syntax=yaml_syntax, error=ConfigError)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_ordinary_documents_and_anchors_still_read():
    assert structured.parse("a: &x [1, 2]\nb: *x\n<<: {c: 3}\n", where="w", yaml_syntax=True,
                            error=ConfigError) == {"a": [1, 2], "b": [1, 2], "c": 3}
    assert structured.parse('{"loss": NaN, "n": -12}', where="w", error=ConfigError) == {"loss": pytest.approx(
        float("nan"), nan_ok=True), "n": -12}
    with pytest.raises(ConfigError, match="NaN is not a number here"):
        structured.parse("[NaN]", where="w", finite=True, error=ConfigError)


def test_a_file_is_read_only_up_to_its_limit(tmp_path):
    with pytest.raises(DataError, match="larger than 1,024 bytes"):
        structured.read("/dev/zero", limit=1024, error=DataError)
    (tmp_path / "x.json").write_bytes(b'{"a": "\xff"}')
    with pytest.raises(DataError, match="x.json:1: not UTF-8"):
        structured.read(tmp_path / "x.json", error=DataError)


# ----------------------------------------------------------------------------- every path, through the CLI

def test_config_check_refuses_huge_numbers_deep_nesting_and_repeated_keys(tmp_path):
    (tmp_path / "deep.yaml").write_text("model: " + "[" * 100_000)
    (tmp_path / "huge.json").write_text(f'{{"d_model": {HUGE}}}')
    (tmp_path / "twice.yaml").write_text("d_model: 64\nheads: 2\nd_model: 128\n")
    for name, words in [("deep.yaml", "nested too deeply"), ("huge.json", "5000 digits"),
                        ("twice.yaml", "duplicate key 'd_model'")]:
        assert_one_line_error(run_entry("config", "check", tmp_path / name), 2, name, words, alone=True)
    assert_one_line_error(run_entry("config", "check", "--set", f"d_model={HUGE}"), 2, "--set d_model",
                          "5000 digits", alone=True)


def test_checkpoint_side_files_and_data_are_bounded(tiny_checkpoint, tmp_path):
    ck = tiny_checkpoint("decoder_lm")
    (tmp_path / "in.txt").write_text("the cat\n")
    config = json.loads((ck / "config.json").read_text())
    (ck / "config.json").write_text(json.dumps(config)[:-1] + f', "seed_extra": {HUGE}}}')
    assert_one_line_error(run_entry("generate", ck, "--input", tmp_path / "in.txt"), 2, "config.json", "5000 digits")
    (ck / "config.json").write_text(json.dumps(config))
    (ck / "tokenizer_config.json").write_text('{"chat_template": ' + DEEP_JSON + "}")
    assert_one_line_error(run_entry("generate", ck, "--input", tmp_path / "in.txt", "--chat"), 2,
                          "tokenizer_config.json", "nested too deeply")
    (tmp_path / "train.jsonl").write_text('{"text": "a b"}\n{"text": ' + HUGE + "}\n")
    (tmp_path / "exp.yaml").write_text("model: {arch: decoder_lm, d_model: 16, heads: 2, ffn_dim: 32}\n"
                                       f"data: {{format: jsonl, train_file: {tmp_path / 'train.jsonl'}, "
                                       f"valid_file: {tmp_path / 'train.jsonl'}, tgt_field: text}}\n")
    assert_one_line_error(run_entry("train", tmp_path / "exp.yaml", "--out", tmp_path / "run", "--no-progress"), 2,
                          "train.jsonl:2", "5000 digits")


def test_weights_files_are_bounded_and_finite(tiny_checkpoint, tmp_path):
    ck = tiny_checkpoint("decoder_lm")
    (tmp_path / "in.txt").write_text("the cat\n")
    (tmp_path / "nan.json").write_text('{"weights": [NaN, Infinity]}')
    for source, words in [("/dev/zero", "larger than"), (tmp_path / "nan.json", "NaN is not a number")]:
        assert_one_line_error(run_entry("generate", ck, ck, "--input", tmp_path / "in.txt", "--weights",
                                        f"@{source}", timeout=60), 2, words)


def test_one_spec_syntax_for_attention_with_options():
    want = ("sliding_window", {"window": 64, "num_global": 2})
    assert structured.parse_spec("sliding_window:window=64,num_global=2", where="-m", error=ConfigError) == want
    assert structured.parse_spec("sliding_window:window=64:num_global=2", where="-m", error=ConfigError) == want
    assert structured.parse_spec("full", where="-m", error=ConfigError) == ("full", {})
    with pytest.raises(ConfigError, match="'window' must look like key=value"):
        structured.parse_spec("sliding_window:window", where="-m", error=ConfigError)
    assert structured.parse_assignment("combine=ties", where="--option", error=ConfigError) == ("combine", "ties")
