"""``hybridformer prune`` / ``quantize`` / ``bench compress`` end to end on a tiny checkpoint."""

from __future__ import annotations

import gzip
import json

import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from typer.testing import CliRunner

from hybridformer import ModelConfig, build_model, load_checkpoint, save_checkpoint
from hybridformer.cli import app
from hybridformer.compress import sparsity
from hybridformer.compress.data import text_batches
from hybridformer.decoding import ModelScorer, greedy_search
from hybridformer.errors import DataError

WORDS = "a dog runs in the park two men play ball ein hund läuft im zwei männer spielen".split()


def make_checkpoint(path):
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3} | {w: i + 4 for i, w in enumerate(WORDS)}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = Whitespace()
    config = ModelConfig(vocab_size=len(vocab), d_model=32, heads=4, ffn_dim=48, dropout=0.0,
                         encoder={"layers": 1}, decoder={"layers": 1})
    save_checkpoint(path, build_model(config), config, tokenizer)
    return path


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def decode(path):
    ckpt = load_checkpoint(path)
    scorer = ModelScorer(ckpt.model)
    src = torch.tensor([[5, 6, 7, 2]])
    return greedy_search(scorer, scorer.init_state(src), torch.tensor([[1]]), eos_id=2, max_new_tokens=4)


def test_prune_heads_with_data_then_quantize(tmp_path):
    base = make_checkpoint(tmp_path / "base")
    src, tgt = tmp_path / "val.de.gz", tmp_path / "val.en"
    with gzip.open(src, "wt", encoding="utf-8") as handle:
        handle.write("ein hund läuft im park\nzwei männer spielen ball\n")
    tgt.write_text("a dog runs in the park\ntwo men play ball\n")
    output = invoke("prune", base, "--heads", 0.5, "--data", src, "--data", tgt, "--out", tmp_path / "pruned")
    assert "gradient importance" in output
    pruned = load_checkpoint(tmp_path / "pruned")
    assert pruned.config.pruned_heads and pruned.meta["compression"][0]["importance"] == "gradient"
    assert pruned.tokenizer is not None
    invoke("quantize", tmp_path / "pruned", "--out", tmp_path / "int8")
    assert load_checkpoint(tmp_path / "int8").config.quantization == "dynamic_int8"
    assert len(decode(tmp_path / "int8")) == 1


def test_prune_sparsity(tmp_path):
    base = make_checkpoint(tmp_path / "base")
    invoke("prune", base, "--sparsity", 0.4, "--scope", "layer", "--out", tmp_path / "sparse")
    assert abs(sparsity(load_checkpoint(tmp_path / "sparse").model) - 0.4) < 0.01
    assert len(decode(tmp_path / "sparse")) == 1


def test_prune_needs_exactly_one_mode(tmp_path):
    base = make_checkpoint(tmp_path / "base")
    result = CliRunner().invoke(app, ["prune", str(base), "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "exactly one of --heads" in str(result.exception)


def test_bench_compress_writes_ratios(tmp_path):
    invoke("bench", "compress", "--set", "vocab_size=64", "--set", "d_model=32", "--set", "ffn_dim=64",
           "--set", "encoder.layers=1", "--set", "decoder.layers=1", "--batch-size", 2, "--src-len", 5,
           "--new-tokens", 3, "--repeats", 1, "--out", tmp_path)
    result = json.loads((tmp_path / "compress.json").read_text())
    assert set(result["variants"]) == {"float", "int8", "heads-50%", "heads-50%+int8"}
    assert result["variants"]["float"]["speedup"] == 1.0
    assert result["variants"]["heads-50%"]["numel"] < result["variants"]["float"]["numel"]


def test_data_that_does_not_fit_the_model_is_a_clear_error(tmp_path):
    ckpt = load_checkpoint(make_checkpoint(tmp_path / "base"))
    (tmp_path / "a.txt").write_text("a dog\ntwo men\n")
    (tmp_path / "b.txt").write_text("ein hund\n")
    with pytest.raises(DataError, match="different line counts"):
        text_batches(ckpt.tokenizer, ckpt.config, [tmp_path / "a.txt", tmp_path / "b.txt"])
    small = ckpt.config.model_copy(update={"vocab_size": 5})
    with pytest.raises(DataError, match="exceeds the model's vocab_size=5"):
        text_batches(ckpt.tokenizer, small, [tmp_path / "a.txt", tmp_path / "a.txt"])
