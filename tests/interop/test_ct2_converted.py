"""CTranslate2 export of models converted from tiny local transformers models (BART, mBART, Marian, T5 v1.0/v1.1,
Llama with llama3 and YaRN RoPE): the float32 export's greedy tokens equal the torch engine's and its teacher-forced
log-probabilities agree within 1e-4; dynamic RoPE scaling, which CTranslate2 cannot express, is refused by name."""

from __future__ import annotations

import dataclasses

import pytest
import torch

pytest.importorskip("ctranslate2", reason="the ct2 extra (pip install 'hybridformer[ct2]') is not installed")
pytest.importorskip("transformers")

from interop.hf_tiny import padded_batch, save_tiny  # noqa: E402
from interop.test_hf_seq2seq import hf_model  # noqa: E402
from tokenizers import Tokenizer, models  # noqa: E402

from hybridformer import convert, load_checkpoint  # noqa: E402
from hybridformer.checkpoint import Checkpoint  # noqa: E402
from hybridformer.engines import (
    GenerationOptions,  # noqa: E402
    load_engine,  # noqa: E402
)
from hybridformer.engines.ct2 import load_ct2_engine  # noqa: E402
from hybridformer.errors import ConfigError  # noqa: E402
from hybridformer.interop.ct2 import ct2_blockers, export_ct2  # noqa: E402

SEQ2SEQ = ["bart", "mbart", "marian", "t5", "t5v11"]
LM = ["llama", "llama-yarn"]  # llama: llama3 RoPE scaling (factor 8, original length 16)


def with_tokenizer(ckpt: Checkpoint) -> Checkpoint:
    """The tiny converted models carry no tokenizer: one token string per id is all the export needs."""
    vocab = {f"w{i}": i for i in range(ckpt.config.vocab_size)}
    return dataclasses.replace(ckpt, tokenizer=Tokenizer(models.WordLevel(vocab, unk_token="w0")))


def converted(kind: str, root) -> Checkpoint:
    torch.manual_seed(0)
    if kind in SEQ2SEQ:
        hf_model(kind).save_pretrained(root / "hf")
    else:
        save_tiny(kind, root / "hf")
    return with_tokenizer(load_checkpoint(convert(root / "hf", root / "ours")))


def prompts(ckpt: Checkpoint, lengths: list[int], seed: int) -> list[list[int]]:
    """Random ids without special tokens; a seq2seq source ends with EOS as ours do."""
    cfg = ckpt.config
    torch.manual_seed(seed)
    avoid = (cfg.eos_id, cfg.bos_id, cfg.start_id)
    rows = padded_batch(cfg.vocab_size, cfg.pad_id, lengths, avoid=avoid).tolist()
    return [row[:n] + ([cfg.eos_id] if cfg.is_seq2seq else []) for row, n in zip(rows, lengths, strict=True)]


@pytest.mark.parametrize("kind", SEQ2SEQ + LM)
def test_converted_export_matches_torch(tmp_path, kind, one_thread):
    ckpt = converted(kind, tmp_path)
    assert ct2_blockers(ckpt) == []
    ct2 = load_ct2_engine(export_ct2(ckpt, tmp_path / "ct2"))
    torch_decoder = load_engine(ckpt)
    opts = GenerationOptions.parse({"beam": 1, "max_len_a": 0.0, "max_len_b": 24})
    if ckpt.config.is_seq2seq:
        batches = [prompts(ckpt, [7, 4, 9], 0)]
    else:  # LM prompts of one length per batch (as generate does); 7 + 24 tokens pass llama3's original 16
        batches = [prompts(ckpt, [7, 7], 0), prompts(ckpt, [5], 1)]
    produced = 0
    for batch in batches:
        expected = torch_decoder.decode_batch(batch, opts)
        assert ct2.decode_batch(batch, opts) == expected
        produced += sum(map(len, expected))
    assert produced >= 20  # the comparison covered real decoding steps
    sources = prompts(ckpt, [6, 11], 2)
    with torch.no_grad():
        if ckpt.config.is_seq2seq:
            targets = [row[:-1] for row in prompts(ckpt, [5, 8], 3)]
            for source, target, log_probs in zip(sources, targets, ct2.score(sources, targets), strict=True):
                inputs, labels = [ckpt.config.start_id, *target], [*target, ckpt.config.eos_id]
                full = ckpt.model(torch.tensor([source]), torch.tensor([inputs])).log_softmax(-1)[0]
                want = full[torch.arange(len(labels)), torch.tensor(labels)]
                assert torch.allclose(torch.tensor(log_probs), want, atol=1e-4)
        else:
            long = prompts(ckpt, [40], 4)  # past the original context of the scaled RoPE
            for source, log_probs in zip(long, ct2.score(long), strict=True):
                full = ckpt.model(torch.tensor([source])).log_softmax(-1)[0]
                want = full[torch.arange(len(source) - 1), torch.tensor(source[1:])]
                assert torch.allclose(torch.tensor(log_probs), want, atol=1e-4)


def test_dynamic_rope_scaling_is_refused_by_name(tmp_path):
    ckpt = converted("llama-dynamic", tmp_path)
    problems = ct2_blockers(ckpt)
    assert len(problems) == 1 and "rope_scaling.type='dynamic'" in problems[0], problems
    with pytest.raises(ConfigError, match="rope_scaling.type='dynamic'") as info:
        export_ct2(ckpt, tmp_path / "out")
    assert "\n" not in str(info.value) and not (tmp_path / "out").exists()


@pytest.mark.parametrize(("kind", "named"), [("gemma3", "sandwich"), ("qwen3", "qk_norm")])
def test_architectures_without_a_ct2_export_are_refused_by_name(kind: str, named: str, tmp_path) -> None:
    """Gemma 3 and Qwen3 normalise queries and keys, which this export does not write: refused, naming the
    layer feature and the spec's own declaration."""
    torch.manual_seed(0)
    _, folder = save_tiny(kind, tmp_path / "hf")
    problems = ct2_blockers(load_checkpoint(convert(folder, tmp_path / "ours")))
    assert any(named in p for p in problems) and any("offers no CTranslate2 export" in p for p in problems)
