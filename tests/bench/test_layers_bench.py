"""The layer benchmark measures what it claims (tiny shapes; no timing assertions)."""

from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from hybridformer.bench.layers import _peak_bytes, bench_layer, layer_config, markdown
from hybridformer.blocks import LAYERS
from hybridformer.cli import app
from hybridformer.models import build_stack


def test_cpu_peak_memory_sees_a_transient_allocation():
    def step():
        big = torch.ones(1024, 1024)  # 4 MiB, freed before the step returns
        del big

    peak = _peak_bytes(step, "cpu")
    if peak is not None:  # None only where the profiler's private API is missing
        assert 4 * 2**20 <= peak < 8 * 2**20


def test_bench_layer_counts_the_layer_parameters():
    result = bench_layer("lsra", 64, 16, repeats=1)
    cfg = layer_config("lsra", 64)
    stack = build_stack(cfg, cfg.encoder, causal=False, cross=False)
    assert result.params == sum(p.numel() for p in stack.layers.parameters())
    assert result.us_per_token > 0
    assert "| 64 | 16 | lsra |" in markdown([result])


def test_cli_writes_json_and_markdown(tmp_path):
    out = tmp_path / "bench"
    run = CliRunner().invoke(app, ["bench", "layers", "--layers", "conformer,lightconv", "--d-models", "64",
                                   "--lengths", "8", "--repeats", "1", "--causal", "--out", str(out)])
    assert run.exit_code == 0, run.output
    rows = json.loads((out / "layers.json").read_text())["results"]
    assert [r["layer"] for r in rows] == ["conformer", "lightconv"] and all(r["causal"] for r in rows)
    assert (out / "layers.md").read_text().count("\n") == 4
    assert set(LAYERS) >= {r["layer"] for r in rows}


def test_cli_names_an_unknown_layer_type():
    run = CliRunner().invoke(app, ["bench", "layers", "--layers", "conformer,convformer"])
    assert "convformer" in str(run.exception) and "allowed" in str(run.exception)


def test_one_markdown_table_writer() -> None:
    from hybridformer.bench.table import markdown_table

    assert markdown_table(["name", "tok/s"], [["a", 1.5]], align="lr") == "| name | tok/s |\n|---|---:|\n| a | 1.5 |"
