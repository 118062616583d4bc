"""A stopped ``evaluate`` still reports: the score over what was scored, marked partial (API and real entry point,
Ctrl-C and SIGTERM); the progress bar shows on a terminal's stderr and never on stdout."""

from __future__ import annotations

import json
import os
import re
import signal
import time

import pytest
from conftest import TINY_TEXT, run_on_terminal

from hybridformer import evaluate
from hybridformer.evaluate import EvaluationInterrupted


def stop_after(calls: int):
    """A progress callback that interrupts the scoring after ``calls`` reports, as Ctrl-C would."""
    seen = []

    def progress(done: int, total: int) -> None:
        seen.append((done, total))
        if len(seen) == calls:
            raise KeyboardInterrupt

    return progress, seen


def test_an_interrupted_bleu_is_the_score_of_the_lines_decoded(tiny_checkpoint):
    ckpt, src, ref = tiny_checkpoint(), TINY_TEXT[:4], TINY_TEXT[4:]
    progress, seen = stop_after(2)
    with pytest.raises(EvaluationInterrupted) as stopped:
        evaluate(ckpt, src, ref, metric="chrf", beam=1, max_len_b=4, batch_tokens=4, progress=progress)
    partial = stopped.value.result
    assert seen == [(1, 4), (2, 4)] and partial.partial == "2 of 4 lines"
    assert partial.score == evaluate(ckpt, src[:2], ref[:2], metric="chrf", beam=1, max_len_b=4).score
    assert str(partial).startswith("PARTIAL (2 of 4 lines) CHRF") and partial.as_dict()["partial"] == "2 of 4 lines"


def test_an_interrupted_ppl_counts_what_it_scored(tiny_checkpoint):
    lm = tiny_checkpoint("decoder_lm")
    full = evaluate(lm, None, TINY_TEXT, metric="ppl", context=4)
    assert full.partial is None and "partial" not in full.as_dict()
    progress, seen = stop_after(3)
    with pytest.raises(EvaluationInterrupted) as stopped:
        evaluate(lm, None, TINY_TEXT, metric="ppl", context=4, progress=progress)
    partial = stopped.value.result
    assert partial.partial == f"3 of {seen[0][1]} blocks" and partial.details["tokens"] == 12


def test_sigterm_unwinds_like_ctrl_c_with_its_own_status():
    from hybridformer.cli.progress import stop_signals

    with pytest.raises(KeyboardInterrupt), stop_signals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
    assert (stop.name, stop.status) == ("SIGTERM", 143)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_ctrl_c_after_the_first_progress_prints_a_partial_score(tiny_checkpoint, tmp_path):
    sig, status = signal.SIGINT, 130
    lm = tiny_checkpoint("decoder_lm")
    (tmp_path / "ref.txt").write_text("\n".join(TINY_TEXT * 3000) + "\n")
    proc, stdout, said = run_on_terminal(
        ["evaluate", lm, "--ref", tmp_path / "ref.txt", "--metric", "ppl", "--context", "2", "--json"],
        until=r"blocks.*?(?<![0-9])[1-9][0-9]*/[0-9]+", then=lambda proc: proc.send_signal(sig))
    assert proc.returncode == status, said[-2000:]
    result = json.loads(stdout)  # stdout holds the score only, never the bar
    assert re.fullmatch(r"\d+ of \d+ blocks", result["partial"]) and result["score"] > 0
    assert f"interrupted ({sig.name}): the score above is partial, over {result['partial']}" in said
    assert "Traceback" not in said
