"""Distillation: the word-level KD loss by hand, alpha=0, a student approaching its teacher, exact resume,
the sequence-level cache, vocabulary checks and the CLI."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
import yaml
from torch import nn
from train.conftest import tiny
from typer.testing import CliRunner

from hybridformer import load_checkpoint, train
from hybridformer.checkpoint import load_weights
from hybridformer.cli import app
from hybridformer.data.tasks import make_task
from hybridformer.errors import CheckpointError, ConfigError
from hybridformer.generation import generate
from hybridformer.train import label_smoothed_nll, read_metrics
from hybridformer.train.distill import WordDistillLoss, distill, kl_to_teacher
from hybridformer.train.distill import seqkd as seqkd_module
from hybridformer.train.state import RunDir

PAD = 0


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A tiny numbers-task model trained for 16 steps: its best checkpoint (with tokenizer.json)."""
    run = tmp_path_factory.mktemp("teacher") / "run"
    train(tiny("train.max_steps=16", "train.seed=7", "model.dropout=0.0"), run)
    return RunDir(run).best


class Fixed(nn.Module):
    """A 'teacher' that returns fixed logits whatever its input."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(self, src, tgt_in):
        return self.logits


def _label_loss(target, epsilon=0.1):
    return lambda logits: label_smoothed_nll(logits, target, epsilon=epsilon, ignore_index=PAD)


def test_word_kd_loss_matches_a_hand_computed_kl_mix():
    student = torch.tensor([[[0.3, 1.0, -0.5, 0.2], [0.1, -1.0, 2.0, 0.0], [0.5, 0.5, 0.5, 0.5]]])
    t1 = torch.tensor([[[5.0, 2.0, 0.0, -1.0], [0.0, 0.5, 1.5, -0.5], [0.0, 0.0, 0.0, 0.0]]])
    t2 = torch.tensor([[[0.0, -1.0, 1.0, 0.5], [0.0, 0.0, 3.0, 1.0], [0.0, 0.0, 0.0, 0.0]]])
    target = torch.tensor([[1, 2, PAD]])  # the last position is padding and must not count
    batch = {"src": torch.ones(1, 2, dtype=torch.long), "tgt_in": torch.ones(1, 3, dtype=torch.long),
             "tgt_out": target}
    alpha, temp, weights = 0.3, 2.0, (3.0, 1.0)
    loss = WordDistillLoss([Fixed(t1), Fixed(t2)], alpha=alpha, temperature=temp, weights=weights, pad_id=PAD)
    mixed, nll_sum, count, extras = loss(student, batch, _label_loss(target))

    def softmax(row, skip_pad):  # at temperature temp; the teachers never predict padding
        exps = [0.0 if (skip_pad and v == PAD) else math.exp(x / temp) for v, x in enumerate(row)]
        return [e / sum(exps) for e in exps]

    kl = 0.0
    for pos in range(2):
        p1, p2 = softmax(t1[0, pos].tolist(), True), softmax(t2[0, pos].tolist(), True)
        p = [(weights[0] * a + weights[1] * b) / sum(weights) for a, b in zip(p1, p2, strict=True)]
        q = softmax(student[0, pos].tolist(), False)
        kl += sum(pv * math.log(pv / qv) for pv, qv in zip(p, q, strict=True) if pv > 0)
    label_sum = 0.0
    for pos, gold in enumerate((1, 2)):
        logq = [math.log(x) for x in softmax((student[0, pos] * temp).tolist(), False)]  # T=1
        label_sum += 0.9 * -logq[gold] + 0.1 * -sum(logq) / 4
    assert count.item() == 2
    assert extras["kl"].item() == pytest.approx(kl, rel=1e-5)
    assert mixed.item() == pytest.approx((1 - alpha) * label_sum + alpha * temp ** 2 * kl, rel=1e-5)
    assert nll_sum.item() == pytest.approx(-sum(math.log(softmax((student[0, p] * temp).tolist(), False)[g])
                                                for p, g in ((0, 1), (1, 2))), rel=1e-5)


def test_alpha_zero_is_the_label_loss_and_kl_is_zero_for_the_teacher_itself():
    logits = torch.randn(2, 5, 7)
    target = torch.randint(1, 7, (2, 5))
    batch = {"src": torch.ones(2, 3, dtype=torch.long), "tgt_in": target, "tgt_out": target}
    label = _label_loss(target)(logits)
    got = WordDistillLoss([Fixed(torch.randn(2, 5, 7))], alpha=0.0, pad_id=PAD)(logits, batch, _label_loss(target))
    assert all(torch.equal(a, b) for a, b in zip(got[:3], label, strict=True)) and got[3] == {}
    teacher = torch.log_softmax(logits, -1)
    assert torch.allclose(kl_to_teacher(logits, teacher), torch.zeros(2, 5), atol=1e-6)
    with pytest.raises(ConfigError, match="alpha"):
        WordDistillLoss([Fixed(logits)], alpha=1.5)


class Recorder(nn.Module):
    """A linear 'teacher' that records the dtype its forward computed in."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.proj, self.seen = nn.Linear(3, vocab), []

    def forward(self, src, tgt_in):
        out = self.proj(torch.ones(*tgt_in.shape, 3))
        self.seen.append(out.dtype)
        return out


