"""tune-weights: the search, the refusal of test data, and a constructed case with a known answer."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import assert_one_line_error, run_entry

from hybridformer import load_checkpoint, save_checkpoint, train
from hybridformer.config import ExperimentConfig, load_config
from hybridformer.data.tasks import make_task
from hybridformer.errors import ConfigError, DataError
from hybridformer.tune import looks_like_test_data, read_weights_file, search, simplex_candidates, tune_weights


def test_looks_like_test_data():
    for path in ("multi30k/test_2016_flickr.en.gz", "wmt/newstest2014.de", "SciTLDR-A_test.jsonl.gz",
                 "data/test/source.txt", "corpus/Tests/ref.txt", "TEST.src"):
        assert looks_like_test_data(path), path
    for path in ("multi30k/val.en.gz", "dev.src", "/tmp/pytest-of-me/pytest-3/test_tune0/dev.ref", "valid.txt"):
        assert not looks_like_test_data(path), path


def test_simplex_candidates_stay_on_the_simplex():
    rows = simplex_candidates([0.5, 0.3, 0.2], 0, 0.25)
    assert [r[0] for r in rows] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert all(sum(r) == pytest.approx(1.0) and min(r) >= 0 for r in rows)
    assert rows[0][1:] == pytest.approx([0.6, 0.4])  # the others keep their 3:2 proportion
    assert simplex_candidates([1.0, 0.0, 0.0], 0, 0.5)[0] == [0.0, 0.5, 0.5]


def test_search_finds_a_known_optimum():
    target = [0.7, 0.0, 0.3]
    best, score, trials = search(lambda w: -sum((a - b) ** 2 for a, b in zip(w, target, strict=True)), 3, step=0.1)
    assert best == pytest.approx(target) and score == pytest.approx(0.0)
    two, _, trials2 = search(lambda w: -abs(w[0] - 0.8), 2, step=0.1)
    assert two == pytest.approx([0.8, 0.2]) and len(trials2) == 11  # two members: the whole grid, once


@pytest.fixture(scope="module")
def good_and_useless(tmp_path_factory):
    """A briefly trained model, the same model with its output rows permuted (confidently wrong), and dev files."""
    root = tmp_path_factory.mktemp("tune")
    overrides = ["data.builtin=numbers", "data.builtin_train=400", "data.builtin_valid=24", "data.max_tokens=600",
                 "model.d_model=32", "model.heads=2", "model.ffn_dim=64", "model.encoder.layers=1",
                 "model.decoder.layers=1", "model.dropout=0.0", "train.warmup_steps=5", "train.lr=0.005",
                 "train.max_steps=40", "train.eval_every=40", "model.tie_embeddings=false"]
    config = load_config(None, overrides, ExperimentConfig)
    with torch.random.fork_rng():
        torch.set_num_threads(1)
        result = train(config, root / "run")
    good = load_checkpoint(result.checkpoint)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        rows = good.model.output.weight
        rows.copy_(rows[torch.randperm(rows.shape[0], generator=generator)])
    useless = save_checkpoint(root / "useless", good.model, good.config, good.tokenizer)
    pairs = make_task("numbers", 10, 24).valid
    (root / "dev.src").write_text("".join(s + "\n" for s, _ in pairs))
    (root / "dev.ref").write_text("".join(t + "\n" for _, t in pairs))
    return result.checkpoint, useless, root


@pytest.mark.parametrize("purpose", ["ensemble", "merge"])
def test_the_useless_member_gets_weight_zero(good_and_useless, purpose):
    good, useless, root = good_and_useless
    result = tune_weights([useless, good], root / "dev.src", root / "dev.ref", metric="loss", purpose=purpose)
    assert result.weights == pytest.approx([0.0, 1.0], abs=0.1)
    equal = dict((tuple(w), s) for w, s in result.trials)[(0.5, 0.5)]
    assert result.score < equal  # lower loss than the untuned ensemble


def test_cli_tunes_on_dev_writes_json_and_refuses_test_data(good_and_useless, tmp_path):
    good, useless, root = good_and_useless
    out = tmp_path / "weights.json"
    done = run_entry("tune-weights", good, useless, "--src", root / "dev.src", "--ref", root / "dev.ref",
                     "--metric", "chrf", "--beam", "1", "--step", "0.25", "--out", out, "--quiet")
    assert done.returncode == 0, done.stderr
    saved = json.loads(out.read_text())
    assert saved["weights"][0] > 0.5 and saved["metric"] == "chrf" and len(saved["trials"]) == 5
    assert read_weights_file(out) == saved["weights"]
    tuned = run_entry("evaluate", good, useless, "--src", root / "dev.src", "--ref", root / "dev.ref",
                      "--metric", "chrf", "--beam", "1", "--weights", f"@{out}", "--json")
    assert tuned.returncode == 0, tuned.stderr
    assert json.loads(tuned.stdout)["score"] == pytest.approx(saved["score"])
    merged = run_entry("merge", "--method", "linear", good, useless, "--weights", f"@{out}", "--out",
                       tmp_path / "soup")
    assert merged.returncode == 0, merged.stderr
    again = run_entry("tune-weights", good, useless, "--src", root / "dev.src", "--ref", root / "dev.ref",
                      "--metric", "loss", "--out", out)
    assert_one_line_error(again, 2, "already exists", "--overwrite")

    test_src, test_ref = tmp_path / "test.src", tmp_path / "test.ref"
    test_src.write_text((root / "dev.src").read_text())
    test_ref.write_text((root / "dev.ref").read_text())
    refused = run_entry("tune-weights", good, useless, "--src", test_src, "--ref", test_ref, "--metric", "loss",
                        "--out", tmp_path / "w2.json")
    assert_one_line_error(refused, 2, "looks like test data", "--allow-test-data")
    assert not (tmp_path / "w2.json").exists()
    allowed = run_entry("tune-weights", good, useless, "--src", test_src, "--ref", test_ref, "--metric", "loss",
                        "--out", tmp_path / "w2.json", "--allow-test-data", "--step", "0.5")
    assert allowed.returncode == 0, allowed.stderr


def test_weights_file_errors(tmp_path):
    (tmp_path / "bad.json").write_text('{"weights": "0.5"}')
    with pytest.raises(DataError, match="expected"):
        read_weights_file(tmp_path / "bad.json")
    with pytest.raises(DataError, match="no such file"):
        read_weights_file(tmp_path / "missing.json")
    (tmp_path / "list.json").write_text("[1, 2.5]")
    assert read_weights_file(tmp_path / "list.json") == [1.0, 2.5]


def test_cli_refuses_language_models_and_unknown_metrics(tiny_checkpoint, tmp_path):
    lm_a, lm_b = tiny_checkpoint("decoder_lm", name="a"), tiny_checkpoint("decoder_lm", name="b")
    (tmp_path / "dev.src").write_text("one\n")
    (tmp_path / "dev.ref").write_text("eins\n")
    dev = ["--src", tmp_path / "dev.src", "--ref", tmp_path / "dev.ref", "--out", tmp_path / "w.json"]
    assert_one_line_error(run_entry("tune-weights", lm_a, lm_b, *dev, "--metric", "loss"), 2, "encoder_decoder")
    assert_one_line_error(run_entry("tune-weights", lm_a, lm_b, *dev, "--metric", "rouge"), 2, "bleu, chrf or loss")
    assert_one_line_error(run_entry("tune-weights", lm_a, *dev), 2, "at least two checkpoints")
    assert not (tmp_path / "w.json").exists()


def test_cli_refuses_different_vocabularies_and_a_grid_too_fine(tiny_checkpoint, tmp_path):
    a = tiny_checkpoint("encoder_decoder", name="a")
    b = tiny_checkpoint("encoder_decoder", name="b", vocab_size=120)
    (tmp_path / "dev.src").write_text("one\n")
    (tmp_path / "dev.ref").write_text("eins\n")
    dev = ["--src", tmp_path / "dev.src", "--ref", tmp_path / "dev.ref", "--out", tmp_path / "w.json"]
    assert_one_line_error(run_entry("tune-weights", a, b, *dev), 2, "different vocabularies", "vocab_size")
    with pytest.raises(ConfigError, match=r"--step must be in \[0.01, 0.5\]"):
        search(lambda w: 0.0, 2, step=1e-9)
