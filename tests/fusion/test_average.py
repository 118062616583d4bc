"""Checkpoint averaging: identity, the hand-computed mean, and fairseq-style --last N selection."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from hybridformer import CheckpointError, average_checkpoints
from hybridformer.checkpoint import load_weights
from hybridformer.cli import app
from hybridformer.fusion import last_checkpoints


def test_averaging_identical_checkpoints_returns_them(ckpt, tmp_path):
    a = ckpt("a", seed=3)
    b = ckpt("b", seed=3)
    out = average_checkpoints([a, b, a], tmp_path / "avg")
    wa, avg = load_weights(a), load_weights(out)
    assert all(torch.equal(avg[n], wa[n]) for n in wa)


def test_average_matches_the_hand_computed_mean(ckpt, tmp_path):
    paths = [ckpt(f"c{i}", seed=i) for i in range(3)]
    weights = [load_weights(p) for p in paths]
    avg = load_weights(average_checkpoints(paths, tmp_path / "avg"))
    for name in weights[0]:
        expected = (weights[0][name].double() + weights[1][name].double() + weights[2][name].double()) / 3
        assert torch.equal(avg[name], expected.float()), name  # accumulated in float64, rounded once


def make_run(tmp_path, ckpt):
    """A trainer run directory: checkpoints/step-NNNNNN (complete ones hold trainer_state.pt), best, ema."""
    run = tmp_path / "run"
    for step in (100, 200, 50, 1000):
        path = ckpt(f"run/checkpoints/step-{step:06d}", seed=step % 7)
        (path / "trainer_state.pt").write_bytes(b"")
    ckpt("run/checkpoints/step-002000")  # no trainer_state.pt: an interrupted write, never picked
    for other in ("best", "ema"):
        ckpt(f"run/checkpoints/{other}")
    return run


def test_last_n_picks_the_highest_step_numbers(tmp_path, ckpt):
    run = make_run(tmp_path, ckpt)
    assert [p.name for p in last_checkpoints(run, 2)] == ["step-000200", "step-001000"]
    assert [p.name for p in last_checkpoints(run, 4)] == ["step-000050", "step-000100", "step-000200", "step-001000"]
    with pytest.raises(CheckpointError, match="last 5 checkpoints but found 4"):
        last_checkpoints(run, 5)


def test_cli_average_last_n(tmp_path, ckpt):
    run = make_run(tmp_path, ckpt)
    result = CliRunner().invoke(app, ["average", "--last", "2", str(run), "--out", str(tmp_path / "avg")])
    assert result.exit_code == 0, result.output
    assert "step-000200, step-001000" in result.output
    w1, w2 = load_weights(run / "checkpoints/step-000200"), load_weights(run / "checkpoints/step-001000")
    avg = load_weights(tmp_path / "avg")
    assert all(torch.allclose(avg[n], (w1[n] + w2[n]) / 2) for n in w1)


def test_cli_average_and_merge_explicit_lists(tmp_path, ckpt):
    a, b = ckpt("a", seed=1), ckpt("b", seed=2)
    runner = CliRunner()
    result = runner.invoke(app, ["average", str(a), str(b), "--out", str(tmp_path / "avg")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["merge", "--method", "linear", "--weights", "1,0", str(a), str(b),
                                 "--out", str(tmp_path / "lin")])
    assert result.exit_code == 0, result.output
    wa, lin = load_weights(a), load_weights(tmp_path / "lin")
    assert all(torch.equal(lin[n], wa[n]) for n in wa)
    result = runner.invoke(app, ["merge", "--method", "linear", "--weights", "1,x", str(a), str(b),
                                 "--out", str(tmp_path / "bad")])
    assert result.exit_code != 0 and "expected comma-separated numbers" in str(result.exception)


def test_missing_or_corrupt_weights_are_checkpoint_errors(ckpt, tmp_path):
    a, b = ckpt("a", seed=1), ckpt("b", seed=2)
    (b / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        average_checkpoints([a, b], tmp_path / "avg")
    (b / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=f"{b}: missing model.safetensors"):
        average_checkpoints([a, b], tmp_path / "avg")
    assert not (tmp_path / "avg").exists()


def test_output_may_replace_an_input(ckpt):
    a, b = ckpt("a", seed=1), ckpt("b", seed=2)
    wa, wb = load_weights(a), load_weights(b)
    average_checkpoints([a, b], a)
    avg = load_weights(a)
    assert all(torch.allclose(avg[n], (wa[n] + wb[n]) / 2) for n in wa)

