from __future__ import annotations

from hybridformer.data.tasks import make_task, number_to_words
from hybridformer.data.tokenizer import decode, encode


def test_number_words_hand_checked():
    assert number_to_words(0) == "zero"
    assert number_to_words(15) == "fifteen"
    assert number_to_words(40) == "forty"
    assert number_to_words(1204) == "one thousand two hundred four"
    assert number_to_words(7_000_019) == "seven million nineteen"


def test_task_is_deterministic_disjoint_and_tokenizable(tmp_path):
    a, b = make_task("numbers", 200, 20, seed=3), make_task("numbers", 200, 20, seed=3)
    assert a.train == b.train and a.valid == b.valid
    assert make_task("numbers", 200, 20, seed=4).train != a.train
    sources = [s for s, _ in a.train + a.valid + a.test]
    assert len(sources) == len(set(sources)) == 240
    unk = a.tokenizer.token_to_id("<unk>")
    for src, tgt in a.train:
        for text in (src, tgt):
            ids = encode(a.tokenizer, [text])[0]
            assert unk not in ids and max(ids) >= 260 and decode(a.tokenizer, ids) == text
    paths = a.write(tmp_path)
    assert paths["train_src"].read_text().splitlines() == [s for s, _ in a.train]
    rev = make_task("reverse", 50, 5)
    assert all(t == s[::-1] for s, t in rev.train)
