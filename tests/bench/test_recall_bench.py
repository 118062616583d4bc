"""``bench recall``: deterministic prompts of the asked length with the key where asked, the scoring rule on
hand cases, and the command on a tiny language model through the CLI."""

from __future__ import annotations

import json
import re

import pytest
from conftest import run_cli
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from hybridformer.bench.recall import HEADER, build_prompt, filler, recall_markdown, score_answer
from hybridformer.errors import ConfigError


@pytest.fixture(scope="module")
def tokenizer():
    """A byte-level BPE that has seen the filler, so prompt lengths in tokens are realistic."""
    import random

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    questions = "The pass key is 12345. Remember it. What is the pass key of the red door?"
    text = [HEADER + " ".join(filler(random.Random(i), 20)) + questions for i in range(50)]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=400, initial_alphabet=alphabet))
    return tok


def test_prompts_are_deterministic_and_vary_with_the_sample(tokenizer):
    first = build_prompt(tokenizer, "passkey", 300, 0.5, sample=0, seed=1)
    assert first == build_prompt(tokenizer, "passkey", 300, 0.5, sample=0, seed=1)
    other = build_prompt(tokenizer, "passkey", 300, 0.5, sample=1, seed=1)
    assert other.answer != first.answer and other.text != first.text
    assert re.fullmatch(r"\d{5}", first.answer) and re.findall(r"\d+", first.text) == [first.answer] * 2


@pytest.mark.parametrize(("task", "length"), [("passkey", 128), ("multikey", 512), ("passkey", 2048)])
def test_prompts_have_about_the_asked_length(tokenizer, task, length):
    tokens = len(tokenizer.encode(build_prompt(tokenizer, task, length, 0.3).text).ids)
    assert length - 12 <= tokens <= length  # cut at a sentence end, never past the length


def test_the_key_lies_at_the_asked_depth(tokenizer):
    start = build_prompt(tokenizer, "passkey", 256, 0.0)
    end = build_prompt(tokenizer, "passkey", 256, 1.0)
    assert start.text.startswith(HEADER + "The pass key is " + start.answer)
    assert end.text.endswith(f"{end.answer} is the pass key.\nWhat is the pass key? The pass key is")
    middle = build_prompt(tokenizer, "passkey", 1024, 0.5)
    assert 0.4 < middle.text.index(middle.answer) / len(middle.text) < 0.6


def test_multikey_hides_distinct_keys_and_asks_for_one(tokenizer):
    prompt = build_prompt(tokenizer, "multikey", 512, 0.25, keys=5)
    numbers = re.findall(r"\d+", prompt.text)
    assert len(set(numbers)) == 5 and prompt.answer in numbers
    asked = re.search(r"What is the pass key of the (\w+) door\?", prompt.text).group(1)
    assert f"The pass key of the {asked} door is {prompt.answer}." in prompt.text
    with pytest.raises(ConfigError, match="--keys"):
        build_prompt(tokenizer, "multikey", 512, 0.25, keys=1)
    with pytest.raises(ConfigError, match="depth"):
        build_prompt(tokenizer, "passkey", 512, 1.5)


def test_an_answer_counts_when_its_first_number_is_the_key():
    assert score_answer(" 71432. Remember it.", "71432")
    assert score_answer(" the pass key is 71432", "71432")
    assert not score_answer(" 7143", "71432")  # a prefix is not the key
    assert not score_answer(" 714321", "71432")  # nor a longer number
    assert not score_answer(" 12, no: 71432", "71432")  # the first number decides
    assert not score_answer(" a key that is used to create a", "71432")


def test_the_table_sums_cells_by_length():
    cell = {"task": "passkey", "status": "ok", "total": 2, "median_s": 1.0, "peak_mib": 10.0}
    result = {"checkpoint": "m", "samples": 2, "threads": 1, "device": "cpu", "tasks": ["passkey"],
              "lengths": [1000, 2000], "depths": [0.0, 1.0], "keys": 4,
              "cells": [cell | {"length": 1000, "depth": 0.0, "correct": 2},
                        cell | {"length": 1000, "depth": 1.0, "correct": 1, "peak_mib": 30.0},
                        cell | {"length": 2000, "depth": 0.0, "correct": 0},
                        {"task": "passkey", "length": 2000, "depth": 1.0, "status": "too long"}]}
    table = recall_markdown(result)
    assert "| 0 | 2/2 | 0/2 |" in table and "| 1 | 1/2 | too long |" in table
    assert "| **all** | 75% · 1.0 s · 30 MiB | 0% · 1.0 s · 10 MiB |" in table


def test_bench_recall_runs_on_a_tiny_model_through_the_cli(monkeypatch, capsys, tiny_checkpoint, tmp_path):
    ckpt = tiny_checkpoint("decoder_lm", position="rope", max_positions=256)
    args = ["bench", "recall", ckpt, "--tasks", "passkey,multikey", "--lengths", "96,160", "--depths", "0,1",
            "--samples", "1", "--keys", "2", "--max-new-tokens", "3", "--out", tmp_path / "out"]
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    result = json.loads((tmp_path / "out" / "recall.json").read_text())
    assert len(result["cells"]) == 2 * 2 * 2 and all(c["status"] == "ok" for c in result["cells"])
    assert all(c["total"] == 1 and len(c["outputs"]) == 1 and c["median_s"] > 0 for c in result["cells"])
    assert (tmp_path / "out" / "recall.png").stat().st_size > 0 and "**multikey** (2 keys)" in out
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2 and "--overwrite" in err
    code, _, err = run_cli(monkeypatch, capsys, *args[:-2], "--tasks", "needle", "--out", tmp_path / "o2")
    assert code == 2 and "needle" in err
