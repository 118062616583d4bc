"""`bench throughput` runs in its tiny mode and writes its outputs (no timing is asserted)."""

import json

from typer.testing import CliRunner

from hybridformer.bench.throughput import SIZES, run
from hybridformer.cli import app


def test_tiny_throughput_writes_json_and_table(tmp_path):
    result = CliRunner().invoke(app, ["bench", "throughput", "--sizes", "tiny", "--peers", "torch.nn.Transformer",
                                      "--repeats", "1", "--steps", "3", "--beams", "2", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "throughput.json").read_text())
    rows = {r["contender"]: r for r in report["results"]}
    assert set(rows) == {"hybridformer", "torch.nn.Transformer"}
    ours = rows["hybridformer"]
    assert ours["train_tokens_per_s"] > 0 and ours["greedy_tokens_per_s"] > 0 and ours["beam_tokens_per_s"] > 0
    assert rows["torch.nn.Transformer"]["greedy_tokens_per_s"] is None  # no incremental decoding to measure
    assert report["gemm_peak_gflops"] > 0
    assert "| hybridformer |" in (tmp_path / "throughput.md").read_text()


def test_a_config_defines_the_size(tmp_path):
    config = tmp_path / "lm.yaml"
    config.write_text("model: {arch: decoder_lm, vocab_size: 64, d_model: 32, heads: 2, ffn_dim: 64, "
                      "decoder: {layers: 1}, position: rope}\n")
    result = CliRunner().invoke(app, ["bench", "throughput", str(config), "--peers", "", "--repeats", "1",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "out" / "throughput.json").read_text())["results"]
    assert [r["contender"] for r in rows] == ["hybridformer"] and rows[0]["size"] == "config"


def test_unknown_size_or_peer_is_a_clear_error():
    import pytest

    from hybridformer import ConfigError

    with pytest.raises(ConfigError, match="allowed: default"):
        run(["huge"])
    with pytest.raises(ConfigError, match="allowed: torch.nn.Transformer"):
        run(["tiny"], ["fairseq"])
    assert "tiny" in SIZES
