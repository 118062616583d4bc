"""Exit statuses of the real console script (issue 17): usage errors are one line with status 2, never a
traceback; a diverged run exits 3; ``--version`` works."""

from __future__ import annotations

import pytest
import yaml

import hybridformer
from tests.conftest import assert_one_line_error, run_entry


@pytest.mark.parametrize("args, words", [
    (["nosuch"], ["No such command"]),
    (["generate", "CKPT", "--input", "x", "--no-such-option"], ["--no-such-option"]),
    (["generate", "CKPT"], ["--input"]),
    (["generate", "CKPT", "--input", "x", "--beam", "0"], ["--beam"]),
    (["generate", "CKPT", "--input", "x", "--top-k", "1.5"], ["--top-k"]),
    (["train", "CONFIG"], ["--out"]),
    (["average", "--last", "abc", "RUN", "--out", "x"], ["--last"]),
])
def test_usage_errors_are_one_line_with_status_2(args, words):
    assert_one_line_error(run_entry(*args), 2, *words, alone=True)


def test_bare_command_prints_help_without_traceback():
    result = run_entry()
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Usage" in result.stdout + result.stderr


def test_version():
    result = run_entry("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"hybridformer {hybridformer.__version__}"


def test_bad_input_from_a_command_body_is_status_2(tmp_path):
    assert_one_line_error(run_entry("quantize", tmp_path / "missing", "--out", tmp_path / "q"), 2, "missing")


def test_diverged_training_exits_3(tmp_path):
    from tests.train.conftest import TINY

    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({}))
    overrides = [*TINY, "train.lr=1e30", "train.warmup_steps=0", "train.max_steps=6", "train.eval_every=100"]
    result = run_entry("train", config, "--out", tmp_path / "run", "--no-progress",
                       *[arg for item in overrides for arg in ("--set", item)])
    assert result.returncode == 3, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "diverged" in result.stdout


def test_a_full_disk_while_writing_a_checkpoint_is_one_line(tmp_path, tiny_checkpoint, monkeypatch, capsys):
    import errno

    from hybridformer import checkpoint
    from tests.conftest import run_cli

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "q"))

    source = tiny_checkpoint()
    monkeypatch.setattr(checkpoint, "_fsync_tree", full)
    status, _, err = run_cli(monkeypatch, capsys, "quantize", source, "--out", tmp_path / "q")
    assert status == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"error: {tmp_path / 'q'}: No space left on device"
    assert not (tmp_path / "q").exists() and not list(tmp_path.glob(".q.tmp-*"))  # no half-written leftovers
