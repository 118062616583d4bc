"""Training and evaluating an encoder_classifier on labeled documents (tiny synthetic data, seconds)."""

from __future__ import annotations

import json
import random
import shutil

import pytest
import torch

from hybridformer import build_model, evaluate_classifier, load_checkpoint, save_checkpoint, train
from hybridformer.config import ExperimentConfig, ModelConfig, load_config
from hybridformer.data.tokenizer import byte_tokenizer
from hybridformer.errors import ConfigError
from hybridformer.train import read_metrics
from hybridformer.train.state import RunDir
from tests.conftest import run_cli

CLASSIFIER = ["model.arch=encoder_classifier", "data.format=jsonl", "data.tokenizer_kind=byte",
              "data.max_src_len=48", "data.max_tokens=256", "data.valid_fraction=0.2", "model.d_model=32",
              "model.heads=2", "model.ffn_dim=64", "model.encoder.layers=1", "model.dropout=0.0",
              "train.lr=0.003", "train.warmup_steps=2", "train.label_smoothing=0.0", "train.log_every=1",
              "train.eval_every=5"]


def _documents(n: int, seed: int = 0) -> list[dict]:
    """Separable by bytes: "good" reviews are made of the letters g/o, "bad" ones of b/a/d, any length."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = ("bad", "good")[i % 2]
        letters = "god" if label == "good" else "bad"
        rows.append({"text": " ".join("".join(rng.choices(letters, k=rng.randint(2, 6)))
                                      for _ in range(rng.randint(1, 12))), "label": label})
    return rows


@pytest.fixture
def labeled(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in _documents(80)))
    return path


def _config(path, *overrides: str) -> ExperimentConfig:
    return load_config(None, [*CLASSIFIER, f"data.train_file={path}", *overrides], ExperimentConfig)


def test_classifier_learns_a_separable_task(tmp_path, labeled):
    result = train(_config(labeled, "train.max_steps=20"), tmp_path / "run")
    events = read_metrics(RunDir(tmp_path / "run").metrics)
    losses = [e["loss"] for e in events if e["kind"] == "train"]
    valid = [e for e in events if e["kind"] == "valid"]
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    assert valid[-1]["accuracy"] == 1.0 and "ppl" not in valid[-1]
    assert all(0.0 <= e["accuracy"] <= 1.0 and e["step_s"] > 0 for e in events if e["kind"] == "train")
    best = load_checkpoint(RunDir(tmp_path / "run").best)
    assert best.meta["labels"] == ["bad", "good"] and best.meta["max_len"] == 48
    assert best.config.num_classes == 2 and best.config.vocab_size == 260
    # evaluation maps labels through the checkpoint and agrees with the trainer's last validation
    test = tmp_path / "test.jsonl"
    test.write_text("".join(json.dumps(row) + "\n" for row in _documents(30, seed=1)))
    score = evaluate_classifier(result.checkpoint, test)
    assert score.score == 100.0 and score.details["documents"] == 30


def test_classifier_resumes_exactly(tmp_path, labeled):
    full = train(_config(labeled, "train.max_steps=8", "train.save_every=3"), tmp_path / "full")
    part = tmp_path / "part"
    train(_config(labeled, "train.max_steps=5", "train.save_every=3"), part)
    shutil.rmtree(RunDir(part).step_dir(5))
    resumed = train(_config(labeled, "train.max_steps=8", "train.save_every=3"), part, resume=True)

    def losses(run):
        return {e["step"]: (e["loss"], e["accuracy"]) for e in read_metrics(RunDir(run).metrics)
                if e["kind"] == "train"}

    assert losses(part) == losses(tmp_path / "full")
    weights = load_checkpoint(full.checkpoint).model.state_dict()
    assert all(torch.equal(v, load_checkpoint(resumed.checkpoint).model.state_dict()[k]) for k, v in weights.items())


def test_label_folders_train(tmp_path):
    for split, rows in (("train", _documents(40)), ("dev", _documents(10, seed=2))):
        for i, row in enumerate(rows):
            path = tmp_path / "corpus" / split / row["label"] / f"{i}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(row["text"])
    cfg = _config(tmp_path / "corpus", "data.format=folders", "data.valid_split=dev", "train.max_steps=2")
    train(cfg, tmp_path / "run")
    assert load_checkpoint(RunDir(tmp_path / "run").best).meta["labels"] == ["bad", "good"]


def _always(tmp_path, class_id: int, strength: float = 1.0):
    """A hand-made classifier: zero head weights, so the bias alone decides — always ``class_id``."""
    cfg = ModelConfig(arch="encoder_classifier", vocab_size=260, d_model=8, heads=2, ffn_dim=16, num_classes=3,
                      encoder={"layers": 1})
    model = build_model(cfg)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(strength * torch.nn.functional.one_hot(torch.tensor(class_id), 3).float())
    return save_checkpoint(tmp_path / f"always{class_id}-{strength}", model, cfg, byte_tokenizer(),
                           meta={"labels": ["1", "2", "10"], "max_len": 16})


def test_accuracy_on_a_hand_made_case(tmp_path, monkeypatch, capsys):
    path = tmp_path / "test.jsonl"
    labels = [10, 10, 2, 1, 10]  # class ids 2, 2, 1, 0, 2 (numeric order)
    path.write_text("".join(json.dumps({"text": f"review {i}", "label": y}) + "\n" for i, y in enumerate(labels)))
    score = evaluate_classifier(_always(tmp_path, 2), path)
    assert score.score == pytest.approx(60.0) and score.details["correct"] == 3
    assert (score.details["accuracy_10"], score.details["accuracy_1"]) == (100.0, 0.0)
    # an ensemble averages probabilities: softmax(0, 0, 2) and softmax(1, 0, 0) average to (.34, .16, .50)
    pair = evaluate_classifier([_always(tmp_path, 2, 2.0), _always(tmp_path, 0)], path)
    assert (pair.score, pair.details["accuracy_10"], pair.details["accuracy_1"]) == (60.0, 100.0, 0.0)
    subset = evaluate_classifier(_always(tmp_path, 0), path, limit=3, seed=1)
    assert subset.details["documents"] == 3 and "random 3 of 5 (seed 1)" in subset.signature
    code, out, err = run_cli(monkeypatch, capsys, "evaluate", tmp_path / "always2-1.0", "--labeled", path, "--json")
    assert code == 0, err
    assert json.loads(out)["score"] == pytest.approx(60.0)
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", tmp_path / "always2-1.0", "--labeled", path, "--ref", path)
    assert code == 2 and "drop --src/--ref" in err
    path.write_text(json.dumps({"text": "x", "label": 7}) + "\n")
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", tmp_path / "always2-1.0", "--labeled", path)
    assert code == 2 and "test.jsonl:1: label '7' is not one of the 3 training classes" in err


def test_config_checks(tmp_path, labeled):
    with pytest.raises(ConfigError, match="eval_bleu"):
        _config(labeled, "train.eval_bleu=5")
    with pytest.raises(ConfigError, match="data.format='folders' holds labeled documents"):
        load_config(None, ["data.format=folders"], ExperimentConfig)
    with pytest.raises(ConfigError, match="data.train_file"):
        train(load_config(None, CLASSIFIER, ExperimentConfig), tmp_path / "run")
