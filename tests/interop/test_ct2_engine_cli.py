"""``generate`` / ``evaluate --engine ct2``: same input handling and output format as the torch engine, same greedy
outputs, same teacher-forced scores; a checkpoint is exported once into a cache beside it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_TEXT, run_cli

from hybridformer import ModelConfig, build_model, save_checkpoint

pytest.importorskip("ctranslate2", reason="the ct2 extra (pip install 'hybridformer[ct2]') is not installed")

SRC = Path(__file__).resolve().parents[2] / "src"
GREEDY = ["--beam", "1", "--max-len-a", "0", "--max-len-b", "8"]


def spread(path: Path, tokenizer, arch: str) -> Path:
    cfg = ModelConfig(arch=arch, vocab_size=tokenizer.get_vocab_size(), d_model=16, heads=2, ffn_dim=32, dropout=0.0,
                      encoder={"layers": 1}, decoder={"layers": 1})
    model = build_model(cfg).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.5)
    return save_checkpoint(path, model, cfg, tokenizer)


@pytest.fixture
def files(tmp_path):
    (tmp_path / "src.txt").write_text("\n".join(TINY_TEXT[:4]) + "\n")
    (tmp_path / "ref.txt").write_text("\n".join(TINY_TEXT[4:]) + "\n")
    return tmp_path


def test_generate_engines_agree_through_the_real_command(tmp_path, tiny_tokenizer, files):
    ckpt = spread(tmp_path / "mt", tiny_tokenizer, "encoder_decoder")
    env = os.environ | {"PYTHONPATH": str(SRC)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "hybridformer", "generate", str(ckpt), "--input",
                               str(files / "src.txt"), *GREEDY, *args], capture_output=True, text=True, env=env,
                              timeout=120)

    torch_run, ct2_run = run(), run("--engine", "ct2")
    assert torch_run.returncode == ct2_run.returncode == 0, ct2_run.stderr
    assert ct2_run.stdout == torch_run.stdout and len(ct2_run.stdout.splitlines()) == 4
    assert (tmp_path / "mt.ct2-float32" / "model.bin").is_file()
    assert f"exports {ckpt} once into {tmp_path / 'mt.ct2-float32'}" in ct2_run.stderr  # says what it writes, where


def test_engines_agree_on_an_lm_and_an_export(monkeypatch, capsys, tmp_path, tiny_tokenizer, files):
    lm = spread(tmp_path / "lm", tiny_tokenizer, "decoder_lm")
    outputs = {}
    for engine in ("torch", "ct2"):
        code, out, err = run_cli(monkeypatch, capsys, "generate", lm, "--input", files / "src.txt", *GREEDY,
                                 "--engine", engine)
        assert code == 0, err
        outputs[engine] = out
    assert outputs["ct2"] == outputs["torch"]
    code, _, err = run_cli(monkeypatch, capsys, "export", lm, "--to", "ct2", "--out", tmp_path / "exported")
    assert code == 0, err
    code, out, err = run_cli(monkeypatch, capsys, "generate", tmp_path / "exported", "--input", files / "src.txt",
                             *GREEDY, "--engine", "ct2")
    assert code == 0 and out == outputs["torch"], err


def test_evaluate_engines_agree(monkeypatch, capsys, tmp_path, tiny_tokenizer, files):
    mt = spread(tmp_path / "mt", tiny_tokenizer, "encoder_decoder")
    lm = spread(tmp_path / "lm", tiny_tokenizer, "decoder_lm")
    scores = {}
    for engine in ("torch", "ct2"):
        for name, args in {"bleu": [mt, "--src", files / "src.txt", "--metric", "bleu", *GREEDY],
                           "ppl": [mt, "--src", files / "src.txt", "--metric", "ppl"],
                           "lm-ppl": [lm, "--metric", "ppl", "--context", "6"]}.items():
            code, out, err = run_cli(monkeypatch, capsys, "evaluate", *args, "--ref", files / "ref.txt", "--json",
                                     "--engine", engine)
            assert code == 0, err
            scores[engine, name] = json.loads(out)["score"]
    assert scores["ct2", "bleu"] == scores["torch", "bleu"]
    for name in ("ppl", "lm-ppl"):
        assert scores["ct2", name] == pytest.approx(scores["torch", name], rel=1e-4)


def test_engine_errors_are_one_line(monkeypatch, capsys, tmp_path, tiny_tokenizer, files):
    mt = spread(tmp_path / "mt", tiny_tokenizer, "encoder_decoder")
    cases = [["generate", mt, mt, "--input", files / "src.txt", "--engine", "ct2"],
             ["generate", mt, "--input", files / "src.txt", "--engine", "onnx"],
             ["generate", mt, "--input", files / "src.txt", "--quantization", "int8"],
             ["generate", mt, "--input", files / "src.txt", "--engine", "ct2", "--quantization", "int3"]]
    run_cli(monkeypatch, capsys, "export", mt, "--to", "ct2", "--out", tmp_path / "exported")
    cases.append(["generate", tmp_path / "exported", "--input", files / "src.txt"])
    for args in cases:
        code, _, err = run_cli(monkeypatch, capsys, *args)
        assert code == 2 and len(err.strip().splitlines()) == 1, (args, err)


def test_ct2_sampling_is_reproducible_with_a_seed(monkeypatch, capsys, tmp_path, tiny_tokenizer, files):
    lm = spread(tmp_path / "lm", tiny_tokenizer, "decoder_lm")
    runs = [run_cli(monkeypatch, capsys, "generate", lm, "--input", files / "src.txt", "--engine", "ct2", "--sample",
                    "--top-k", "20", "--seed", str(seed), "--max-len-b", "12") for seed in (3, 3, 4)]
    assert all(code == 0 for code, _, _ in runs)
    assert runs[0][1] == runs[1][1] and len(runs[0][1].splitlines()) == 4
    assert runs[0][1] != runs[2][1]


def test_chat_template_travels_with_the_export(monkeypatch, capsys, tmp_path, tiny_tokenizer, files):
    lm = spread(tmp_path / "lm", tiny_tokenizer, "decoder_lm")
    template = "{% for m in messages %}{{ m['content'] }} {% endfor %}{% if add_generation_prompt %}the{% endif %}"
    (lm / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    outputs = []
    for engine in ("torch", "ct2"):
        code, out, err = run_cli(monkeypatch, capsys, "generate", lm, "--input", files / "src.txt", "--chat", *GREEDY,
                                 "--engine", engine)
        assert code == 0, err
        outputs.append(out)
    assert outputs[0] == outputs[1] and (tmp_path / "lm.ct2-float32" / "tokenizer_config.json").is_file()
