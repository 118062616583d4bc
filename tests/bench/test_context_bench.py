"""The context benchmark: prefilled caches hold what the layer types promise (no timing assertions)."""

from __future__ import annotations

import json

import yaml
from conftest import assert_one_line_error, run_entry

from hybridformer import ModelConfig
from hybridformer.bench.context import bench_context

TINY = {"arch": "decoder_lm", "vocab_size": 40, "d_model": 32, "heads": 2, "ffn_dim": 32, "dropout": 0.0,
        "position": "rope"}
SSM = {"head_dim": 16, "state_size": 4}


def test_attention_cache_grows_with_the_context_and_conv_ssm_states_do_not():
    models = {"attention": ModelConfig(**TINY, decoder={"layers": 2}),
              "shortconv": ModelConfig(**TINY, decoder={"layers": 2, "layer": "shortconv"}),
              "mamba2": ModelConfig(**TINY, decoder={"layers": 2, "layer": "mamba2", "ssm": SSM})}
    results = {(r.model, r.context): r for r in bench_context(models, [64, 256], steps=2, repeats=1)}
    for name in models:
        held = [(results[(name, c)].kv_bytes_per_token, results[(name, c)].state_bytes) for c in (64, 256)]
        if name == "attention":  # 2 layers x keys and values x 32 floats for every position, no other state
            assert held == [(2 * 2 * 32 * 4, 0)] * 2
        else:  # no keys or values: a constant state
            assert held[0] == held[1] and held[0][0] == 0 and held[0][1] > 0
        result = results[(name, 64)]
        assert result.ms_per_token > 0 and set(result.ms_by_layer) == {"transformer" if name == "attention" else name}
        assert 0 < result.ms_by_layer[set(result.ms_by_layer).pop()] < 10 * result.ms_per_token


def test_cli_compares_recipes(tmp_path):
    paths = []
    for name, decoder in {"lm": {"layers": 1}, "hybrid": {"layers": 2, "layer": "mamba2", "ssm": SSM,
                                                          "layer_types": {1: "transformer"}}}.items():
        paths.append(tmp_path / f"{name}.yaml")
        paths[-1].write_text(yaml.safe_dump({"model": {**TINY, "decoder": decoder}}))
    result = run_entry("bench", "context", *paths, "--contexts", "16,32", "--steps", "2", "--repeats", "1",
                       "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "| hybrid |" in result.stdout and "32 ÷ 16" in result.stdout
    rows = json.loads((tmp_path / "out" / "context.json").read_text())["results"]
    assert {(r["model"], r["context"]) for r in rows} == {(m, c) for m in ("lm", "hybrid") for c in (16, 32)}
    assert_one_line_error(run_entry("bench", "context", paths[0], "--contexts", "a,b"), 2, "--contexts")
