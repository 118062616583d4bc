"""Damaged side files through the real entry point: each is one line and exit status 2, never a traceback
(the matching rows of benchmarks/reliability_cases.py)."""

from __future__ import annotations

import json

import pytest
from conftest import assert_one_line_error, run_entry


def test_export_with_a_corrupt_meta_json(tiny_checkpoint, tmp_path):
    ckpt = tiny_checkpoint("decoder_lm")
    (ckpt / "meta.json").write_text('{"step": ')
    assert_one_line_error(run_entry("export", ckpt, "--to", "hf", "--out", tmp_path / "hf"), 2, "meta.json")


def test_a_chat_template_that_loops_is_stopped_in_one_line(tiny_checkpoint, tmp_path):
    ckpt = tiny_checkpoint("decoder_lm")
    (ckpt / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": "{% for i in range(10**12) %}x{% endfor %}"}))
    (tmp_path / "in.txt").write_text("the cat\n")
    assert_one_line_error(run_entry("generate", ckpt, "--input", tmp_path / "in.txt", "--chat", timeout=120), 2)


def test_ct2_on_a_truncated_model_bin(tiny_checkpoint, tmp_path):
    pytest.importorskip("ctranslate2")
    from hybridformer.interop import export

    folder = export(tiny_checkpoint(), tmp_path / "ct2", to="ct2")
    model_bin = folder / "model.bin"
    model_bin.write_bytes(model_bin.read_bytes()[: model_bin.stat().st_size // 2])
    (tmp_path / "in.txt").write_text("the cat\n")
    assert_one_line_error(run_entry("generate", folder, "--engine", "ct2", "--input", tmp_path / "in.txt"), 2)
