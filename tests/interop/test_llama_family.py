"""Llama, Mistral, Qwen2, Qwen3, Gemma 3, Phi-3, GPT-2, LFM2, Granite-4.0-H and Falcon-H1 converted from tiny local
transformers models: logits, greedy tokens and the cache agree with transformers (RoPE scaling incl. LongRoPE, GQA,
explicit head_dim, biases, tied/untied heads, sliding window, QK-norm, Gemma's sandwich (1 + w) norms and
local/global layers with their own RoPE bases, Phi-3's fused projections, GPT-2's Conv1D weights and its padding
outside the vocabulary, LFM2's short convolutions, Granite's Mamba-2 layers and multipliers, Falcon-H1's parallel
attention + Mamba-2 with its folded µP multipliers)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from interop.hf_tiny import cached_logits, hf_ids, padded_batch, save_tiny  # noqa: E402

from hybridformer import convert, load_checkpoint  # noqa: E402
from hybridformer.decoding.beam import beam_search  # noqa: E402
from hybridformer.decoding.greedy import greedy_search  # noqa: E402
from hybridformer.decoding.scorer import ModelScorer  # noqa: E402

KINDS = ["llama", "llama-dynamic", "llama-yarn", "qwen2", "mistral", "gpt2", "lfm2", "granite-hybrid", "qwen3",
         "gemma3", "phi3", "phi3-longrope", "falcon-h1", "falcon-h1-nonorm"]
LENGTH_DEPENDENT = ("dynamic", "longrope")  # RoPE whose frequencies change with the length of the call


@pytest.fixture(scope="module", params=KINDS)
def pair(request, tmp_path_factory):
    """(transformers model, our converted checkpoint) for one architecture variant."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp(request.param)
    hf, folder = save_tiny(request.param, root / "hf")
    convert(folder, root / "ours")
    return hf, load_checkpoint(root / "ours")


def test_padded_batch_logits_match(pair) -> None:
    hf, ckpt = pair
    pad = ckpt.config.pad_id
    tokens = padded_batch(ckpt.config.vocab_size, pad, [13, 9, 5])
    mask = tokens.ne(pad)
    with torch.no_grad():
        ours = ckpt.model(tokens)
        theirs = hf(hf_ids(tokens, ckpt.config.vocab_size), attention_mask=mask.long()).logits
    assert ours.shape == theirs.shape  # the same vocabulary: a pad outside it adds no logit
    assert (ours - theirs)[mask].abs().max() < 1e-4


def test_greedy_20_tokens_identical(pair) -> None:
    hf, ckpt = pair
    cfg = ckpt.config
    prompt = padded_batch(cfg.vocab_size, cfg.pad_id, [7, 7], avoid=(cfg.eos_id,))
    inside = cfg.pad_id < cfg.vocab_size  # GPT-2's pad has no logit: nothing to suppress, HF pads with EOS
    with torch.no_grad():
        theirs = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=20, do_sample=False,
                             suppress_tokens=[cfg.pad_id] if inside else None,
                             pad_token_id=cfg.pad_id if inside else cfg.eos_id, eos_token_id=cfg.eos_id)
    ours = greedy_search(ModelScorer(ckpt.model), ModelScorer(ckpt.model).init_state(None), prompt,
                         eos_id=cfg.eos_id, max_new_tokens=20)
    for row, generated in zip(theirs[:, 7:].tolist(), ours, strict=True):
        expected = row[: row.index(cfg.eos_id)] if cfg.eos_id in row else row
        assert generated == expected
    assert sum(map(len, ours)) >= 10  # the comparison covered real steps


def test_cached_decoding_equals_full_forward(pair) -> None:
    hf, ckpt = pair
    if ckpt.config.rope_scaling is not None and ckpt.config.rope_scaling.type in LENGTH_DEPENDENT:
        pytest.skip("dynamic NTK / LongRoPE change past keys' frequencies with the length: cached and full differ "
                    "by design")
    tokens = padded_batch(ckpt.config.vocab_size, ckpt.config.pad_id, [24, 24])
    with torch.no_grad():
        full = ckpt.model(tokens)
    assert (cached_logits(ckpt.model, tokens, prompt=5) - full).abs().max() < 1e-4


def test_converted_config_reflects_the_source(pair) -> None:
    hf, ckpt = pair
    cfg, hf_cfg = ckpt.config, hf.config
    kv_heads = getattr(hf_cfg, "num_key_value_heads", hf_cfg.num_attention_heads)
    assert (cfg.d_model, cfg.heads, cfg.num_kv_heads, cfg.decoder.layers) == (
        hf_cfg.hidden_size, hf_cfg.num_attention_heads, kv_heads, hf_cfg.num_hidden_layers)
    assert cfg.tie_embeddings == hf_cfg.tie_word_embeddings
    assert cfg.pad_id not in (cfg.bos_id, cfg.eos_id)  # padding never hides a real BOS/EOS
    if hf_cfg.model_type == "gpt2":  # no free token: padding lies outside the vocabulary
        assert (cfg.pad_id, cfg.bos_id, cfg.eos_id) == (cfg.vocab_size, 95, 95)


@pytest.mark.parametrize("lenpen", [1.0, 0.0])
def test_beam_search_matches_transformers_under_its_budget_convention(pair, lenpen) -> None:
    """``at_budget="stop"`` is transformers' beam search: same hypotheses for beam 3 over 12 new tokens.

    Both search the same distribution: transformers' ``suppress_tokens`` would set the padding token's
    log-probability to -inf without renormalising, while we never give padding any mass, so a logits
    processor renormalises without it (log-probs in, log-probs out), as ours are."""
    from transformers import LogitsProcessor, LogitsProcessorList

    hf, ckpt = pair
    cfg = ckpt.config

    class WithoutPadding(LogitsProcessor):
        def __call__(self, input_ids, scores):
            if cfg.pad_id >= scores.shape[-1]:  # GPT-2: padding lies outside the vocabulary already
                return scores.log_softmax(-1)
            return scores.index_fill(-1, torch.tensor([cfg.pad_id]), float("-inf")).log_softmax(-1)

    prompt = padded_batch(cfg.vocab_size, cfg.pad_id, [6, 6], avoid=(cfg.eos_id,))
    with torch.no_grad():
        theirs = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12, do_sample=False,
                             num_beams=3, early_stopping=True, length_penalty=lenpen, pad_token_id=cfg.pad_id,
                             eos_token_id=cfg.eos_id, logits_processor=LogitsProcessorList([WithoutPadding()]))
    scorer = ModelScorer(ckpt.model)
    ours = beam_search(scorer, scorer.init_state(None), prompt, beam=3, eos_id=cfg.eos_id, max_len=12,
                       lenpen=lenpen, at_budget="stop")
    for row, hyp in zip(theirs[:, 6:].tolist(), ours, strict=True):
        expected = row[: row.index(cfg.eos_id)] if cfg.eos_id in row else row
        assert hyp.tokens == expected
