"""Corrupt compressed input is one line naming the file, exit 2, never a traceback (issue 17).

Before: a gz file whose deflate stream is damaged raised ``zlib.error`` (train, tokenizer train),
and a truncated ``.tar.gz`` raised ``tarfile.ReadError`` while a member was being read.
"""

from __future__ import annotations

import gzip
import random

import pytest
import yaml

from hybridformer.data.classification import read_label_folders
from hybridformer.data.text import read_lines
from hybridformer.errors import DataError
from tests.conftest import assert_one_line_error, run_entry
from tests.data.test_classification import _write_tar


def _corrupt_gz(path):
    """A gzip file whose header is fine but whose compressed stream is damaged."""
    rng = random.Random(0)
    text = "".join(f"line {i} {rng.random()}\n" for i in range(2000)).encode()
    data = bytearray(gzip.compress(text))
    for i in range(30, 60):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def _truncated_tar(path):
    rng = random.Random(0)  # incompressible text, so the cut falls inside a member
    docs = {f"train/{label}/{i}.txt": "".join(rng.choice("abcdefgh ") for _ in range(2000))
            for label in ("neg", "pos") for i in range(20)}
    _write_tar(path, docs)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    return path


def test_corrupt_gz_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="bad.gz: cannot read"):
        read_lines(_corrupt_gz(tmp_path / "bad.gz"))


def test_tokenizer_train_on_corrupt_gz_is_one_line(tmp_path):
    result = run_entry("tokenizer", "train", _corrupt_gz(tmp_path / "bad.gz"), "--vocab-size", "300",
                       "--out", tmp_path / "tok.json")
    assert_one_line_error(result, 2, "bad.gz", "cannot read")


def test_train_on_corrupt_gz_is_one_line(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("a b c\n" * 2000)
    recipe = {"model": {"d_model": 16, "heads": 2, "ffn_dim": 32, "encoder": {"layers": 1}, "decoder": {"layers": 1}},
              "data": {"train_src": str(_corrupt_gz(tmp_path / "bad.gz")), "train_tgt": str(good),
                       "valid_src": str(good), "valid_tgt": str(good)},
              "train": {"max_steps": 1}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    result = run_entry("train", tmp_path / "recipe.yaml", "--out", tmp_path / "run", "--no-progress")
    assert_one_line_error(result, 2, "bad.gz", "cannot read")


def test_truncated_archive_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="short.tar.gz: cannot read archive"):
        read_label_folders(_truncated_tar(tmp_path / "short.tar.gz"), ["train"])


def test_classifier_training_on_truncated_archive_is_one_line(tmp_path):
    recipe = {"model": {"arch": "encoder_classifier", "d_model": 16, "heads": 2, "ffn_dim": 32,
                        "encoder": {"layers": 1}},
              "data": {"format": "folders", "train_file": str(_truncated_tar(tmp_path / "short.tar.gz")),
                       "tokenizer_kind": "byte", "max_src_len": 64},
              "train": {"max_steps": 1}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    result = run_entry("train", tmp_path / "recipe.yaml", "--out", tmp_path / "run", "--no-progress")
    assert_one_line_error(result, 2, "short.tar.gz", "cannot read archive")
