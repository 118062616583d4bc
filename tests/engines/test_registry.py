"""Engines are chosen through ``ENGINES`` by name, and nowhere else."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_entry

from hybridformer import ConfigError, evaluate, generate
from hybridformer.engines import ENGINES, load_engine
from hybridformer.engines.torch import TorchEngine

SRC = Path(__file__).resolve().parents[2] / "src" / "hybridformer"
ENGINE_CLASSES = {"TorchEngine", "Ct2Engine", "Engine"}


def test_the_registry_names_torch_and_ct2(tiny_checkpoint):
    assert set(ENGINES) == {"torch", "ct2"}
    with pytest.raises(ConfigError, match="torch, ct2"):
        load_engine("anything", engine="onnx")
    result = run_entry("generate", tiny_checkpoint("decoder_lm"), "--input", "-", "--engine", "onnx", input="a\n")
    assert_one_line_error(result, 2, "--engine", "torch, ct2")


def test_commands_decode_and_score_with_the_engine_the_registry_names(tiny_checkpoint, monkeypatch):
    loaded = []

    class Recording(TorchEngine):
        @classmethod
        def load(cls, checkpoints, device="cpu", **options):
            loaded.append(checkpoints)
            return super().load(checkpoints, device, **options)

    monkeypatch.setitem(ENGINES, "recording", Recording)
    path = tiny_checkpoint("decoder_lm")
    assert list(generate(path, ["the cat"], engine="recording", max_len_b=3)) == list(
        generate(path, ["the cat"], max_len_b=3))
    assert evaluate(path, None, ["the cat sat"], metric="ppl", engine="recording").score == pytest.approx(
        evaluate(path, None, ["the cat sat"], metric="ppl").score)
    assert len(loaded) == 2


def test_no_module_tells_engines_apart_by_type():
    """No ``isinstance(x, TorchEngine | Ct2Engine)`` anywhere, and only ``engines/`` imports an engine's module
    (training builds its validation decoder from the in-memory model: the one direct ``TorchEngine``)."""
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
                names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
                assert not names & ENGINE_CLASSES, f"{path}: engine chosen by isinstance"
            if isinstance(node, ast.ImportFrom) and node.module and "engines." in f"{node.module}.":
                inside = path.parent.name == "engines"
                allowed = inside or node.module.endswith("engines") or path.name == "trainer.py" or (
                    node.module.endswith(("options", "rows")))
                assert allowed, f"{path}: imports {node.module} directly; take engines from ENGINES"
