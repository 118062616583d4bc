from __future__ import annotations

import math
import shutil

import pytest
import torch

from hybridformer import load_checkpoint, train
from hybridformer.checkpoint import load_weights
from hybridformer.errors import ConfigError
from hybridformer.train import export_ema, read_metrics, trainer
from hybridformer.train.state import TRAINER_STATE, RunDir


def _losses(run_dir) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in read_metrics(run_dir / "metrics.jsonl") if e["kind"] == "train"}


def _same_weights(a, b) -> bool:
    wa, wb = load_weights(a), load_weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_continues_exactly(tmp_path, tiny_config):
    full = train(tiny_config("train.max_steps=12", "train.save_every=3"), tmp_path / "full")
    assert full.status == "completed" and full.step == 12
    part = tmp_path / "part"
    train(tiny_config("train.max_steps=7", "train.save_every=3"), part)
    shutil.rmtree(RunDir(part).step_dir(7))  # as if killed after step 7, before its checkpoint landed
    resumed = train(tiny_config("train.max_steps=12", "train.save_every=3"), part, resume=True)
    assert resumed.step == 12
    assert _losses(part) == _losses(tmp_path / "full")  # step for step, bit for bit
    assert _same_weights(full.checkpoint, resumed.checkpoint)
    assert sorted(p.name for p in RunDir(part).step_checkpoints()) == ["step-000006", "step-000009", "step-000012"]


def test_run_dir_contents(tmp_path, tiny_config):
    result = train(tiny_config("train.max_steps=4", "train.ema_decay=0.9", "train.keep_last=1"), tmp_path / "r")
    run = RunDir(tmp_path / "r")
    assert [p.name for p in run.step_checkpoints()] == ["step-000004"]
    state = torch.load(result.checkpoint / TRAINER_STATE, weights_only=True)
    assert state["step"] == 4 and state["data"]["batch"] > 0 and state["optimizer"]["state"]
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.tokenizer is not None and ckpt.config.vocab_size == ckpt.tokenizer.get_vocab_size()
    assert load_checkpoint(run.best).meta["step"] == 4
    assert (run.tensorboard).is_dir() and any(run.tensorboard.iterdir())
    kinds = {e["kind"] for e in read_metrics(run.metrics)}
    assert kinds == {"train", "valid"}
    # EMA weights are their own checkpoint, different from the live ones, and exportable
    assert not _same_weights(run.ema, result.checkpoint)
    exported = export_ema(run.root, tmp_path / "ema-export")
    assert _same_weights(exported, run.ema)
    with pytest.raises(ConfigError, match="--resume"):
        train(tiny_config("train.max_steps=4"), tmp_path / "r")


def test_nan_guard_keeps_last_good_checkpoint(tmp_path, tiny_config, monkeypatch):
    real = trainer.label_smoothed_nll
    calls = {"n": 0}

    def poisoned(logits, target, **kw):
        loss, nll, count = real(logits, target, **kw)
        calls["n"] += 1 if torch.is_grad_enabled() else 0
        return (loss * math.nan, nll, count) if calls["n"] > 6 else (loss, nll, count)

    monkeypatch.setattr(trainer, "label_smoothed_nll", poisoned)
    result = train(tiny_config("train.max_steps=20", "train.save_every=5"), tmp_path / "r")
    assert result.status == "diverged" and result.step == 6
    assert "non-finite loss at step 7" in result.message and "step-000005" in result.message
    assert [p.name for p in RunDir(tmp_path / "r").step_checkpoints()] == ["step-000005"]
    assert all(torch.isfinite(t).all() for t in load_weights(result.checkpoint).values())


def test_early_stopping(tmp_path, tiny_config, monkeypatch):
    monkeypatch.setattr(trainer._Trainer, "validation_scores", lambda self: {"loss": 1.0})
    result = train(tiny_config("train.max_steps=40", "train.eval_every=2", "train.patience=2"), tmp_path / "r")
    assert result.status == "early_stopped" and result.step == 6 and result.best_valid_loss == 1.0
    assert RunDir(tmp_path / "r").latest().name == "step-000006"


def test_activation_checkpointing_changes_nothing(tmp_path, tiny_config):
    plain = train(tiny_config("train.max_steps=3"), tmp_path / "a")
    ckpt = train(tiny_config("train.max_steps=3", "train.activation_checkpointing=true"), tmp_path / "b")
    selective = train(tiny_config("train.max_steps=3", "train.activation_checkpointing=selective"), tmp_path / "c")
    assert _losses(tmp_path / "a") == pytest.approx(_losses(tmp_path / "b"), rel=1e-5)
    assert _losses(tmp_path / "a") == pytest.approx(_losses(tmp_path / "c"), rel=1e-5)
    assert plain.step == ckpt.step == selective.step == 3


def test_chunked_loss_changes_nothing(tmp_path, tiny_config):
    text = tmp_path / "text.txt"
    text.write_text("To be, or not to be, that is the question:\n" * 40)
    lm = ("model.arch=decoder_lm", "data.builtin=null", f"data.train_file={text}", "data.tokenizer_kind=char",
          "data.block_size=32", "data.max_tokens=128", "train.max_steps=3", "train.eval_every=3")
    plain = train(tiny_config(*lm), tmp_path / "a")
    chunked = train(tiny_config(*lm, "train.loss_chunk=20"), tmp_path / "b")
    assert _losses(tmp_path / "a") == pytest.approx(_losses(tmp_path / "b"), rel=1e-5)
    assert plain.best_valid_loss == pytest.approx(chunked.best_valid_loss, rel=1e-5)
    with pytest.raises(ConfigError, match="decoder LM"):
        train(tiny_config("train.max_steps=1", "train.loss_chunk=20"), tmp_path / "c")


def test_bf16_and_accumulation_run(tmp_path, tiny_config):
    result = train(tiny_config("train.max_steps=2", "train.precision=bf16", "train.accumulate=2"), tmp_path / "r")
    assert result.status == "completed" and all(math.isfinite(v) for v in _losses(tmp_path / "r").values())


def test_char_lm_from_text_file(tmp_path, tiny_config):
    text = tmp_path / "text.txt"
    text.write_text("To be, or not to be, that is the question:\n" * 40)
    result = train(tiny_config("model.arch=decoder_lm", "data.builtin=null", f"data.train_file={text}",
                               "data.tokenizer_kind=char", "data.block_size=32", "data.max_tokens=128",
                               "train.max_steps=3"), tmp_path / "r")
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.config.arch == "decoder_lm" and ckpt.tokenizer.decode(ckpt.tokenizer.encode("To be").ids) == "To be"


def test_validation_bleu_is_logged_and_matches_evaluate(tmp_path, tiny_config):
    """With train.eval_bleu=N the trainer greedy-decodes N validation pairs; the score equals `evaluate`'s."""
    import json

    from hybridformer import evaluate
    from hybridformer.data import make_task

    train(tiny_config("train.max_steps=8", "train.eval_bleu=10"), tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    valid = [row for row in rows if row["kind"] == "valid"]
    assert len(valid) == 2 and all(0.0 <= row["bleu"] <= 100.0 for row in valid)
    pairs = make_task("numbers", 200, 30).valid[:10]
    last = RunDir(tmp_path / "run").latest()
    score = evaluate(last, [s for s, _ in pairs], [t for _, t in pairs], metric="bleu", beam=1)
    assert abs(score.score - valid[-1]["bleu"]) < 1e-6
