"""The distillation recipe end to end through the CLI, on the built-in numbers task: two teachers of
different architectures, ensemble weights and decoding settings tuned on the dev pair, the teachers'
decode of the training sources mixed with the references, the student's training and its average."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import run_cli
from train.conftest import tiny

from hybridformer import load_checkpoint, train
from hybridformer.data.tasks import make_task
from hybridformer.generation import generate
from hybridformer.train.state import RunDir

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """A Transformer and a Conformer-encoder teacher, 16 steps each on the numbers task."""
    root = tmp_path_factory.mktemp("teachers")
    train(tiny("train.max_steps=16", "train.seed=7", "model.dropout=0.0"), root / "transformer")
    train(tiny("train.max_steps=16", "train.seed=8", "model.dropout=0.0", "model.encoder.layer=conformer",
               f"data.tokenizer={RunDir(root / 'transformer').best / 'tokenizer.json'}"), root / "conformer")
    return [RunDir(root / name).best for name in ("transformer", "conformer")]


def test_the_distillation_recipe_runs_end_to_end(monkeypatch, capsys, tmp_path, teachers):
    dev = make_task("numbers", 200, 30).valid
    (tmp_path / "val.src").write_text("".join(f"{s}\n" for s, _ in dev))
    (tmp_path / "val.tgt").write_text("".join(f"{t}\n" for _, t in dev))
    val = ["--src", tmp_path / "val.src", "--ref", tmp_path / "val.tgt"]
    code, _, err = run_cli(monkeypatch, capsys, "tune-weights", *teachers, *val, "--metric", "loss", "--step", "0.5",
                           "--out", tmp_path / "weights.json", "--quiet")
    assert code == 0, err
    code, out, err = run_cli(monkeypatch, capsys, "tune-decoding", *teachers, *val, "--weights",
                             f"@{tmp_path / 'weights.json'}", "--beams", "1,2", "--lenpens", "0.8,1.2",
                             "--out", tmp_path / "search.json")
    assert code == 0 and out.startswith("best beam"), err
    search = json.loads((tmp_path / "search.json").read_text())
    assert len(search["trials"]) == 4 and [search["beam"], search["lenpen"]] in [t[:2] for t in search["trials"]]

    student = tmp_path / "student.yaml"  # the recipe's student, shrunk: 6 steps, checkpoints at 2, 4, 6
    student.write_text(yaml.safe_dump(tiny("train.max_steps=6", "train.save_every=2", "train.keep_last=3",
                                           "model.encoder.layer=conformer", "data.builtin_train=40",
                                           "data.builtin_valid=10").model_dump(mode="json")))
    run = tmp_path / "run"
    code, out, err = run_cli(monkeypatch, capsys, "distill", "--kind", "sequence", *[a for t in teachers for a in
                             ("--teacher", t)], "--weights", f"@{tmp_path / 'weights.json'}", "--beam",
                             search["beam"], "--lenpen", search["lenpen"], "--with-references", "--config", student,
                             "--out", run, "--no-progress")
    assert code == 0 and "completed at step 6" in out, err
    rows = [json.loads(line) for line in (run / "seqkd" / "train+references.jsonl").read_text().splitlines()]
    train_pairs = make_task("numbers", 40, 10).train
    weights = json.loads((tmp_path / "weights.json").read_text())["weights"]
    decoded = list(generate(teachers, [s for s, _ in train_pairs[:4]], weights=weights, beam=search["beam"],
                            lenpen=search["lenpen"]))
    assert [r["target"] for r in rows[:4]] == decoded  # the tuned ensemble's outputs first ...
    assert [(r["source"], r["target"]) for r in rows[40:]] == [tuple(p) for p in train_pairs]  # ... then references
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["train_file"].endswith("train+references.jsonl")

    code, _, err = run_cli(monkeypatch, capsys, "average", "--last", "3", run, "--out", tmp_path / "avg3")
    assert code == 0, err
    assert len(list(generate(load_checkpoint(tmp_path / "avg3"), [s for s, _ in dev[:3]]))) == 3


def test_decoding_is_never_tuned_on_test_data(monkeypatch, capsys, tmp_path, teachers):
    (tmp_path / "test.src").write_text("1 2\n")
    code, _, err = run_cli(monkeypatch, capsys, "tune-decoding", teachers[0], "--src", tmp_path / "test.src",
                           "--ref", tmp_path / "test.src", "--out", tmp_path / "search.json")
    assert code == 2 and "looks like test data" in err
    code, _, err = run_cli(monkeypatch, capsys, "tune-decoding", teachers[0], "--src", tmp_path / "test.src",
                           "--ref", tmp_path / "test.src", "--beams", "4,x", "--out", tmp_path / "search.json")
    assert code == 2 and "--beams" in err
