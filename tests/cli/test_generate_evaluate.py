"""``hybridformer generate`` / ``evaluate`` end to end: outputs, scores, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_TEXT, run_cli

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "src.txt").write_text("\n".join(TINY_TEXT[:4]) + "\n")
    (tmp_path / "ref.txt").write_text("\n".join(TINY_TEXT[4:]) + "\n")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "short.txt").write_text("one line\n")
    return tmp_path


def test_generate_writes_one_line_per_input(monkeypatch, capsys, tiny_checkpoint, files):
    code, out, err = run_cli(monkeypatch, capsys, "generate", tiny_checkpoint(), "--input", files / "src.txt",
                             "--beam", "3", "--lenpen", "0.8", "--max-len-b", "5", "--batch-tokens", "8")
    assert code == 0, err
    assert len(out.splitlines()) == 4


def test_generate_samples_from_an_lm(monkeypatch, capsys, tiny_checkpoint, files):
    args = ["generate", tiny_checkpoint("decoder_lm"), "--input", files / "src.txt", "--sample", "--top-k", "5",
            "--top-p", "0.9", "--temperature", "0.8", "--seed", "3", "--max-len-b", "6"]
    first, second = run_cli(monkeypatch, capsys, *args), run_cli(monkeypatch, capsys, *args)
    assert first[0] == 0 and first[1] == second[1] and len(first[1].splitlines()) == 4


def test_evaluate_prints_score_and_signature(monkeypatch, capsys, tiny_checkpoint, files):
    ckpt = tiny_checkpoint()
    code, out, _ = run_cli(monkeypatch, capsys, "evaluate", ckpt, "--src", files / "src.txt",
                           "--ref", files / "ref.txt", "--metric", "bleu", "--beam", "2", "--max-len-b", "4")
    assert code == 0 and out.startswith("BLEU = ") and "tok:13a" in out
    code, out, _ = run_cli(monkeypatch, capsys, "evaluate", ckpt, "--src", files / "src.txt", "--ref",
                           files / "ref.txt", "--tokenize", "moses-lc", "--lang", "de", "--beam", "2",
                           "--max-len-b", "4")
    assert code == 0 and "tok:moses-de" in out and "case:lc" in out
    for metric in ("chrf", "rouge", "ppl"):
        code, out, _ = run_cli(monkeypatch, capsys, "evaluate", ckpt, "--src", files / "src.txt",
                               "--ref", files / "ref.txt", "--metric", metric, "--max-len-b", "4", "--json")
        result = json.loads(out)
        assert code == 0 and result["metric"] == metric and result["signature"] and result["score"] >= 0
    code, out, _ = run_cli(monkeypatch, capsys, "evaluate", tiny_checkpoint("decoder_lm"), "--ref",
                           files / "ref.txt", "--metric", "ppl", "--json")
    assert code == 0 and json.loads(out)["details"]["bits_per_char"] > 0


def error_cases(ckpt: Path, lm: Path, classifier: Path, files: Path) -> dict[str, list]:
    return {
        "missing checkpoint": ["generate", files / "nope", "--input", files / "src.txt"],
        "missing input": ["generate", ckpt, "--input", files / "nope.txt"],
        "empty input": ["generate", ckpt, "--input", files / "empty.txt"],
        "classifier": ["generate", classifier, "--input", files / "src.txt"],
        "several checkpoints": ["generate", ckpt, lm, "--input", files / "src.txt"],
        "sample with beam": ["generate", ckpt, "--input", files / "src.txt", "--sample", "--beam", "4"],
        "evaluate missing checkpoint": ["evaluate", files / "nope", "--src", files / "src.txt", "--ref",
                                        files / "ref.txt"],
        "evaluate empty ref": ["evaluate", ckpt, "--src", files / "src.txt", "--ref", files / "empty.txt"],
        "evaluate LM with bleu": ["evaluate", lm, "--src", files / "src.txt", "--ref", files / "ref.txt"],
        "evaluate LM with --src": ["evaluate", lm, "--src", files / "src.txt", "--ref", files / "ref.txt",
                                   "--metric", "ppl"],
        "evaluate seq2seq without --src": ["evaluate", ckpt, "--ref", files / "ref.txt"],
        "evaluate line counts": ["evaluate", ckpt, "--src", files / "src.txt", "--ref", files / "short.txt"],
        "evaluate classifier": ["evaluate", classifier, "--src", files / "src.txt", "--ref", files / "ref.txt"],
        "evaluate unknown metric": ["evaluate", ckpt, "--src", files / "src.txt", "--ref", files / "ref.txt",
                                    "--metric", "meteor"],
        "evaluate tokenize with chrf": ["evaluate", ckpt, "--src", files / "src.txt", "--ref", files / "ref.txt",
                                        "--metric", "chrf", "--tokenize", "moses-lc"],
        "evaluate ppl of an ensemble": ["evaluate", ckpt, ckpt, "--src", files / "src.txt", "--ref",
                                        files / "ref.txt", "--metric", "ppl"],
        "bad ensemble weights": ["generate", ckpt, ckpt, "--input", files / "src.txt", "--weights", "1,x"],
    }


def test_errors_are_one_line_without_traceback(monkeypatch, capsys, tiny_checkpoint, files):
    cases = error_cases(tiny_checkpoint(), tiny_checkpoint("decoder_lm"), tiny_checkpoint("encoder_classifier"),
                        files)
    expected = {"missing checkpoint": "no such checkpoint", "empty input": "empty input",
                "classifier": "encoder_classifier", "several checkpoints": "ensemble members must all be",
                "evaluate ppl of an ensemble": "each checkpoint", "bad ensemble weights": "comma-separated",
                "evaluate LM with bleu": "use --metric ppl", "evaluate line counts": "4 lines",
                "evaluate seq2seq without --src": "needs --src", "evaluate unknown metric": "meteor",
                "evaluate tokenize with chrf": "--tokenize applies to --metric bleu"}
    for name, args in cases.items():
        code, out, err = run_cli(monkeypatch, capsys, *args)
        assert code != 0, name
        assert "Traceback" not in err, name
        assert len(err.strip().splitlines()) == 1, (name, err)
        assert err.startswith("error: "), (name, err)
        assert expected.get(name, "") in err, (name, err)


def test_generate_streams_stdin_through_the_console_script(tiny_checkpoint):
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(
        [sys.executable, "-c", "from hybridformer.cli import main; main()", "generate", str(tiny_checkpoint()),
         "--input", "-", "--beam", "1", "--max-len-b", "3"],
        input="the cat sat\n\na dog ran\n", capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 3


def test_generate_at_budget_option_through_the_console_script(monkeypatch, capsys, tiny_checkpoint, files):
    code, out, err = run_cli(monkeypatch, capsys, "generate", tiny_checkpoint(), "--input", files / "src.txt",
                             "--beam", "3", "--max-len-b", "4", "--at-budget", "stop")
    assert code == 0, err
    assert len(out.splitlines()) == 4
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from hybridformer.cli import main; sys.exit(main())", "generate",
         str(tiny_checkpoint()), "--input", str(files / "src.txt"), "--at-budget", "truncate"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "at_budget" in proc.stderr, proc.stderr
