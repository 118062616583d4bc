"""Metrics against their reference implementations: sacreBLEU's own CLI, rouge-score, hand-computed perplexity."""

from __future__ import annotations

import gzip
import json
import math
import shutil
import subprocess

import pytest
import torch
from conftest import TINY_TEXT, require_data

from hybridformer import evaluate, load_checkpoint
from hybridformer.errors import ConfigError
from hybridformer.metrics import _bounded_state, bleu, chrf, rouge, split_sentences, token_nll

REFS = ["Der Hund läuft über die Wiese.", "Ein Mann fährt Fahrrad, schnell!", "Zwei Kinder spielen im Park.",
        "Eine Frau liest ein Buch am Fenster.", "Das ist gut."]
HYPS = ["Der Hund rennt über die Wiese.", "Ein Mann fährt Rad schnell !", "Zwei Kinder spielen in dem Park.",
        "Eine Frau liest am Fenster ein Buch.", "Das ist sehr gut."]


def sacrebleu_cli(tmp_path, hyps, refs) -> dict[str, dict]:
    if shutil.which("sacrebleu") is None:
        pytest.skip("the sacrebleu command is not on PATH")
    (tmp_path / "hyp.txt").write_text("\n".join(hyps) + "\n")
    (tmp_path / "ref.txt").write_text("\n".join(refs) + "\n")
    out = subprocess.run(["sacrebleu", str(tmp_path / "ref.txt"), "-i", str(tmp_path / "hyp.txt"),
                          "-m", "bleu", "chrf", "-f", "json", "-w", "4"], capture_output=True, text=True, check=True)
    return {entry["name"]: entry for entry in json.loads(out.stdout)}


def check_against_cli(tmp_path, hyps, refs):
    cli = sacrebleu_cli(tmp_path, hyps, refs)
    ours_bleu, ours_chrf = bleu(hyps, refs), chrf(hyps, refs)
    assert ours_bleu.score == pytest.approx(cli["BLEU"]["score"], abs=1e-4)
    assert ours_bleu.signature == cli["BLEU"]["signature"]
    assert ours_chrf.score == pytest.approx(cli["chrF2"]["score"], abs=1e-4)
    assert ours_chrf.signature == cli["chrF2"]["signature"]
    assert 0 < ours_bleu.score < 100


def test_bleu_and_chrf_match_the_sacrebleu_cli(tmp_path):
    check_against_cli(tmp_path, HYPS, REFS)


def test_bleu_and_chrf_match_the_cli_on_multi30k(tmp_path):
    with gzip.open(require_data("multi30k", "val.de.gz"), "rt", encoding="utf-8") as handle:
        refs = [line.rstrip("\n") for _, line in zip(range(200), handle, strict=False)]
    hyps = [" ".join(w for i, w in enumerate(line.split()) if i % 4 != 3) for line in refs]  # drop every 4th word
    check_against_cli(tmp_path, hyps, refs)


def test_rouge_matches_rouge_score():
    from rouge_score import rouge_scorer

    result = rouge(HYPS, REFS)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    for name in ("rouge1", "rouge2", "rougeL", "rougeLsum"):  # one sentence per line: Lsum splits nothing more
        expected = 100 * sum(scorer.score(r, h)[name].fmeasure for h, r in zip(HYPS, REFS, strict=True)) / len(REFS)
        assert result.details[name] == pytest.approx(expected, abs=1e-9)
    assert result.score == result.details["rougeLsum"]
    assert "stemmer:yes" in result.signature and "headline:rougeLsum|split:rule" in result.signature


def test_split_sentences():
    text = 'Dr. Smith left at 3.30 p.m. yesterday. He said "no!" Then e.g. Fig. 2 (see U.S. data). ok ?\nnext line'
    assert split_sentences(text) == ["Dr. Smith left at 3.30 p.m. yesterday.", 'He said "no!"',
                                     "Then e.g. Fig. 2 (see U.S. data).", "ok ?", "next line"]
    assert split_sentences("the team met . they agreed .") == ["the team met .", "they agreed ."]
    assert split_sentences("  ") == []


