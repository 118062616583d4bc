"""``hybridformer quickstart --fast`` end to end: trains, decodes, fuses, prints the table, checkpoints load."""

from __future__ import annotations

import json
import math
import shlex

import pytest
from conftest import run_cli

from hybridformer import evaluate, load_checkpoint
from hybridformer.errors import ConfigError
from hybridformer.quickstart import quickstart


@pytest.mark.slow
def test_quickstart_fast_runs_end_to_end(monkeypatch, capsys, tmp_path):
    out = tmp_path / "qs"
    monkeypatch.setenv("COLUMNS", "80")  # a narrow terminal (or a pipe) must not cut the headers (issue 17)
    code, stdout, stderr = run_cli(monkeypatch, capsys, "quickstart", "--fast", "--steps", "6", "--out", out)
    assert code == 0, stderr
    assert "┃ model " in stdout and "┃ train tok/s ┃ train s ┃ decode s ┃" in stdout
    for name in ("transformer", "conformer", "ensemble", "transformer avg3", "conformer avg3"):
        assert name in stdout
    assert "hybridformer generate" in stdout and "hybridformer evaluate" in stdout

    summary = json.loads((out / "quickstart.json").read_text())
    rows = {row["name"]: row for row in summary["rows"]}
    assert summary["steps"] == 6 and summary["test_examples"] == 20
    t, c = rows["transformer"], rows["conformer"]
    assert rows["ensemble"]["checkpoints"] == t["checkpoints"] + c["checkpoints"]
    assert rows["ensemble"]["params"] == t["params"] + c["params"] and t["params"] != c["params"]
    assert rows["transformer avg3"]["params"] == t["params"]
    for row in rows.values():
        assert 0 <= row["exact_match"] <= 100 and row["decode_s"] > 0
        for path in row["checkpoints"]:
            ckpt = load_checkpoint(path)  # every listed checkpoint is a complete, loadable checkpoint
            assert ckpt.config.arch == "encoder_decoder" and ckpt.tokenizer is not None
    assert load_checkpoint(c["checkpoints"][0]).config.encoder.layer == "conformer"
    assert t["tokens_per_s"] > 0 and rows["ensemble"]["valid_loss"] is None

    # the printed next commands work as written
    commands = summary["commands"]
    assert any(" average --last 3 " in command for command in commands)
    evaluate_chrf = next(command for command in commands if "--metric chrf" in command)
    code, stdout, stderr = run_cli(monkeypatch, capsys, *shlex.split(evaluate_chrf)[1:])
    assert code == 0 and "CHRF" in stdout, stderr
    assert float(stdout.split()[2]) == pytest.approx(t["chrf"], abs=0.01)

    # the trainer's final validation loss is the loss `evaluate --metric ppl` reports for that checkpoint
    valid = evaluate(t["checkpoints"][0], out / "data" / "valid.src", out / "data" / "valid.tgt", metric="ppl")
    assert math.log(valid.score) == pytest.approx(t["valid_loss"], rel=1e-4)


def test_quickstart_refuses_to_overwrite_a_previous_run(tmp_path):
    (tmp_path / "transformer").mkdir()
    with pytest.raises(ConfigError, match="--overwrite"):
        quickstart(tmp_path, fast=True)
    with pytest.raises(ConfigError, match="steps"):
        quickstart(tmp_path / "new", steps=0)
