"""``hybridformer average --ema RUN_DIR`` and ``--last N RUN_DIR`` on a trainer run directory."""

from __future__ import annotations

import torch
from train.conftest import tiny
from typer.testing import CliRunner

from hybridformer import load_checkpoint, train
from hybridformer.checkpoint import load_weights
from hybridformer.cli import app
from hybridformer.fusion import last_checkpoints
from hybridformer.train.state import RunDir, read_trainer_state


def test_cli_exports_the_trainers_ema_weights_and_averages_the_last_steps(tmp_path):
    run = tmp_path / "run"
    train(tiny("train.max_steps=4", "train.save_every=1", "train.keep_last=3", "train.ema_decay=0.9"), run)
    result = CliRunner().invoke(app, ["average", "--ema", str(run), "--out", str(tmp_path / "ema")])
    assert result.exit_code == 0, result.output
    shadow = read_trainer_state(RunDir(run).latest())["ema"]
    exported = load_checkpoint(tmp_path / "ema")  # loadable, with config and tokenizer
    assert exported.tokenizer is not None and exported.meta["step"] == 4
    for name, param in exported.model.named_parameters():
        assert torch.equal(param.detach(), shadow[f"shadow.{name}"]), name
    live = load_weights(RunDir(run).latest())
    assert any(not torch.equal(live[k], v) for k, v in load_weights(tmp_path / "ema").items())

    assert [p.name for p in last_checkpoints(run, 2)] == ["step-000003", "step-000004"]
    result = CliRunner().invoke(app, ["average", "--last", "3", str(run), "--out", str(tmp_path / "avg")])
    assert result.exit_code == 0 and "step-000002, step-000003, step-000004" in result.output


def test_cli_ema_errors(tmp_path):
    run = tmp_path / "run"
    train(tiny("train.max_steps=1"), run)
    result = CliRunner().invoke(app, ["average", "--ema", str(run), "--out", str(tmp_path / "ema")])
    assert result.exit_code != 0 and "no EMA weights" in str(result.exception)
    result = CliRunner().invoke(app, ["average", "--ema", "--last", "2", str(run), "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "--ema takes exactly one RUN_DIR" in str(result.exception)
