"""The CLI's one list parser: commas, spaces and repeated flags alike; bad items are one-line errors."""

from __future__ import annotations

import pytest

from hybridformer.cli.options import parse_list, parse_weights, split_list, split_specs
from hybridformer.errors import ConfigError, DataError


def test_commas_spaces_and_repeats_are_the_same_list() -> None:
    assert parse_weights("0.7,0.3") == parse_weights("0.7, 0.3") == parse_weights("0.7 0.3") == [0.7, 0.3]
    assert parse_weights(None) is None
    assert split_list(["full,chunked", "linear"]) == ["full", "chunked", "linear"]
    assert parse_list("8, 16,,32", int, option="--lengths", example="8,16") == [8, 16, 32]


def test_a_bad_item_names_the_option() -> None:
    with pytest.raises(ConfigError, match="--weights '1,x': expected comma-separated numbers"):
        parse_weights("1,x")
    with pytest.raises(ConfigError, match="--lengths '8,big'"):
        parse_list("8,big", int, option="--lengths", example="8,16")


def test_weights_from_a_tune_weights_file(tmp_path) -> None:
    (tmp_path / "w.json").write_text('{"weights": [0.8, 0.2], "metric": "bleu"}')
    assert parse_weights(f"@{tmp_path / 'w.json'}") == [0.8, 0.2]
    with pytest.raises(DataError, match="no such file"):
        parse_weights(f"@{tmp_path / 'missing.json'}")


def test_a_comma_before_key_value_continues_the_spec() -> None:
    assert split_specs(["full,sliding_window:window=64,num_global=2", "chunked"]) == [
        "full", "sliding_window:window=64,num_global=2", "chunked"]
