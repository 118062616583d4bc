"""One writer per run, no writes through links, recovery after kills, Ctrl-C saves (issue 17)."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from hybridformer import train
from hybridformer.checkpoint import load_weights
from hybridformer.errors import CheckpointError, DataError
from hybridformer.train import read_metrics, saving, trainer
from hybridformer.train.state import TRAINER_STATE, RunDir
from tests.conftest import assert_one_line_error, entry_env, run_cli, run_entry

from .conftest import tiny


def _yaml(config, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return path


def _events(run: Path) -> list[tuple[str, int]]:
    return [(e["kind"], e["step"]) for e in read_metrics(run / "metrics.jsonl")]


def _losses(run: Path) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in read_metrics(run / "metrics.jsonl") if e["kind"] == "train"}


def _start(config_file: Path, run: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hybridformer.cli", "train", str(config_file), "--out", str(run),
                             "--no-progress"], env=entry_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_for_train_lines(proc: subprocess.Popen, run: Path, lines: int) -> None:
    deadline = time.time() + 120
    while not ((run / "metrics.jsonl").exists() and len(_losses(run)) >= lines):
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline, "training did not log in time"
        time.sleep(0.01)


# ----------------------------------------------------------------------------- one writer

def test_a_second_writer_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "run.lock", "w") as held:
        held.write("4242\n")
        held.flush()
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = run_entry("train", _yaml(tiny(), tmp_path / "exp.yaml"), "--out", run)
    assert_one_line_error(result, 2, "in use by another training process (pid 4242)")
    assert sorted(p.name for p in run.iterdir()) == ["run.lock"]


@pytest.mark.slow
def test_kill_before_the_first_checkpoint_then_resume_restarts_cleanly(tmp_path, capsys):
    config = tiny("train.max_steps=12", "train.eval_every=12")
    run = tmp_path / "run"
    proc = _start(_yaml(config, tmp_path / "exp.yaml"), run)
    _wait_for_train_lines(proc, run, 3)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert RunDir(run).latest() is None, "the run saved a checkpoint before it was killed"
    assert (run / "run.lock").read_text().strip() == str(proc.pid)  # a stale lock: its process is gone
    result = train(config, run, resume=True)
    assert result.step == 12
    assert f"last locked by a process that is gone (pid {proc.pid})" in capsys.readouterr().err
    events = _events(run)
    assert len(events) == len(set(events)), "old log lines were duplicated"
    assert [s for k, s in events if k == "train"] == list(range(1, 13))
    assert (run / "run.lock").read_text() == ""  # released cleanly


# ----------------------------------------------------------------------------- links and leftovers

@pytest.mark.parametrize("name", ["metrics.jsonl", "config.yaml", "tokenizer.json"])
def test_planted_links_are_not_followed(tmp_path, name):
    run, outside = tmp_path / "run", tmp_path / "outside.txt"
    run.mkdir()
    (run / "metrics.jsonl").write_text("")
    outside.write_text("precious")
    (run / name).unlink(missing_ok=True)
    (run / name).symlink_to(outside)
    with pytest.raises(DataError, match="symbolic link"):
        train(tiny("train.max_steps=2"), run)
    assert outside.read_text() == "precious"


def test_start_finishes_or_rolls_back_interrupted_replacements(tmp_path):
    config = tiny("train.max_steps=4", "train.save_every=2", "train.eval_every=2", "train.keep_last=10")
    run = RunDir(tmp_path / "run")
    train(config, run.root)
    ckpts = run.checkpoints
    # a kill between the two renames that replace best/: only the old one, moved aside, is left
    os.replace(ckpts / "best", ckpts / ".best.old-deadbeef")
    (ckpts / ".step-000006.tmp-cafebabe").mkdir()  # a checkpoint write that never finished
    (ckpts / ".step-000001.del-12345678").mkdir()  # keep_last had started deleting it
    (ckpts / "step-000002" / "model.safetensors").unlink()  # half-deleted by older code
    result = train(tiny("train.max_steps=6", "train.save_every=2", "train.eval_every=2", "train.keep_last=10"),
                   run.root, resume=True)
    assert result.step == 6
    assert (ckpts / "best" / "model.safetensors").is_file()
    assert not [p.name for p in ckpts.iterdir() if p.name.startswith(".")]
    assert [p.name for p in run.step_checkpoints()] == ["step-000004", "step-000006"]
    assert not (ckpts / "step-000002").exists()


def test_keep_last_deletes_by_renaming_first(tmp_path, monkeypatch):
    from hybridformer.train import state

    half_deleted, real = [], state.shutil.rmtree

    def killed_midway(path, ignore_errors=False):  # a kill while keep_last deletes: only a part went
        if ".del-" not in Path(path).name and Path(path).name.startswith("."):
            return real(path, ignore_errors=ignore_errors)  # the checkpoint writer's own temp dirs
        (Path(path) / "model.safetensors").unlink()
        half_deleted.append(Path(path).name)

    monkeypatch.setattr(state.shutil, "rmtree", killed_midway)
    config = tiny("train.max_steps=4", "train.save_every=2", "train.keep_last=1")
    train(config, tmp_path / "run")
    assert half_deleted and all(name.startswith(".step-000002.del-") for name in half_deleted)
    run = RunDir(tmp_path / "run")
    assert [p.name for p in run.checkpoints.glob("step-*")] == ["step-000004"]  # no half-deleted step-N
    monkeypatch.undo()
    train(config, run.root, resume=True)
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["best", "step-000004"]


# ----------------------------------------------------------------------------- resume input

def test_a_partial_last_metrics_line_is_dropped_on_resume(tmp_path):
    config = tiny("train.max_steps=4", "train.save_every=2")
    train(config, tmp_path / "run")
    with open(tmp_path / "run" / "metrics.jsonl", "a") as log:
        log.write('{"kind": "train", "st')
    assert train(config, tmp_path / "run", resume=True).step == 4
    assert [s for k, s in _events(tmp_path / "run") if k == "train"] == [1, 2, 3, 4]


@pytest.mark.parametrize("state", [{}, [1, 2], "step-abc", "negative"])
def test_a_malformed_trainer_state_is_a_checkpoint_error(tmp_path, state):
    config = tiny("train.max_steps=2")
    train(config, tmp_path / "run")
    file = RunDir(tmp_path / "run").latest() / TRAINER_STATE
    if state == "step-abc" or state == "negative":
        good = torch.load(file, weights_only=True)
        state = {**good, "step": "abc" if state == "step-abc" else -5}
    torch.save(state, file)
    with pytest.raises(CheckpointError, match="not a trainer state") as info:
        train(config, tmp_path / "run", resume=True)
    assert "\n" not in str(info.value)


def test_a_malformed_trainer_state_through_the_cli(tmp_path):
    config = tiny("train.max_steps=2")
    train(config, tmp_path / "run")
    torch.save({}, RunDir(tmp_path / "run").latest() / TRAINER_STATE)
    result = run_entry("train", _yaml(config, tmp_path / "exp.yaml"), "--out", tmp_path / "run", "--resume")
    assert_one_line_error(result, 2, TRAINER_STATE, "missing step")


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "the disk is full"),
                                         (errno.EROFS, "the file system is read-only")])
def test_a_full_disk_says_what_survived(tmp_path, monkeypatch, capsys, code, words):
    real = saving.save_checkpoint

    def failing(path, *args, **kwargs):
        if Path(path).name == "step-000004":
            raise OSError(code, os.strerror(code), str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(saving, "save_checkpoint", failing)
    config = _yaml(tiny("train.max_steps=6", "train.save_every=2", "train.eval_every=2"), tmp_path / "exp.yaml")
    status, _, err = run_cli(monkeypatch, capsys, "train", config, "--out", tmp_path / "run", "--no-progress")
    assert status == 2
    line = err.strip().splitlines()[-1]
    assert words in line and "intact (newest step-000002)" in line and "--resume" in line
    assert [p.name for p in RunDir(tmp_path / "run").step_checkpoints()] == ["step-000002"]


def test_a_file_size_limit_is_one_line_naming_path_and_errno(tmp_path):
    """``ulimit -f``: torch.save and safetensors hide EFBIG in their own exceptions; the CLI still says it."""
    import resource

    config = _yaml(tiny("train.max_steps=4", "train.save_every=2"), tmp_path / "exp.yaml")
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))  # noqa: E731
    result = run_entry("train", config, "--out", tmp_path / "run", "--no-progress", preexec_fn=limit)
    assert_one_line_error(result, 2, "step-000002", "EFBIG")
    assert not list((tmp_path / "run" / "checkpoints").iterdir())  # no half-written checkpoint left behind


def test_a_full_disk_inside_torch_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch, capsys):
    real = trainer.write_trainer_state

    def failing(directory, state):
        if state["step"] == 4:
            try:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos") from None
        real(directory, state)

    monkeypatch.setattr(trainer, "write_trainer_state", failing)
    config = _yaml(tiny("train.max_steps=6", "train.save_every=2"), tmp_path / "exp.yaml")
    status, _, err = run_cli(monkeypatch, capsys, "train", config, "--out", tmp_path / "run", "--no-progress")
    line = err.strip().splitlines()[-1]
    assert status == 2 and "step-000004" in line and "ENOSPC" in line and "newest step-000002" in line
    assert [p.name for p in RunDir(tmp_path / "run").step_checkpoints()] == ["step-000002"]
    monkeypatch.undo()
    assert train(tiny("train.max_steps=6", "train.save_every=2"), tmp_path / "run", resume=True).step == 6


# ----------------------------------------------------------------------------- signals

@pytest.mark.slow
def test_ctrl_c_saves_at_the_step_boundary_and_resume_is_exact(tmp_path):
    config = tiny("train.max_steps=30", "train.save_every=100", "train.eval_every=10")
    reference = train(config, tmp_path / "reference")
    run = tmp_path / "run"
    proc = _start(_yaml(config, tmp_path / "exp.yaml"), run)
    _wait_for_train_lines(proc, run, 3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "interrupted by SIGINT" in err
    saved = RunDir(run).latest()
    assert saved is not None and int(saved.name.split("-")[1]) == max(_losses(run)) < 30
    resumed = train(config, run, resume=True)
    assert _losses(run) == _losses(tmp_path / "reference")
    a, b = load_weights(reference.checkpoint), load_weights(resumed.checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_sigterm_saves_and_exits_143(tmp_path):
    config = tiny("train.max_steps=200", "train.save_every=1000", "train.eval_every=1000")
    run = tmp_path / "run"
    proc = _start(_yaml(config, tmp_path / "exp.yaml"), run)
    _wait_for_train_lines(proc, run, 2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "Traceback" not in err
    assert int(RunDir(run).latest().name.split("-")[1]) == max(_losses(run))
    assert json.loads((RunDir(run).latest() / "meta.json").read_text())["step"] == max(_losses(run))


def test_resume_refuses_changed_data_or_seed_and_allows_the_cadence(tmp_path):
    train(tiny("train.max_steps=4", "train.save_every=2"), tmp_path / "run")
    changed = _yaml(tiny("train.max_steps=6", "train.seed=5", "data.builtin_train=300"), tmp_path / "exp.yaml")
    result = run_entry("train", changed, "--out", tmp_path / "run", "--resume", "--no-progress")
    assert_one_line_error(result, 2, "--resume", "config.yaml", "train.seed: 1 -> 5", "data.builtin_train")
    done = train(tiny("train.max_steps=6", "train.save_every=3", "train.eval_every=3", "train.keep_last=5",
                      "train.log_every=2"), tmp_path / "run", resume=True)
    assert done.step == 6


def test_a_trainer_state_with_an_impossible_data_position_is_refused(tmp_path):
    config = tiny("train.max_steps=2")
    train(config, tmp_path / "run")
    file = RunDir(tmp_path / "run").latest() / TRAINER_STATE
    state = torch.load(file, weights_only=True)
    torch.save({**state, "data": {"epoch": 0, "batch": 10**9}}, file)
    result = run_entry("train", _yaml(tiny("train.max_steps=4"), tmp_path / "exp.yaml"), "--out", tmp_path / "run",
                       "--resume", "--no-progress")
    assert_one_line_error(result, 2, "batch 1,000,000,000", "does not belong")
