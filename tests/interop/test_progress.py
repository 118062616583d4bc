"""``convert`` and ``export`` report progress tensor by tensor; the CLI draws it as a bar on a terminal's stderr
only, so stdout (``wrote PATH``) and piped stderr stay clean."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from conftest import entry_command, entry_env, run_on_terminal  # noqa: E402
from interop.hf_tiny import save_tiny  # noqa: E402

from hybridformer import convert  # noqa: E402
from hybridformer.interop import export  # noqa: E402


def recorded(run) -> list[tuple[int, int]]:
    calls: list[tuple[int, int]] = []
    run(lambda done, total: calls.append((done, total)))
    return calls


def assert_counts_up(calls: list[tuple[int, int]]) -> None:
    total = calls[-1][1]
    assert calls[-1] == (total, total) and [done for done, _ in calls] == sorted(done for done, _ in calls), calls


@pytest.fixture(scope="module")
def converted(tmp_path_factory, tiny_tokenizer) -> tuple[Path, list[tuple[int, int]]]:
    root = tmp_path_factory.mktemp("progress")
    _, folder = save_tiny("llama", root / "hf")
    calls = recorded(lambda progress: convert(folder, root / "ck", progress=progress))
    tiny_tokenizer.save(str(root / "ck" / "tokenizer.json"))  # ct2 exports need one
    return root / "ck", calls


def test_convert_counts_every_tensor(converted):
    ckpt, calls = converted
    from safetensors import safe_open

    with safe_open(str(ckpt / "model.safetensors"), framework="pt") as stored:
        assert calls[-1][1] == len(list(stored.keys()))
    assert_counts_up(calls)


@pytest.mark.parametrize("to", ["hf", "ct2"])  # gguf: tests/interop/test_gguf_export.py
def test_export_counts_up(converted, tmp_path, to):
    if to == "ct2":
        pytest.importorskip("ctranslate2")
    out = tmp_path / "out"
    calls = recorded(lambda progress: export(converted[0], out, to=to, progress=progress))
    assert_counts_up(calls)
    assert calls[-1] == (2, 2) if to == "ct2" else calls[-1][1] > 2


def test_the_bar_goes_to_a_terminal_stderr_only(converted, tmp_path):
    proc, stdout, shown = run_on_terminal(["export", converted[0], "--to", "hf", "--out", tmp_path / "tty"])
    assert proc.returncode == 0 and stdout == f"wrote {tmp_path / 'tty'}\n"
    assert "tensors" in shown and re.search(r"(?<![0-9])([0-9]+)/\1(?![0-9])", shown), shown[-500:]  # N/N at the end
    piped = subprocess.run([*entry_command(), "export", converted[0], "--to", "hf", "--out", tmp_path / "pipe"],
                           capture_output=True, text=True, env=entry_env(), timeout=120)
    assert piped.returncode == 0 and piped.stderr == "" and piped.stdout == f"wrote {tmp_path / 'pipe'}\n"
