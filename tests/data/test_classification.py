"""Labeled documents: JSONL fields, label folders in a directory or a tar archive, label maps, errors."""

from __future__ import annotations

import io
import itertools
import json
import tarfile

import pytest

from hybridformer.data.classification import (
    _archive_members,
    classification_examples,
    label_names,
    read_documents,
    read_label_folders,
    read_labeled_jsonl,
)
from hybridformer.data.tokenizer import byte_tokenizer, encode, train_tokenizer
from hybridformer.errors import DataError
from tests.conftest import require_data

FILES = {"train/pos/1_9.txt": "great film", "train/pos/0_8.txt": "loved it", "train/neg/0_2.txt": "dull",
         "test/neg/0_1.txt": "awful", "test/pos/0_10.txt": "wonderful"}


def _write_tree(root, files=FILES):
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(text.encode() if isinstance(text, str) else text)
    return root


def _write_tar(path, files=FILES, top="corpus/"):
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo(top + "README")  # not a document: ignored
        archive.addfile(info, io.BytesIO(b""))
        for name, text in files.items():
            data = text.encode() if isinstance(text, str) else text
            info = tarfile.TarInfo(top + name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _summary(documents):
    return [(doc.label, doc.text) for doc in documents]


def test_folders_from_directory_and_archive_agree(tmp_path):
    tree = read_label_folders(_write_tree(tmp_path / "tree"), ["train", "test"])
    packed = read_label_folders(_write_tar(tmp_path / "corpus.tar.gz"), ["train", "test"])
    expected = [("neg", "dull"), ("pos", "loved it"), ("pos", "great film")]  # by label, then file name
    assert _summary(tree["train"]) == _summary(packed["train"]) == expected
    assert _summary(packed["test"]) == [("neg", "awful"), ("pos", "wonderful")]
    assert packed["train"][0].where.endswith("corpus.tar.gz:corpus/train/neg/0_2.txt")
    only_pos = read_label_folders(tmp_path / "tree", ["train"], labels=["pos"])["train"]
    assert {doc.label for doc in only_pos} == {"pos"}


def test_folder_errors_name_the_file(tmp_path):
    bad = dict(FILES, **{"train/neg/9_1.txt": b"ok\n\xff"})
    with pytest.raises(DataError, match=r"corpus\.tar\.gz:corpus/train/neg/9_1\.txt:2: invalid UTF-8"):
        read_label_folders(_write_tar(tmp_path / "corpus.tar.gz", bad), ["train"])
    with pytest.raises(DataError, match=r"9_1\.txt:2: invalid UTF-8"):
        read_label_folders(_write_tree(tmp_path / "tree", bad), ["train"])
    with pytest.raises(DataError, match=r"no documents in valid/<label>/\*\.txt; splits found: test, train"):
        read_label_folders(tmp_path / "tree", ["valid"])
    with pytest.raises(DataError, match="no such directory or archive"):
        read_label_folders(tmp_path / "missing", ["train"])
    (tmp_path / "broken.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match="broken.tar.gz: cannot read archive"):
        read_label_folders(tmp_path / "broken.tar.gz", ["train"])


def test_jsonl_fields_labels_and_errors(tmp_path):
    path = tmp_path / "docs.jsonl"
    rows = [{"review": "fine", "stars": 10}, {"review": "meh", "stars": 2}, {"review": "ok", "stars": 3}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    docs = read_labeled_jsonl(path, "review", "stars")
    assert [(d.label, d.text) for d in docs] == [("10", "fine"), ("2", "meh"), ("3", "ok")]
    assert label_names(d.label for d in docs) == ["2", "3", "10"]  # integers sort numerically
    assert label_names(["pos", "neg", "pos"]) == ["neg", "pos"]
    assert read_documents(path, format="auto", text_field="review", label_field="stars", labels=["2"])[0].text == "meh"
    path.write_text('{"review": "fine", "stars": 1}\n{"review": "x"}\n')
    with pytest.raises(DataError, match=r"docs\.jsonl:2: no label field 'stars' \(available: review\)"):
        read_labeled_jsonl(path, "review", "stars")
    path.write_text('{"review": "fine", "stars": [1]}\n')
    with pytest.raises(DataError, match=r"docs\.jsonl:1: label field 'stars' is list"):
        read_labeled_jsonl(path, "review", "stars")
    path.write_text('{"text": "a", "label": "x"}\n{broken\n')
    with pytest.raises(DataError, match=r"docs\.jsonl:2: invalid JSON"):
        read_labeled_jsonl(path)


def test_examples_truncate_drop_empty_and_reject_unknown_labels(tmp_path):
    docs = read_label_folders(_write_tree(tmp_path, dict(FILES, **{"train/neg/5_1.txt": ""})), ["train", "test"])
    tokenizer = byte_tokenizer()
    examples, report = classification_examples(docs["train"], tokenizer, ["neg", "pos"], max_len=4, source="train")
    assert [ex.label for ex in examples] == [0, 1, 1] and report.dropped_empty == 1
    assert examples[0].src == [b + 4 for b in b"dull"] and examples[1].src == [b + 4 for b in b"love"]
    assert report.notes == ["2 truncated to 4 tokens"]
    with pytest.raises(DataError, match=r"test/pos/0_10\.txt: label 'pos' is not one of the 1 training classes"):
        classification_examples(docs["test"], tokenizer, ["neg"], max_len=8, source="test")


def test_byte_tokenizer_round_trip_and_fast_path():
    tokenizer = byte_tokenizer()
    texts = ["plain ascii", "héllo wörld ✓ 😀", "specials stay text: <s> </s> <pad>", "", "tab\tnew\nline"]
    via_library = [enc.ids for enc in tokenizer.encode_batch(texts, add_special_tokens=False)]
    assert encode(tokenizer, texts) == via_library  # the direct byte path is the library's answer
    assert all(tokenizer.decode(ids) == text for ids, text in zip(via_library, texts, strict=True))
    assert tokenizer.get_vocab_size() == 260 and max(max(ids, default=4) for ids in via_library) < 260
    assert len(encode(tokenizer, ["é"])[0]) == 2  # bytes, not characters
    assert train_tokenizer(["anything"], kind="byte").to_str() == tokenizer.to_str()


def test_real_imdb_archive_layout():
    """The shared aclImdb archive streams as <split>/<label>/*.txt (only the first few members are read)."""
    archive = require_data("imdb", "aclImdb_v1_train_test.tar.gz")
    seen = 0
    for (split, label), where, read in itertools.islice(_archive_members(archive), 5):  # read before the next
        assert split in ("train", "test") and label in ("pos", "neg") and where.endswith(".txt")
        assert read().decode("utf-8").strip()
        seen += 1
    assert seen == 5


def test_a_flipped_byte_in_a_tar_gz_is_refused_not_half_read(tmp_path):
    import tarfile

    for label in ("pos", "neg"):
        (tmp_path / "docs" / "test" / label).mkdir(parents=True)
        for i in range(20):
            (tmp_path / "docs" / "test" / label / f"{i}.txt").write_text(f"{label} review number {i} " * 50)
    with tarfile.open(tmp_path / "docs.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "docs", arcname="docs")
    assert len(read_label_folders(tmp_path / "docs.tar.gz", ["test"], None)["test"]) == 40
    data = bytearray((tmp_path / "docs.tar.gz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "bad.tar.gz").write_bytes(bytes(data))
    with pytest.raises(DataError, match="bad.tar.gz: cannot read archive .CRC"):
        read_label_folders(tmp_path / "bad.tar.gz", ["test"], None)