def test_rouge_lsum_scores_over_sentences():
    """Summary-level LCS: reordered sentences keep their full LCS, unlike sentence-level ROUGE-L."""
    ref = "The cat sat on the mat. The dog barked at the cat."
    hyp = "The dog barked at the cat. The cat sat on the mat."
    result = rouge([hyp], [ref])
    assert result.details["rougeLsum"] == pytest.approx(100.0)
    assert result.details["rougeL"] < 70


def test_rouge_reproduces_the_published_qmsum_hmnet_scores():
    """QMSum's released HMNet outputs score 36.51 / 11.41 / 31.60 (R-1 / R-2 / R-L) in its README."""
    folder = require_data("qmsum", "hmnet_gold_output")
    preds = (folder / "preds.txt").read_text(encoding="utf-8").splitlines()
    refs = (folder / "refs.txt").read_text(encoding="utf-8").splitlines()
    details = rouge(preds, refs).details
    assert details["rouge1"] == pytest.approx(36.51, abs=0.5)
    assert details["rouge2"] == pytest.approx(11.41, abs=0.5)
    assert details["rougeLsum"] == pytest.approx(31.60, abs=0.5)


def uniform(path):
    """The checkpoint at ``path`` with its output layer zeroed: every token equally likely."""
    ckpt = load_checkpoint(path)
    ckpt.model.output = torch.nn.Linear(ckpt.config.d_model, ckpt.config.vocab_size, bias=False)
    torch.nn.init.zeros_(ckpt.model.output.weight)
    return ckpt


@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder_lm"])
def test_perplexity_of_a_uniform_model_is_the_vocabulary_size(tiny_checkpoint, arch):
    ckpt = uniform(tiny_checkpoint(arch))
    src = TINY_TEXT if arch == "encoder_decoder" else None
    result = evaluate(ckpt, src, TINY_TEXT, metric="ppl", context=7)
    vocab = ckpt.config.vocab_size
    assert result.score == pytest.approx(vocab, rel=1e-5)
    assert result.details["bits_per_token"] == pytest.approx(math.log2(vocab), rel=1e-5)
    total_bits = result.details["bits_per_token"] * result.details["tokens"]
    assert result.details["bits_per_char"] == pytest.approx(total_bits / result.details["chars"], rel=1e-6)


def test_seq2seq_perplexity_is_teacher_forced_cross_entropy(tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint())
    tok, cfg = ckpt.tokenizer, ckpt.config
    nll, count = 0.0, 0
    with torch.no_grad():
        for src_line, ref_line in zip(TINY_TEXT, TINY_TEXT[::-1], strict=True):  # one pair at a time, no padding
            src = torch.tensor([tok.encode(src_line, add_special_tokens=False).ids + [cfg.eos_id]])
            ids = tok.encode(ref_line, add_special_tokens=False).ids
            logits = ckpt.model(src, torch.tensor([[cfg.bos_id] + ids]))
            labels = torch.tensor(ids + [cfg.eos_id])
            nll += float(torch.nn.functional.cross_entropy(logits[0], labels, reduction="sum"))
            count += len(ids) + 1
    result = evaluate(ckpt, TINY_TEXT, TINY_TEXT[::-1], metric="ppl", batch_tokens=64)  # padded batches
    assert result.details["tokens"] == count
    assert result.score == pytest.approx(math.exp(nll / count), rel=1e-4)


@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder_lm"])
@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_chunked_perplexity_equals_the_unchunked_value(tiny_checkpoint, arch, chunk):
    """token_nll projects a few positions at a time; the sum equals cross-entropy over all logits at once."""
    ckpt = load_checkpoint(tiny_checkpoint(arch))
    inputs, labels = torch.randint(4, 40, (2, 9)), torch.randint(4, 40, (2, 9))
    labels[1, 6:] = -100  # a shorter row's padding is not scored
    src = torch.randint(4, 40, (2, 5)) if arch == "encoder_decoder" else None
    with torch.no_grad():
        logits = ckpt.model(src, inputs) if src is not None else ckpt.model(inputs)
    whole = float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="sum"))
    assert token_nll(ckpt.model, inputs, labels, -100, src=src, chunk=chunk) == pytest.approx(whole, rel=1e-6)


