"""A Marian folder with only sentencepiece files (source.spm, target.spm, vocab.json; no tokenizer.json)
converts: its tokenizer gives MarianTokenizer's ids, and `hybridformer generate` gives transformers' output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import TINY_TEXT, assert_one_line_error, run_entry

transformers = pytest.importorskip("transformers")
spm = pytest.importorskip("sentencepiece")
pytest.importorskip("google.protobuf")

ENGLISH, GERMAN = TINY_TEXT[:4], TINY_TEXT[4:]


@pytest.fixture(scope="module")
def marian(tmp_path_factory) -> tuple[Path, object, object]:
    """(folder, transformers MarianMTModel, MarianTokenizer): separate source/target sentencepiece models,
    one shared vocab.json (Marian's layout: </s> 0, <unk> 1, ..., <pad> last)."""
    folder = tmp_path_factory.mktemp("marian") / "hf"
    folder.mkdir()
    for name, lines in (("source", ENGLISH), ("target", GERMAN)):
        spm.SentencePieceTrainer.train(sentence_iterator=iter(lines * 5), model_prefix=str(folder / name),
                                       vocab_size=40, model_type="unigram", character_coverage=1.0,
                                       hard_vocab_limit=False, minloglevel=2)
        (folder / f"{name}.model").rename(folder / f"{name}.spm")
    pieces: list[str] = []
    for name in ("source", "target"):
        processor = spm.SentencePieceProcessor(model_file=str(folder / f"{name}.spm"))
        pieces += [p for p in map(processor.id_to_piece, range(processor.get_piece_size()))
                   if p not in pieces and p not in ("<unk>", "<s>", "</s>")]
    vocab = {"</s>": 0, "<unk>": 1} | {p: i + 2 for i, p in enumerate(pieces)}
    vocab["<pad>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    torch.manual_seed(0)
    model = transformers.MarianMTModel(transformers.MarianConfig(
        vocab_size=len(vocab), decoder_vocab_size=len(vocab), d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48,
        max_position_embeddings=64, pad_token_id=vocab["<pad>"], decoder_start_token_id=vocab["<pad>"],
        eos_token_id=0)).eval()
    model.save_pretrained(folder)
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>", "unk_token": "<unk>",
                                                              "pad_token": "<pad>"}))
    tokenizer = transformers.MarianTokenizer(str(folder / "source.spm"), str(folder / "target.spm"),
                                             str(folder / "vocab.json"))
    return folder, model, tokenizer


def test_sentencepiece_folder_converts_with_marians_ids(marian, tmp_path: Path) -> None:
    folder, hf, reference = marian
    assert not (folder / "tokenizer.json").exists()
    run = run_entry("convert", folder, "--out", tmp_path / "ours")
    assert run.returncode == 0, run.stderr
    from hybridformer import load_checkpoint
    from hybridformer.data.text import encode_source

    ckpt = load_checkpoint(tmp_path / "ours")
    # source sentences, extra spaces, German (characters source.spm lacks: single ones map to vocab.json as
    # Marian does), an empty line
    texts = [*ENGLISH, "  the  cat   sat ", "the zebra sang", "a good dog", ""]
    for text in texts:
        assert encode_source(ckpt.tokenizer, text, ckpt.config) == reference(text).input_ids, text
    for line in GERMAN:  # target pieces decode to their text
        ids = reference(text_target=line).input_ids
        assert ckpt.tokenizer.decode(ids, skip_special_tokens=True) == reference.decode(ids, skip_special_tokens=True)

    src = ENGLISH[1]
    out = run_entry("generate", tmp_path / "ours", "--input", "-", "--beam", "1", "--max-len-a", "0",
                    "--max-len-b", "10", input=src + "\n")
    assert out.returncode == 0, out.stderr
    cfg = ckpt.config
    ids = torch.tensor([reference(src).input_ids])
    with torch.no_grad():
        ref = hf.generate(input_ids=ids, max_new_tokens=10, do_sample=False, num_beams=1, min_length=0,
                          suppress_tokens=[cfg.pad_id], bad_words_ids=None, forced_eos_token_id=None)
    expected = reference.decode(ref[0], skip_special_tokens=True).strip()
    assert expected and out.stdout.strip() == expected  # a real output, not two empty lines


def test_missing_vocab_is_one_line(marian, tmp_path: Path) -> None:
    folder, _, _ = marian
    copy = tmp_path / "copy"
    copy.mkdir()
    for file in folder.iterdir():
        if file.name != "vocab.json":
            (copy / file.name).write_bytes(file.read_bytes())
    assert_one_line_error(run_entry("convert", copy, "--out", tmp_path / "out"), 2, "vocab.json")
