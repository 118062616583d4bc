"""The attention benchmark: spec parsing, one real subprocess point, outputs written."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from hybridformer.attention import build_attention
from hybridformer.bench import markdown, parse_mechanism, run_benchmark, write_outputs
from hybridformer.bench.attention import PointSpec, _local_attention
from hybridformer.config import ConfigError


def test_parse_mechanism_options_and_unknown_names() -> None:
    parsed = parse_mechanism("sliding_window:window=64:num_global=2")
    assert parsed == ("sliding_window", {"window": 64, "num_global": 2})
    with pytest.raises(ConfigError, match="allowed"):
        parse_mechanism("quadratic")
    with pytest.raises(ConfigError, match="key=value"):
        parse_mechanism("chunked:256")


def test_points_run_in_subprocesses_and_impossible_ones_are_marked(tmp_path: Path) -> None:
    results = run_benchmark(["sliding_window:window=8", "linformer", "chunked:bias=alibi", "local-attention:window=8"],
                            [64], causal=True, backward=True, heads=2, head_dim=8, repeats=1, time_cap_s=120)
    ok, impossible, biased, peer = results
    assert ok["status"] == "ok" and ok["time_s"] > 0 and ok["peak_mib"] >= 0
    assert ok["label"] == "sliding_window:window=8" and ok["bias"] == "none"
    assert impossible["status"] == "n/a" and "causal" in impossible["error"]
    assert biased["status"] == "ok" and biased["label"] == "chunked+alibi" and biased["options"] == {}
    installed = importlib.util.find_spec("local_attention") is not None
    assert peer["status"] == ("ok" if installed else "skipped"), peer
    paths = write_outputs(results, tmp_path, title="tiny")
    assert json.loads(paths["json"].read_text())[0]["length"] == 64
    assert paths["plot"].stat().st_size > 0
    assert "| sliding_window:window=8 |" in markdown(results) and "n/a" in paths["markdown"].read_text()


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("length", [48, 16])
def test_local_attention_peer_computes_the_sliding_window_pattern(causal: bool, length: int) -> None:
    """The peer is compared on the same function: `sliding_window:window=W` == local-attention's exact window W."""
    pytest.importorskip("local_attention")
    q, k, v = (torch.randn(1, 2, length, 8, dtype=torch.float64) for _ in range(3))
    peer = _local_attention(PointSpec("local-attention", length, {"window": 8}, causal=causal))
    expected = build_attention("sliding_window", window=8)(q, k, v, causal=causal)
    torch.testing.assert_close(peer(q, k, v), expected)
