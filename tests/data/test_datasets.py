from __future__ import annotations

import gzip
import json

import pytest

from hybridformer import ModelConfig
from hybridformer.data.datasets import lm_examples, read_jsonl, read_parallel, seq2seq_examples, split_text
from hybridformer.data.text import read_lines
from hybridformer.data.tokenizer import BOS, EOS, char_tokenizer
from hybridformer.errors import DataError

TOK = char_tokenizer("abcdefghijklmnopqrstuvwxyz \n")
CFG = ModelConfig()  # the toolkit's own ids: <pad>=0, <s>=1, </s>=2


def test_gzip_and_crlf(tmp_path):
    path = tmp_path / "a.txt.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(b"one\r\ntwo\r\n")
    assert read_lines(path) == ["one", "two"]


def test_invalid_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"fine\nalso fine\nbroken \xff here\n")
    with pytest.raises(DataError, match=r"bad\.txt:3: invalid UTF-8"):
        read_lines(path)


def test_mismatched_parallel_files_name_both_counts(tmp_path):
    (tmp_path / "s").write_text("a\nb\nc\n")
    (tmp_path / "t").write_text("a\nb\n")
    with pytest.raises(DataError, match=r"s has 3 lines.*t has 2"):
        read_parallel(tmp_path / "s", tmp_path / "t")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_lines(tmp_path / "nope.txt")


def test_jsonl_fields_errors_and_lists(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"source": ["two", "sentences"], "target": ["first tldr", "second"]}, {"source": "x", "target": ["y"]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    assert read_jsonl(path, ("source", "target.0")) == [("two sentences", "first tldr"), ("x", "y")]
    with pytest.raises(DataError, match=r"d\.jsonl:1: no field 'summary' \(available: source, target\)"):
        read_jsonl(path, ("source", "summary"))
    path.write_text('{"source": "a", "target": "b"}\n{oops\n')
    with pytest.raises(DataError, match=r"d\.jsonl:2: invalid JSON"):
        read_jsonl(path, ("source", "target"))


def test_empty_and_long_pairs_are_dropped_and_counted():
    pairs = [("abc", "de"), ("", "x"), ("y", "  "), ("a" * 50, "b"), ("ok", "fine")]
    examples, report = seq2seq_examples(pairs, TOK, max_src_len=10, max_tgt_len=10, source="t", config=CFG)
    assert (report.read, report.kept, report.dropped_empty, report.dropped_long) == (5, 2, 2, 1)
    assert "dropped 2 empty, 1 longer" in report.summary()
    first = examples[0]
    assert first.src[-1] == EOS and first.tgt_in[0] == BOS and first.tgt_out[-1] == EOS
    assert first.tgt_in[1:] == first.tgt_out[:-1]


def test_lm_blocks_are_shifted_by_one():
    text = "abcdefghij\n" * 3
    examples, report = lm_examples(text, TOK, block_size=8, source="lm", config=CFG)
    assert report.kept == len(examples) == (len(text) + 1 - 1) // 8
    for ex in examples:
        assert len(ex.tgt_in) == len(ex.tgt_out) == 8 and ex.src == []
        assert ex.tgt_in[1:] == ex.tgt_out[:-1]
    assert examples[0].tgt_in[0] == BOS and examples[1].tgt_in[0] == examples[0].tgt_out[-1]
    with pytest.raises(DataError, match="less than one block"):
        lm_examples("ab", TOK, block_size=8, source="lm", config=CFG)


def test_split_text_at_line_break():
    train, valid = split_text("aaaa\nbbbb\ncccc\ndddd\n", 0.25)
    assert train + valid == "aaaa\nbbbb\ncccc\ndddd\n" and train.endswith("\n") and valid


def test_special_ids_come_from_the_model_config():
    """A converted T5 starts its decoder from pad (0) and ends with EOS 1; BART frames sources <s> ... </s>."""
    from tokenizers import processors

    t5 = ModelConfig(pad_id=0, eos_id=1, bos_id=1, decoder_start_id=0)
    (ex,), _ = seq2seq_examples([("abc", "de")], TOK, max_src_len=10, max_tgt_len=10, source="t", config=t5)
    assert ex.src[-1] == 1 and ex.tgt_in[0] == 0 and ex.tgt_out[-1] == 1 and ex.tgt_in[1:] == ex.tgt_out[:-1]
    framed = TOK.from_str(TOK.to_str())
    framed.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 1),
                                                                                             ("</s>", 2)])
    (ex,), _ = seq2seq_examples([("abc", "de")], framed, max_src_len=5, max_tgt_len=10, source="t", config=CFG)
    assert ex.src == [1, *TOK.encode("abc").ids, 2]  # the post-processor's framing, EOS not doubled
    gpt2 = ModelConfig(arch="decoder_lm", vocab_size=TOK.get_vocab_size(), pad_id=TOK.get_vocab_size(), bos_id=2,
                       eos_id=2)
    examples, _ = lm_examples("abcdefghij\n" * 3, TOK, block_size=8, source="lm", config=gpt2)
    assert examples[0].tgt_in[0] == 2