def test_teachers_run_at_the_students_precision():
    target = torch.randint(1, 7, (2, 5))
    batch = {"src": torch.ones(2, 3, dtype=torch.long), "tgt_in": target, "tgt_out": target}
    teacher = Recorder(7)
    loss = WordDistillLoss([teacher], alpha=0.5, pad_id=PAD)
    fp32 = loss(torch.randn(2, 5, 7), batch, _label_loss(target))[3]["kl"]
    bf16 = loss(torch.randn(2, 5, 7).bfloat16(), batch, _label_loss(target))[3]["kl"]
    assert teacher.seen == [torch.float32, torch.bfloat16]
    assert fp32.dtype == bf16.dtype == torch.float32 and torch.isfinite(bf16)


def test_student_moves_toward_the_teacher(tmp_path, teacher):
    result = distill([teacher], tiny("train.max_steps=12", "train.eval_every=12", "model.d_model=16"),
                     tmp_path / "student", alpha=1.0)
    assert result.status == "completed" and result.step == 12
    kl = [e["kl"] for e in read_metrics(tmp_path / "student" / "metrics.jsonl") if e["kind"] == "train"]
    assert len(kl) == 12 and sum(kl[-3:]) / 3 < 0.8 * kl[0], kl
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.tokenizer.get_vocab() == load_checkpoint(teacher).tokenizer.get_vocab()
    assert ckpt.config.d_model == 16


def test_word_distillation_resumes_exactly(tmp_path, teacher):
    def cfg(steps):
        return tiny(f"train.max_steps={steps}", "train.save_every=3")

    distill([teacher, teacher], cfg(8), tmp_path / "full", weights=[2, 1])
    part = tmp_path / "part"
    distill([teacher, teacher], cfg(5), part, weights=[2, 1])
    shutil.rmtree(RunDir(part).step_dir(5))  # killed after step 5, before its checkpoint landed
    distill([teacher, teacher], cfg(8), part, weights=[2, 1], resume=True)

    def events(run):
        return [(e["step"], e["loss"], e["kl"]) for e in read_metrics(run / "metrics.jsonl") if e["kind"] == "train"]

    assert events(part) == events(tmp_path / "full")
    w_full, w_part = load_weights(RunDir(tmp_path / "full").latest()), load_weights(RunDir(part).latest())
    assert all(torch.equal(w_full[k], w_part[k]) for k in w_full)
    with pytest.raises(ConfigError, match="alpha: 0.5 -> 0.9"):
        distill([teacher, teacher], cfg(9), part, weights=[2, 1], alpha=0.9, resume=True)
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        distill([teacher], cfg(9), part)


