"""Real processes: SIGKILL mid-run then --resume, and a 2-process torchrun (gloo) run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import hybridformer
from hybridformer import train
from hybridformer.checkpoint import load_weights
from hybridformer.train import read_metrics
from hybridformer.train.state import RunDir

from .conftest import tiny


def _write(config, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return path


def _env() -> dict[str, str]:
    src = str(Path(hybridformer.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}


def _losses(run_dir: Path) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in read_metrics(run_dir / "metrics.jsonl") if e["kind"] == "train"}


@pytest.mark.slow
def test_sigkill_then_resume_is_exact(tmp_path):
    config = tiny("train.max_steps=30", "train.save_every=2", "train.eval_every=10")
    reference = train(config, tmp_path / "reference")
    run = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hybridformer.cli", "train", str(_write(config, tmp_path / "exp.yaml")),
         "--out", str(run), "--no-progress"], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not RunDir(run).step_dir(6).exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline, "no checkpoint appeared within 120 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stopped_at = int(RunDir(run).latest().name.split("-")[1])
    assert stopped_at < 30, "the run finished before it could be killed"
    resumed = train(config, run, resume=True)
    assert resumed.step == 30
    assert _losses(run) == _losses(tmp_path / "reference")
    a, b = load_weights(reference.checkpoint), load_weights(resumed.checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_torchrun_two_processes_match_one_with_accumulation(tmp_path, strategy):
    common = ("model.dropout=0.0", "train.max_steps=6", "train.eval_every=3", "train.device=cpu")
    single = train(tiny(*common, "train.accumulate=2"), tmp_path / "single")
    config = _write(tiny(*common, f"train.strategy={strategy}", "train.ema_decay=0.9"), tmp_path / "exp.yaml")
    run = tmp_path / "ddp"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "hybridformer.cli", "train", str(config), "--out", str(run), "--no-progress"],
        env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ddp, one = _losses(run), _losses(tmp_path / "single")
    assert list(ddp) == list(range(1, 7))  # one row per step: only rank 0 writes
    assert ddp == pytest.approx(one, rel=1e-4)
    valid = [e["loss"] for e in read_metrics(run / "metrics.jsonl") if e["kind"] == "valid"]
    assert valid == pytest.approx([e["loss"] for e in read_metrics(tmp_path / "single" / "metrics.jsonl")
                                   if e["kind"] == "valid"], rel=1e-4)
    assert len(list((run / "tb").iterdir())) == 1
    assert [p.name for p in RunDir(run).step_checkpoints()] == ["step-000003", "step-000006"]
    del single