def test_evaluate_scores_what_generate_outputs(tiny_checkpoint):
    from hybridformer import generate

    path = tiny_checkpoint()
    outputs = list(generate(path, TINY_TEXT, beam=2, max_len_b=5))
    result = evaluate(path, TINY_TEXT, outputs, metric="chrf", beam=2, max_len_b=5)
    assert result.score == pytest.approx(100.0)  # the references are the outputs themselves
    assert evaluate(path, TINY_TEXT, TINY_TEXT, metric="chrf", beam=2, max_len_b=5).score < 100.0


@pytest.mark.parametrize("context", [1000, 5])
def test_lm_perplexity_scores_the_stream_in_blocks(tiny_checkpoint, context):
    ckpt = load_checkpoint(tiny_checkpoint("decoder_lm"))
    ids = torch.tensor(ckpt.tokenizer.encode("\n".join(TINY_TEXT) + "\n", add_special_tokens=False).ids)
    nll = 0.0
    with torch.no_grad():
        for start in range(0, len(ids) - 1, context):  # each block predicts its tokens from its own past
            block = ids[start : start + context + 1]
            logits = ckpt.model(block[None, :-1])[0]
            nll += float(torch.nn.functional.cross_entropy(logits, block[1:], reduction="sum"))
    result = evaluate(ckpt, None, TINY_TEXT, metric="ppl", context=context)
    assert result.details["tokens"] == len(ids) - 1
    assert result.score == pytest.approx(math.exp(nll / (len(ids) - 1)), rel=1e-4)


def test_moses_lc_bleu_matches_a_hand_computed_case():
    """Lowercased Moses tokens: 'Schnee.' -> 'schnee .', 'Mann,' -> 'mann ,'. Matched / total n-grams over both
    lines: 1-grams 10/11, 2-grams 5/9, 3-grams 3/7, 4-grams 2/5; 11 hypothesis and 13 reference tokens."""
    hyps = ["zwei Hunde spielen im Schnee!", "Ein Mann fährt Fahrrad."]
    refs = ["Zwei Hunde spielen im Schnee.", "Ein Mann, der Fahrrad fährt."]
    result = bleu(hyps, refs, tokenize="moses-lc", lang="de")
    expected = 100 * math.exp(1 - 13 / 11) * (10 / 11 * 5 / 9 * 3 / 7 * 2 / 5) ** 0.25
    assert result.score == pytest.approx(expected, abs=1e-9)
    assert (result.details["hyp_len"], result.details["ref_len"]) == (11, 13)
    assert "tok:moses-de" in result.signature and "case:lc" in result.signature and "smooth:none" in result.signature
    assert bleu(hyps, refs).score < result.score  # sacreBLEU's default counts the case error and 'Schnee!'


def test_moses_lc_bleu_splits_dashes_and_gives_zero_without_a_four_gram():
    same = bleu(['Rotes T-Shirt "ja"'], ['rotes t-shirt "ja"'], tokenize="moses-lc")
    assert same.score == pytest.approx(100) and same.details["hyp_len"] == 7  # rotes t @-@ shirt &quot; ja &quot;
    assert bleu(["ein Hund"], ["ein Hund"], tokenize="moses-lc").score == 0  # no 3-grams: no smoothing, as fairseq
    with pytest.raises(ConfigError, match="moses-lc"):
        bleu(HYPS, REFS, tokenize="moses")


@pytest.mark.parametrize("attention", [
    {"name": "sliding_window", "window": 4},
    {"name": "sliding_window", "window": 3, "num_global": 2, "sink_positions": "cache"},
])
def test_a_long_text_scored_in_chunks_through_the_cache_equals_one_pass(tiny_checkpoint, attention):
    """Past ``positions`` tokens a windowed LM's text runs chunk by chunk through the decoding cache (one token at a
    time, chunks that wrap the ring, a chunk longer than the ring): the sum equals the one-pass value."""
    decoder = {"layers": 2, "attention": attention}
    ckpt = load_checkpoint(tiny_checkpoint("decoder_lm", position="rope", decoder=decoder))
    inputs, labels = torch.randint(4, 40, (1, 23)), torch.randint(4, 40, (1, 23))
    assert _bounded_state(ckpt.model)  # so the text does go through the cache in chunks
    whole = token_nll(ckpt.model, inputs, labels, -100, positions=1000)
    for positions in (1, 5, 8):
        assert token_nll(ckpt.model, inputs, labels, -100, positions=positions) == pytest.approx(whole, rel=1e-6)
