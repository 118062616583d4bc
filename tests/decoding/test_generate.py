"""``generate``: text in, one line out per line in input order, however the input is batched."""

from __future__ import annotations

import pytest
from conftest import TINY_TEXT

from hybridformer import CheckpointError, ConfigError, DataError, generate, load_checkpoint, save_checkpoint
from hybridformer.engines import GenerationOptions, load_engine

LINES = TINY_TEXT + ["", "the cat", "a"]


@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder_lm"])
@pytest.mark.parametrize("options", [{"beam": 1}, {"beam": 3, "lenpen": 0.6}, {"beam": 2, "no_repeat_ngram": 2}])
def test_batching_never_changes_outputs(tiny_checkpoint, arch, options):
    path = tiny_checkpoint(arch)
    alone = list(generate(path, LINES, batch_tokens=1, max_len_b=8, **options))  # one line per batch
    together = list(generate(path, LINES, batch_tokens=10_000, max_len_b=8, **options))
    assert len(alone) == len(LINES)
    assert alone == together
    assert all("\n" not in line for line in alone)
    assert any(alone)


def test_sampling_with_a_seed_is_reproducible(tiny_checkpoint):
    path = tiny_checkpoint("decoder_lm")
    runs = [list(generate(path, LINES, sample=True, top_p=0.9, temperature=1.5, seed=s, max_len_b=8))
            for s in (1, 1, 2)]
    assert runs[0] == runs[1] != runs[2]


@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder_lm"])
def test_output_length_follows_the_budget(tiny_checkpoint, arch):
    decoder = load_engine(tiny_checkpoint(arch))
    sources = [[5, 6, 7, 2], [8, 2]] if arch == "encoder_decoder" else [[5, 6, 7], [8, 9, 10]]
    for beam in (1, 3):
        opts = GenerationOptions(beam=beam, max_len_a=0.5, max_len_b=1, early_stopping=False)
        outputs = decoder.decode_batch(sources, opts)
        src_len = [3, 1] if arch == "encoder_decoder" else [3, 3]  # EOS is not part of the source length
        bounds = [int(0.5 * n) + 1 for n in src_len]
        assert all(len(out) <= bound for out, bound in zip(outputs, bounds, strict=True))
        assert any(len(out) == bound for out, bound in zip(outputs, bounds, strict=True))  # the budget did bind


def test_output_streams_before_the_input_ends(tiny_checkpoint):
    def lines():
        yield from TINY_TEXT[:3]
        raise RuntimeError("input read past the first window")

    outputs = generate(tiny_checkpoint(), lines(), beam=1, batch_tokens=2, max_len_b=3)
    first = next(outputs)
    assert isinstance(first, str)
    with pytest.raises(RuntimeError):
        list(outputs)


def test_errors_are_clear(tiny_checkpoint, tmp_path):
    seq2seq = tiny_checkpoint()
    with pytest.raises(DataError, match="no input lines"):
        list(generate(seq2seq, []))
    with pytest.raises(CheckpointError, match="ensemble members must all be"):
        generate([seq2seq, tiny_checkpoint("decoder_lm")], LINES)
    with pytest.raises(ConfigError, match="top_p"):
        generate(seq2seq, LINES, sample=True, top_p=0.0)
    with pytest.raises(ConfigError, match="unknown generation option.*beams"):
        generate(seq2seq, LINES, beams=3)
    with pytest.raises(CheckpointError, match="encoder_classifier"):
        generate(tiny_checkpoint("encoder_classifier"), LINES)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        generate(tmp_path / "missing", LINES)
    ckpt = load_checkpoint(seq2seq)
    no_tokenizer = save_checkpoint(tmp_path / "bare", ckpt.model, ckpt.config)
    with pytest.raises(CheckpointError, match="no tokenizer.json"):
        generate(no_tokenizer, LINES)


def test_learned_positions_cap_the_output(tiny_checkpoint):
    path = tiny_checkpoint("decoder_lm", position="learned", max_positions=12)
    prompt = "the cat sat on the mat"
    for line in generate(path, [prompt], beam=2, max_len_b=50):
        assert isinstance(line, str)  # did not run past the position table
    with pytest.raises(DataError, match="max_positions"):
        list(generate(path, [" ".join(["the cat sat on the mat"] * 4)], beam=1))


def test_several_checkpoints_generate_as_an_ensemble(tiny_checkpoint):
    """The same checkpoint twice is an ensemble equal to that checkpoint alone."""
    one = tiny_checkpoint()
    alone = list(generate(one, LINES, beam=3, max_len_b=5))
    assert list(generate([one, one], LINES, beam=3, max_len_b=5)) == alone
    assert list(generate([one, one], LINES, beam=3, max_len_b=5, weights=[1.0, 0.0], combine="log_prob")) == alone
