"""``hybridformer bench serve`` end to end on a tiny model: every cell reports, nothing is lost or wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_TEXT

pytest.importorskip("fastapi", reason="the serve extra is not installed")
pytest.importorskip("uvicorn", reason="the serve extra is not installed")

SRC = Path(__file__).resolve().parents[2] / "src"


def test_bench_serve_reports_every_cell(tmp_path, tiny_checkpoint):
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("\n".join(TINY_TEXT) + "\n")
    env = os.environ | {"PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-m", "hybridformer", "bench", "serve", str(tiny_checkpoint()),
                           "--clients", "1,3", "--requests", "6", "--engines", "torch", "--batching", "on",
                           "--sentences", str(sentences), "--max-wait-ms", "20", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["rows"]
    assert [(r["engine"], r["batching"], r["clients"]) for r in rows] == [("torch", True, 1), ("torch", True, 3)]
    for row in rows:
        assert row["requests"] == 6 and row["errors"] == 0 and row["wrong"] == 0
        assert row["throughput_rps"] > 0 and row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
        assert row["peak_rss_mib"] > 0
    assert "| torch | on | 3 | 6 |" in (tmp_path / "out" / "results.md").read_text()


def test_the_default_sentences_do_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    from conftest import require_data

    from hybridformer.bench.serve import read_sentences
    from hybridformer.cli.bench_serve import DEFAULT_SENTENCES

    assert DEFAULT_SENTENCES.is_absolute()
    require_data("multi30k", "test_2016_flickr.en.gz")
    monkeypatch.chdir(tmp_path)
    assert len(read_sentences(DEFAULT_SENTENCES, 3)) == 3


def test_bench_serve_streams_varied_chat_and_reports_time_to_first_token(tmp_path, tiny_checkpoint):
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("\n".join(TINY_TEXT) + "\n")
    env = os.environ | {"PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-m", "hybridformer", "bench", "serve", str(tiny_checkpoint("decoder_lm")),
                           "--clients", "1,3", "--requests", "6", "--engines", "torch", "--batching", "on",
                           "--sentences", str(sentences), "--prompt-words", "3-40", "--max-tokens", "2-12",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["rows"]
    for row in rows:
        assert row["requests"] == 6 and row["errors"] == 0 and row["wrong"] == 0
        assert 0 < row["ttft_p50_ms"] <= row["ttft_p95_ms"] and row["cpu_s"] > 0


def test_chat_workload_is_varied_and_repeatable():
    from hybridformer.bench.serve import chat_workload

    workload = chat_workload(["one two three", "four five"], 20, (2, 9), (16, 128))
    assert workload == chat_workload(["one two three", "four five"], 20, (2, 9), (16, 128))
    words = [len(text.split("\n")[1].split()) for text, _ in workload]
    assert min(words) >= 2 and max(words) <= 9 and len(set(words)) > 3
    assert all(16 <= budget <= 128 for _, budget in workload) and len({b for _, b in workload}) > 3
