"""``hybridformer embed`` on a tiny converted BERT with a WordPiece tokenizer: JSON lines and .npy output,
mean and CLS pooling, normalisation, all equal to transformers' embeddings; bad input is one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_TEXT, assert_one_line_error, run_entry

from hybridformer.interop import convert

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> tuple[object, object, Path]:
    """(transformers BertModel, its tokenizer, our converted checkpoint)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    root = tmp_path_factory.mktemp("embed")
    words = sorted({w for line in TINY_TEXT for w in line.split()})
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words])}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tokenizer.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    torch.manual_seed(0)
    hf = transformers.BertModel(transformers.BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=40, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=0),
        add_pooling_layer=False).eval()
    hf.save_pretrained(root / "hf")
    tokenizer.save(str(root / "hf" / "tokenizer.json"))
    (root / "hf" / "tokenizer_config.json").write_text(json.dumps(
        {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]"}))
    return hf, tokenizer, convert(root / "hf", root / "ours")


def reference(hf, tokenizer, texts: list[str], pool: str) -> torch.Tensor:
    """transformers' embeddings of ``texts``: a padded batch, mean over the attention mask or the [CLS] state."""
    rows = [tokenizer.encode(t).ids for t in texts]
    ids = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
    mask = ids.ne(0)
    with torch.no_grad():
        states = hf(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    if pool == "cls":
        return states[:, 0]
    keep = mask.unsqueeze(-1).float()
    return (states * keep).sum(1) / keep.sum(1)


def cosines(ours: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(ours, ref, dim=-1)


def test_jsonl_on_stdout_matches_transformers_mean_pooling(bert, tmp_path: Path) -> None:
    hf, tokenizer, ckpt = bert
    run = run_entry("embed", ckpt, "--input", "-", "--batch-size", "3", input="\n".join(TINY_TEXT) + "\n")
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line)["embedding"] for line in run.stdout.splitlines()]
    ours, ref = torch.tensor(rows), reference(hf, tokenizer, TINY_TEXT, "mean")
    assert ours.shape == (len(TINY_TEXT), 32)
    assert cosines(ours, ref).min() >= 0.9999 and (ours - ref).abs().max() < 1e-4


def test_npy_output_cls_pooling_normalized(bert, tmp_path: Path) -> None:
    hf, tokenizer, ckpt = bert
    text = tmp_path / "sentences.txt"
    text.write_text("\n".join(TINY_TEXT) + "\n")
    run = run_entry("embed", ckpt, "--input", text, "--output", tmp_path / "vectors.npy", "--pool", "cls",
                    "--normalize")
    assert run.returncode == 0, run.stderr
    ours = torch.from_numpy(np.load(tmp_path / "vectors.npy"))
    assert ours.dtype == torch.float32 and ours.shape == (len(TINY_TEXT), 32)
    assert torch.allclose(ours.norm(dim=-1), torch.ones(len(TINY_TEXT)), atol=1e-5)
    assert cosines(ours, reference(hf, tokenizer, TINY_TEXT, "cls")).min() >= 0.9999
    again = run_entry("embed", ckpt, "--input", text, "--output", tmp_path / "vectors.npy")
    assert_one_line_error(again, 2, "--overwrite")
    run = run_entry("embed", ckpt, "--input", text, "--output", tmp_path / "vectors.jsonl")
    assert run.returncode == 0 and len((tmp_path / "vectors.jsonl").read_text().splitlines()) == len(TINY_TEXT)


def test_bad_input_is_one_line(bert, tmp_path: Path) -> None:
    _, _, ckpt = bert
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert_one_line_error(run_entry("embed", ckpt, "--input", empty), 2, "empty input")
    assert_one_line_error(run_entry("embed", ckpt, "--input", "-", "--pool", "max", input="x\n"), 2, "--pool")
    assert_one_line_error(run_entry("embed", tmp_path / "nothing", "--input", "-", input="x\n"), 2)
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_huge_line_is_cut_at_max_positions_exactly_and_fast(tiny_checkpoint) -> None:
    import time

    from hybridformer import embed, load_checkpoint
    from hybridformer.embed import _first_tokens

    ckpt = load_checkpoint(tiny_checkpoint("encoder_classifier", position="sinusoidal", max_positions=32))
    tokenizer = ckpt.tokenizer
    medium = " ".join(TINY_TEXT) * 20
    assert _first_tokens(tokenizer, medium, 32) == tokenizer.encode(medium).ids[:32]  # the prefix changes nothing
    started = time.process_time()
    vectors = embed(ckpt, ["the cat sat on the mat " * 450_000])  # about 10 MB
    assert vectors.shape == (1, ckpt.config.d_model) and time.process_time() - started < 20
