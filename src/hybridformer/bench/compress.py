"""Decoding speed of one model, float vs int8 vs head-pruned, measured in the same run.

The model is random-init (speed does not depend on the weights' values); decoding is greedy
through the KV caches for exactly ``new_tokens`` steps (EOS is never honoured), so every variant
does the same work. Variants are timed interleaved, repeat by repeat, and the median is kept,
so machine noise hits them alike; what to compare are the ratios to ``float``.
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..compress import prune_heads, state_size, weight_importance
from ..config import ModelConfig
from ..decoding import ModelScorer, greedy_search
from ..models import build_model
from ..quantized import quantize_dynamic_int8


def _decode_seconds(model: nn.Module, src: torch.Tensor | None, prefix: torch.Tensor, new_tokens: int) -> float:
    scorer = ModelScorer(model)
    start = time.perf_counter()
    state = scorer.init_state(src)
    greedy_search(scorer, state, prefix, eos_id=-1, max_new_tokens=new_tokens)
    return time.perf_counter() - start


def compression_variants(config: ModelConfig, head_fraction: float) -> dict[str, nn.Module]:
    """``float``, ``int8``, ``heads-X%`` (pruned by weight norm) and ``heads-X%+int8`` of one random model."""
    base = build_model(config).eval()
    pruned = copy.deepcopy(base)
    prune_heads(pruned, config, head_fraction, weight_importance(pruned))
    label = f"heads-{round(100 * head_fraction)}%"
    return {
        "float": base,
        "int8": quantize_dynamic_int8(copy.deepcopy(base)),
        label: pruned,
        f"{label}+int8": quantize_dynamic_int8(copy.deepcopy(pruned)),
    }


@torch.no_grad()
def benchmark_compression(
    config: ModelConfig, *, head_fraction: float = 0.5, batch_size: int = 8, src_len: int = 24,
    new_tokens: int = 32, repeats: int = 5, threads: int | None = None, seed: int = 0,
) -> dict[str, Any]:
    """Greedy-decoding tokens/s and parameter counts per variant, with speed ratios to float (CPU)."""
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    variants = compression_variants(config, head_fraction)
    low = max(config.eos_id, config.bos_id, config.pad_id) + 1
    src = torch.randint(low, config.vocab_size, (batch_size, src_len)) if config.is_seq2seq else None
    prefix = torch.full((batch_size, 1), config.bos_id)
    for model in variants.values():  # warm-up: allocator, packed weights, first-call dispatch
        _decode_seconds(model, src, prefix, min(4, new_tokens))
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, model in variants.items():
            times[name].append(_decode_seconds(model, src, prefix, new_tokens))
    tokens = batch_size * new_tokens
    float_rate = tokens / statistics.median(times["float"])
    rows = {}
    for name, model in variants.items():
        rate = tokens / statistics.median(times[name])
        numel, size = state_size(model)
        rows[name] = {"tokens_per_s": round(rate, 1), "speedup": round(rate / float_rate, 3),
                      "numel": numel, "megabytes": round(size / 2**20, 2),
                      "seconds": [round(t, 4) for t in times[name]]}
    return {
        "device": "cpu", "threads": torch.get_num_threads(), "torch": torch.__version__,
        "batch_size": batch_size, "src_len": src_len if src is not None else 0, "new_tokens": new_tokens,
        "repeats": repeats, "head_fraction": head_fraction, "config": config.model_dump(), "variants": rows,
    }


def compression_table(result: dict[str, Any]) -> str:
    """The variants of :func:`benchmark_compression` as a fixed-width text table."""
    lines = [f"{'variant':<16}{'tokens/s':>10}{'speedup':>9}{'elements':>12}{'MiB':>9}"]
    for name, row in result["variants"].items():
        lines.append(f"{name:<16}{row['tokens_per_s']:>10.1f}{row['speedup']:>9.2f}{row['numel']:>12}"
                     f"{row['megabytes']:>9.2f}")
    return "\n".join(lines)


def write_compression(result: dict[str, Any], out: str | Path) -> Path:
    """``out/compress.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compress.json").write_text(json.dumps(result, indent=2))
    return out / "compress.json"
