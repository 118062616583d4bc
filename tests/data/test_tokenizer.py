from __future__ import annotations

import gzip

import pytest

from hybridformer.data.tokenizer import (
    BOS,
    EOS,
    PAD,
    RESERVED,
    char_tokenizer,
    decode,
    encode,
    load_tokenizer_file,
    train_tokenizer,
    train_tokenizer_files,
)
from hybridformer.errors import ConfigError
from tests.conftest import require_data

TEXT = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog", "  two  spaces here "] * 20


def test_bpe_round_trip_and_byte_fallback():
    tok = train_tokenizer(TEXT, 300)
    assert (tok.token_to_id("<pad>"), tok.token_to_id("<s>"), tok.token_to_id("</s>")) == (PAD, BOS, EOS)
    assert tok.get_vocab_size() <= 300
    for text in TEXT[:4] + ["unseen: Grüße, 東京 ☃ \t tab", ""]:
        ids = encode(tok, [text])[0]
        assert tok.token_to_id("<unk>") not in ids
        assert decode(tok, ids) == text
    # an unseen character is spelled in UTF-8 bytes, never <unk>
    assert tok.encode("☃").tokens[-3:] == ["<0xE2>", "<0x98>", "<0x83>"]
    # learned merges actually compress known words
    assert len(encode(tok, ["the cat sat"])[0]) <= 4


def test_char_tokenizer_round_trip_with_newlines():
    tok = train_tokenizer(["First Citizen:\nBefore we proceed"], kind="char")
    text = "Before we\nproceed, Ωmega"
    ids = encode(tok, [text])[0]
    assert decode(tok, ids) == text
    assert len(ids) == len(text) + 1  # one id per known character, two UTF-8 bytes for the unseen 'Ω'
    assert tok.get_vocab_size() == RESERVED + len(set("First Citizen:\nBefore we proceed"))


def test_vocab_too_small_is_config_error():
    with pytest.raises(ConfigError, match="reserved"):
        train_tokenizer(TEXT, 100)


def test_round_trip_on_real_text(tmp_path):
    path = require_data("multi30k", "train.de.gz")
    lines = gzip.open(path, "rt", encoding="utf-8").read().splitlines()[:300]
    sample = tmp_path / "sample.de"
    sample.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tok = train_tokenizer_files([sample], 600)
    tok.save(str(tmp_path / "tok.json"))
    loaded = load_tokenizer_file(tmp_path / "tok.json")
    ids = encode(loaded, lines)
    assert [decode(loaded, i) for i in ids] == lines
    assert sum(map(len, ids)) < sum(map(len, lines)) / 2  # real subwords, not characters


def test_char_task_tokenizer_knows_its_alphabet():
    tok = char_tokenizer("abc")
    assert tok.encode("abc").ids == [RESERVED, RESERVED + 1, RESERVED + 2]
