"""Which attention heads fetch a fact from far back: scored on generated pass-key prompts, no data needed.

A retrieval head (Wu et al., 2024) copies a token seen long before: while the model writes a pass key, the
head's queries attend the key where the prompt stated it. The score of a kv head is the attention its query
heads put on the key's tokens from the queries that predict the answer, averaged over prompts with the key
at the start, the middle and the end (the best of a kv head's query heads). RazorAttention (Tang et al., 2024)
and DuoAttention (Xiao et al., 2024) keep full caches for such heads only; ``hybridformer longify
--retrieval-heads N`` does that with the N best (:class:`~hybridformer.attention.RetrievalHeadsAttention`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .attention import FullAttention, MultiHeadAttention
from .checkpoint import Checkpoint
from .errors import ConfigError

__all__ = ["retrieval_scores", "top_heads"]

PROBE_DEPTHS = (0.0, 0.5, 1.0)


def retrieval_scores(checkpoint: Checkpoint, *, length: int = 2048, samples: int = 2, seed: int = 1) -> Tensor:
    """(layers, kv_heads) retrieval score of every kv head of a decoder LM with full attention: the mean
    attention mass on the key's tokens, over ``samples`` prompts of ``length`` tokens per depth."""
    from .bench.recall import build_prompt  # the recall benchmark's prompts; bench imports the engines

    model, tokenizer = checkpoint.model.eval(), checkpoint.tokenizer
    layers = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    if checkpoint.config.arch != "decoder_lm" or tokenizer is None or not layers:
        raise ConfigError(f"{checkpoint.path}: retrieval heads are scored on a decoder LM with self-attention "
                          "and a tokenizer")
    if any(type(m.kernel) is not FullAttention for m in layers):
        raise ConfigError(f"{checkpoint.path}: retrieval heads are scored on full attention; longify the "
                          "original model, not a longified one")
    length = min(length, checkpoint.config.max_positions)
    scores = torch.zeros(len(layers), layers[0].kv_heads)
    probe: dict[str, Any] = {}

    def score(index: int):
        def hook(_module, args, _kwargs):
            q, k = args[0].float(), args[1].float()
            queries = q[:, :, -probe["queries"] - 1 : -1]  # the last prompt token .. the answer's last but one
            groups = q.shape[1] // k.shape[1]
            keys = k.repeat_interleave(groups, 1)
            logits = queries @ keys.transpose(-1, -2) * q.shape[-1] ** -0.5
            position = torch.arange(k.shape[2] - probe["queries"] - 1, k.shape[2] - 1)
            logits = logits.masked_fill(torch.arange(k.shape[2])[None] > position[:, None], float("-inf"))
            mass = logits.softmax(-1)[0][:, :, probe["key"]].sum(-1).mean(-1)  # (heads,)
            scores[index] += mass.view(k.shape[1], groups).amax(-1)
        return hook

    handles = [m.kernel.register_forward_pre_hook(score(i), with_kwargs=True) for i, m in enumerate(layers)]
    try:
        with torch.inference_mode():
            for depth in PROBE_DEPTHS:
                for sample in range(samples):
                    prompt = build_prompt(tokenizer, "passkey", length, depth, sample=sample, seed=seed)
                    encoding = tokenizer.encode(f"{prompt.text} {prompt.answer}", add_special_tokens=False)
                    probe["key"] = _answer_tokens(prompt.text, prompt.answer, encoding.offsets)
                    probe["queries"] = len(tokenizer.encode(f" {prompt.answer}", add_special_tokens=False).ids)
                    model(torch.tensor([encoding.ids]))
    finally:
        for handle in handles:
            handle.remove()
    return scores / (len(PROBE_DEPTHS) * samples)


def _answer_tokens(text: str, answer: str, offsets: list[tuple[int, int]]) -> list[int]:
    """Indices of the tokens overlapping an occurrence of ``answer`` inside ``text`` (the needle)."""
    spans, start = [], 0
    while (found := text.find(answer, start)) >= 0:
        spans.append((found, found + len(answer)))
        start = found + 1
    return [i for i, (a, b) in enumerate(offsets) if any(a < end and b > begin for begin, end in spans)]


def top_heads(scores: Tensor, count: int) -> dict[int, list[int]]:
    """The ``count`` best kv heads: ``{layer: [kv heads]}`` (layers without one left out)."""
    layers, kv_heads = scores.shape
    if not 1 <= count <= layers * kv_heads:
        raise ConfigError(f"--retrieval-heads {count}: choose 1 to {layers * kv_heads} kv heads "
                          f"({layers} layers x {kv_heads} kv heads)")
    chosen: dict[int, list[int]] = {}
    for flat in scores.flatten().argsort(descending=True)[:count].tolist():
        chosen.setdefault(flat // kv_heads, []).append(flat % kv_heads)
    return {layer: sorted(heads) for layer, heads in sorted(chosen.items())}
