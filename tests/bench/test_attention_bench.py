"""The attention benchmark: spec parsing, one real subprocess point, outputs written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybridformer.bench import markdown_table, parse_mechanism, run_benchmark, write_outputs
from hybridformer.config import ConfigError


def test_parse_mechanism_options_and_unknown_names() -> None:
    parsed = parse_mechanism("sliding_window:window=64:num_global=2")
    assert parsed == ("sliding_window", {"window": 64, "num_global": 2})
    with pytest.raises(ConfigError, match="allowed"):
        parse_mechanism("quadratic")
    with pytest.raises(ConfigError, match="key=value"):
        parse_mechanism("chunked:256")


def test_points_run_in_subprocesses_and_impossible_ones_are_marked(tmp_path: Path) -> None:
    results = run_benchmark(["sliding_window:window=8", "linformer"], [64], causal=True, backward=True,
                            heads=2, head_dim=8, repeats=1, time_cap_s=120)
    ok, impossible = results
    assert ok["status"] == "ok" and ok["time_s"] > 0 and ok["peak_mib"] >= 0
    assert ok["label"] == "sliding_window:window=8"
    assert impossible["status"] == "n/a" and "causal" in impossible["error"]
    paths = write_outputs(results, tmp_path, title="tiny")
    assert json.loads(paths["json"].read_text())[0]["length"] == 64
    assert paths["plot"].stat().st_size > 0
    assert "| sliding_window:window=8 |" in markdown_table(results) and "n/a" in paths["markdown"].read_text()
