"""``generate`` under abuse (issue 17): huge lines and budgets are bounded, a bad device is named, an
interrupted run says how much it wrote, and a long file shows progress on a terminal."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import threading

import pytest
import torch

from tests.conftest import TINY_TEXT, assert_one_line_error, entry_command, entry_env, run_entry


def test_a_10_mb_line_is_refused_quickly(tmp_path, tiny_checkpoint):
    big = tmp_path / "big.txt"
    big.write_text(("the cat sat on the mat " * 450_000)[:10_000_000] + "\n")
    result = run_entry("generate", tiny_checkpoint(), "--input", big, "--beam", "1", timeout=60)
    assert_one_line_error(result, 2, "input line 1", "16,384 tokens")


def test_a_huge_output_budget_is_capped_at_the_models_positions(tmp_path, tiny_checkpoint):
    ckpt = tiny_checkpoint("decoder_lm", max_positions=24)
    (tmp_path / "in.txt").write_text("the cat\n")
    result = run_entry("generate", ckpt, "--input", tmp_path / "in.txt", "--beam", "1", "--max-len-b", "100000000",
                       timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    from hybridformer.checkpoint import load_tokenizer

    assert len(load_tokenizer(ckpt).encode(result.stdout.strip()).ids) <= 24


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_cpu_only_machine_is_one_line(tmp_path, tiny_checkpoint):
    (tmp_path / "in.txt").write_text("the cat\n")
    result = run_entry("generate", tiny_checkpoint(), "--input", tmp_path / "in.txt", "--device", "cuda")
    assert_one_line_error(result, 2, "no CUDA device", alone=True)


def test_an_unknown_device_is_blamed_not_the_weights(tmp_path, tiny_checkpoint):
    (tmp_path / "in.txt").write_text("the cat\n")
    result = run_entry("generate", tiny_checkpoint(), "--input", tmp_path / "in.txt", "--device", "tpu")
    line = assert_one_line_error(result, 2, "'tpu'", alone=True)
    assert "safetensors" not in line


def test_ctrl_c_says_how_many_lines_were_written(tmp_path, tiny_checkpoint):
    lines = tmp_path / "in.txt"
    lines.write_text("\n".join(TINY_TEXT * 500) + "\n")
    proc = subprocess.Popen(
        [*entry_command(), "generate", str(tiny_checkpoint()), "--input", str(lines), "--beam", "2",
         "--batch-tokens", "16"],
        env=entry_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    assert first, proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    out, err = proc.stdout.read(), proc.stderr.read()  # (the reader's buffer may already hold more lines)
    proc.wait(timeout=60)
    written = 1 + len(out.splitlines())
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert f"only the first {written} output line(s) were written" in err
    assert written < 4000


def test_progress_is_shown_on_a_terminal(tmp_path, tiny_checkpoint):
    lines = tmp_path / "in.txt"
    lines.write_text("\n".join(TINY_TEXT * 38) + "\n")  # 304 lines
    controller, terminal = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(controller, 4096)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    result = run_entry("generate", tiny_checkpoint(), "--input", lines, "--beam", "1", "--max-len-b", "2",
                       stderr=terminal, stdout=subprocess.PIPE)
    os.close(terminal)
    reader.join(timeout=10)
    os.close(controller)
    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == 304  # outputs stay on stdout, whole
    shown = b"".join(chunks).decode(errors="replace")
    assert "304/304" in shown and "lines" in shown