def test_sequence_kd_decodes_once_and_reuses_the_cache(tmp_path, teacher, monkeypatch):
    def cfg(steps):
        return tiny(f"train.max_steps={steps}", "data.builtin_train=40", "data.builtin_valid=10",
                    "train.save_every=2")

    run = tmp_path / "seq"
    first = distill([teacher], cfg(2), run, kind="sequence", beam=2)
    assert first.step == 2
    rows = [yaml.safe_load(line) for line in (run / "seqkd" / "train.jsonl").read_text().splitlines()]
    task = make_task("numbers", 40, 10)
    assert [r["source"] for r in rows] == [s for s, _ in task.train]
    expected = list(generate(teacher, [s for s, _ in task.train[:5]], beam=2))
    assert [r["target"] for r in rows[:5]] == expected  # the teacher's beam outputs, not the references
    before = (run / "seqkd" / "train.jsonl").read_bytes()

    def no_decoding(*args, **kwargs):
        raise AssertionError("the teachers decoded again instead of reusing the cache")

    monkeypatch.setattr(seqkd_module, "generate", no_decoding)
    resumed = distill([teacher], cfg(4), run, kind="sequence", beam=2, resume=True)
    assert resumed.step == 4 and (run / "seqkd" / "train.jsonl").read_bytes() == before
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["train_file"].endswith("seqkd/train.jsonl")


def test_interrupted_teacher_decoding_resumes_after_the_last_finished_shard(tmp_path, teacher, monkeypatch):
    task = make_task("numbers", 40, 10)
    ckpt = load_checkpoint(teacher)
    options = {"search": {"beam": 2}, "device": "cpu", "weights": None, "combine": "prob", "log": lambda _: None}
    whole = seqkd_module.teacher_targets(tmp_path / "whole", [ckpt], task.train, task.valid, **options)
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return generate(*args, **kwargs)

    monkeypatch.setattr(seqkd_module, "generate", interrupted)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        seqkd_module.teacher_targets(run, [ckpt], task.train, task.valid, shard_size=15, **options)
    assert not (run / "seqkd").exists() and (run / ".seqkd.partial" / "train-00000.jsonl").exists()
    calls.clear()
    monkeypatch.setattr(seqkd_module, "generate", lambda *a, **k: calls.append(1) or generate(*a, **k))
    cache = seqkd_module.teacher_targets(run, [ckpt], task.train, task.valid, shard_size=15, **options)
    assert len(calls) == 2  # shards 2 and 3 of 3: the first one was kept
    assert (cache / "train.jsonl").read_bytes() == (whole / "train.jsonl").read_bytes()
    assert sorted(p.name for p in cache.iterdir()) == ["meta.json", "train.jsonl", "valid.jsonl"]


def test_mismatched_vocabularies_are_refused(tmp_path, teacher, tiny_checkpoint):
    other = tmp_path / "reverse-tokenizer.json"
    make_task("reverse", 10, 2).tokenizer.save(str(other))
    with pytest.raises(CheckpointError, match="different vocabularies"):
        distill([teacher], tiny("train.max_steps=1", f"data.tokenizer={other}"), tmp_path / "s1")
    with pytest.raises(CheckpointError, match="different vocabularies"):
        distill([teacher, tiny_checkpoint()], tiny("train.max_steps=1"), tmp_path / "s2")
    assert not RunDir(tmp_path / "s1").step_checkpoints()


def test_cli_distill(tmp_path, teacher):
    config = tmp_path / "student.yaml"
    config.write_text(yaml.safe_dump(tiny().model_dump(mode="json")))
    args = ["distill", "--teacher", str(teacher), "--teacher", str(teacher), "--config", str(config),
            "--out", str(tmp_path / "run"), "--set", "train.max_steps=2", "--alpha", "0.7", "--temperature", "2",
            "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "completed at step 2" in result.output
    settings = yaml.safe_load((tmp_path / "run" / "distill.json").read_text())
    assert settings["alpha"] == 0.7 and settings["temperature"] == 2.0 and len(settings["teachers"]) == 2


def test_language_model_word_distillation(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("To be, or not to be, that is the question:\n" * 40)
    lm = ("model.arch=decoder_lm", "data.builtin=null", f"data.train_file={text}", "data.tokenizer_kind=char",
          "data.block_size=32", "data.max_tokens=128")
    lm_teacher = train(tiny(*lm, "train.max_steps=4"), tmp_path / "teacher").checkpoint
    result = distill([lm_teacher], tiny(*lm, "train.max_steps=3", "model.d_model=16"), tmp_path / "student")
    assert result.step == 3 and all("kl" in e for e in read_metrics(tmp_path / "student" / "metrics.jsonl")
                                    if e["kind"] == "train")
    with pytest.raises(ConfigError, match="needs an encoder_decoder student"):
        distill([lm_teacher], tiny(*lm, "train.max_steps=1"), tmp_path / "seq", kind="sequence")
