"""``train.precision: auto``: the choice from the probe's timings, and that a run keeps it on resume."""

from __future__ import annotations

import shutil

import pytest
import torch

from hybridformer import train
from hybridformer.checkpoint import load_weights
from hybridformer.train import precision as P
from hybridformer.train import read_metrics
from hybridformer.train.state import RunDir, read_trainer_state


def test_choice_follows_the_timings():
    assert P.choose_precision({"fp32": 1.0, "bf16": 0.6}) == "bf16"
    assert P.choose_precision({"fp32": 1.0, "bf16": 0.95}) == "fp32"  # within the margin: keep exact fp32
    assert P.choose_precision({"fp32": 1.0, "bf16": 66.0}) == "fp32"
    assert P.choose_precision({"fp32": 1.0}) == "fp32"  # bf16 failed or is impossible here
    assert all(P.choose_precision(s) in P.CANDIDATES for s in ({}, {"bf16": 0.1}, {"fp32": 0.0, "bf16": 0.0}))


def test_measure_times_each_precision_and_skips_failures():
    clock = iter(range(100))
    calls = []

    def step(precision):
        calls.append(precision)
        if precision == "bf16":
            raise RuntimeError("no bf16 kernels")

    seconds = P.measure(step, ("fp32", "bf16"), steps=2, timer=lambda: next(clock))
    assert seconds == {"fp32": 1} and calls == ["fp32", "bf16", "fp32", "fp32"]


def _inject(monkeypatch, seconds):
    monkeypatch.setattr(P, "measure", lambda step, precisions, **_: {k: seconds[k] for k in precisions})


@pytest.mark.parametrize(("seconds", "want"), [({"fp32": 2.0, "bf16": 1.0}, "bf16"),
                                               ({"fp32": 1.0, "bf16": 3.0}, "fp32")])
def test_auto_uses_the_probe_and_resume_keeps_its_choice(tmp_path, tiny_config, monkeypatch, capsys, seconds, want):
    _inject(monkeypatch, seconds)
    config = tiny_config("train.precision=auto", "train.max_steps=4", "train.save_every=2")
    first = train(config, tmp_path / "run")
    assert read_trainer_state(first.checkpoint)["precision"] == want
    [event] = [e for e in read_metrics(tmp_path / "run" / "metrics.jsonl") if e["kind"] == "precision"]
    assert event["choice"] == want and event["fp32_step_s"] == seconds["fp32"]
    assert f"precision: auto chose {want} on cpu (probe, fastest of 3 steps: fp32 " in capsys.readouterr().err

    # Resumed where the probe would now say the opposite: the run keeps the precision it started with.
    _inject(monkeypatch, {"fp32": seconds["bf16"], "bf16": seconds["fp32"]})
    shutil.rmtree(RunDir(tmp_path / "run").step_dir(4))
    resumed = train(tiny_config("train.precision=auto", "train.max_steps=6", "train.save_every=2"),
                    tmp_path / "run", resume=True)
    assert read_trainer_state(resumed.checkpoint)["precision"] == want
    assert "chosen by the start-up probe of this run; kept on resume" in capsys.readouterr().err


def test_auto_matches_an_explicit_run_bit_for_bit(tmp_path, tiny_config, monkeypatch):
    """The probe's forward/backward passes leave weights, optimizer and RNG streams untouched."""
    monkeypatch.setattr(P, "choose_precision", lambda seconds, margin=P.MARGIN: "fp32")  # the real probe runs
    auto = train(tiny_config("train.precision=auto", "train.max_steps=3"), tmp_path / "auto")
    plain = train(tiny_config("train.precision=fp32", "train.max_steps=3"), tmp_path / "plain")

    def losses(run):
        return [e["loss"] for e in read_metrics(run / "metrics.jsonl") if e["kind"] == "train"]

    assert losses(tmp_path / "auto") == losses(tmp_path / "plain")
    a, b = load_weights(auto.checkpoint), load_weights(plain.checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "fp32_step_s" in [e for e in read_metrics(tmp_path / "auto" / "metrics.jsonl")][0]
