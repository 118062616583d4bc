"""Merge methods own their options: the API and the CLI read the declarations, so a new method is one
class (here defined in the test) plus one ``METHODS`` entry, and its options reach it by name."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from hybridformer import ConfigError, merge_checkpoints
from hybridformer.checkpoint import load_weights
from hybridformer.fusion.merge import METHODS, MergeOptions, method_options, resolve_options

SRC = Path(__file__).resolve().parents[2] / "src"


@dataclass(frozen=True)
class ScaleOptions(MergeOptions):
    factor: float = field(default=1.0, metadata={"help": "multiply the mean by this"})


class Scale:
    needs_base = False
    takes_weights = False
    options = ScaleOptions

    def check(self, num_models: int, options: ScaleOptions) -> None:
        if options.factor == 0:
            raise ConfigError("scale: factor must not be 0")

    def merge(self, name, models, base, options: ScaleOptions):
        return torch.stack(models).mean(0) * options.factor


def test_a_new_method_is_one_class_and_one_registry_line(ckpt, tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, "scale", Scale())
    a, b = ckpt("a", seed=1), ckpt("b", seed=2)
    assert list(method_options("scale")) == ["factor"]
    out = merge_checkpoints([a, b], "scale", tmp_path / "s", factor=2)
    wa, wb, merged = load_weights(a), load_weights(b), load_weights(out)
    name = next(n for n in wa if wa[n].is_floating_point())
    assert torch.allclose(merged[name], wa[name] + wb[name], atol=1e-6)
    with pytest.raises(ConfigError, match="scale does not use density; its options: factor"):
        resolve_options("scale", 2, density=0.5)
    with pytest.raises(ConfigError, match="scale: option factor must be float, got 'big'"):
        resolve_options("scale", 2, factor="big")
    with pytest.raises(ConfigError, match="factor must not be 0"):
        resolve_options("scale", 2, factor=0)


def test_declared_defaults_fill_in_and_none_means_default():
    ties = resolve_options("ties", 2, base="b", density=None)
    assert ties.density == 0.2 and ties.weights == (1.0, 1.0)
    dare = resolve_options("dare", 1, base="b", combine="ties", seed=3)
    assert (dare.density, dare.combine, dare.seed) == (0.1, "ties", 3)
    with pytest.raises(ConfigError, match="slerp does not use seed; its options: t"):
        resolve_options("slerp", 2, seed=1)


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, "-m", "hybridformer.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_cli_passes_any_declared_option_and_lists_them(ckpt, tmp_path):
    base, m1 = ckpt("base", seed=0), ckpt("m1", seed=1)
    done = run("merge", "--method", "dare", "-o", "combine=ties", "-o", "density=1", "--base", str(base),
               str(m1), "--out", str(tmp_path / "dare"))
    assert done.returncode == 0, done.stderr
    w1, merged = load_weights(m1), load_weights(tmp_path / "dare")
    assert all(torch.allclose(merged[n], w1[n], atol=1e-6) for n in w1)  # one model, nothing dropped
    bad = run("merge", "--method", "linear", "-o", "density=0.5", str(m1), str(m1), "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "linear does not use density" in bad.stderr
    assert "Traceback" not in bad.stderr
    helped = run("merge", "--help")
    assert "dare: --base; --weights; density (default 0.1" in " ".join(helped.stdout.split())
