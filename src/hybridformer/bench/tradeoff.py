"""The accuracy/speed trade-off experiment: compressed variants of one checkpoint, and the plot.

:func:`make_variants` writes one checkpoint per head fraction, per sparsity, and an int8 one,
all from the same trained model (Michel et al.'s importance is computed once, on the full
model, and the least important heads removed for each fraction). Each variant is then scored
with the ordinary ``evaluate``/``generate`` path (BLEU) and :func:`decode_speed` (tokens/s);
:func:`plot_tradeoff` draws BLEU and speed against the amount of compression.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import load_checkpoint, save_checkpoint
from ..compress import (
    compression_meta,
    head_importance,
    magnitude_prune,
    prune_heads,
    quantize_model,
    weight_importance,
)
from ..decoding import ModelScorer, greedy_search


def make_variants(checkpoint: str | Path, out_dir: str | Path, *, head_fractions: list[float] = (),
                  sparsities: list[float] = (), int8: bool = True, batches: list | None = None) -> dict[str, Path]:
    """Write ``heads-X``, ``sparsity-X`` and ``int8`` checkpoints of ``checkpoint`` under ``out_dir``.

    ``batches``: held-out batches for head importance (see :func:`~.data.text_batches`); without
    them the data-free weight-norm proxy is used. Returns ``{label: checkpoint dir}``.
    """
    ckpt, out_dir = load_checkpoint(checkpoint), Path(out_dir)
    importance = head_importance(ckpt.model, batches) if batches else weight_importance(ckpt.model)
    written = {}

    def save(label: str, model: nn.Module, config, note: dict[str, Any]) -> None:
        written[label] = save_checkpoint(out_dir / label, model, config, ckpt.side_files,
                                         meta=compression_meta(ckpt.meta, checkpoint, note))

    for fraction in head_fractions:
        model = copy.deepcopy(ckpt.model)
        config = prune_heads(model, ckpt.config, fraction, importance)
        save(f"heads-{fraction:g}", model, config, {"method": "heads", "fraction": fraction})
    for target in sparsities:
        model = copy.deepcopy(ckpt.model)
        magnitude_prune(model, target)
        save(f"sparsity-{target:g}", model, ckpt.config, {"method": "magnitude", "sparsity": target})
    if int8:
        model, config = quantize_model(copy.deepcopy(ckpt.model), ckpt.config)
        save("int8", model, config, {"method": "dynamic_int8"})
    return written


@torch.no_grad()
def decode_speed(model: nn.Module, sources: list[torch.Tensor], *, bos_id: int, eos_id: int,
                 max_new_tokens: int = 64) -> float:
    """Greedy-decoding tokens/s over ``sources`` (source batches; each row's tokens counted up to its EOS)."""
    seconds, tokens = 0.0, 0
    for src in sources:
        scorer = ModelScorer(model)
        start = time.perf_counter()
        outputs = greedy_search(scorer, scorer.init_state(src), torch.full((src.shape[0], 1), bos_id),
                                eos_id=eos_id, max_new_tokens=max_new_tokens)
        seconds += time.perf_counter() - start
        tokens += sum(min(len(row) + 1, max_new_tokens) for row in outputs)
    return tokens / seconds


def plot_tradeoff(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Two panels, BLEU (left axis) and tokens/s (right axis) against % heads removed and % sparsity.

    ``rows``: ``{"method": "heads"|"sparsity"|"int8"|"float", "amount": fraction, "bleu": …,
    "tokens_per_s": …}``; ``float`` is drawn at 0 in both panels, ``int8`` as a marked point.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    base = [r for r in rows if r["method"] == "float"]
    for ax, method, label in zip(axes, ("heads", "sparsity"), ("% heads removed", "% weights zeroed"), strict=True):
        points = sorted(base + [r for r in rows if r["method"] == method], key=lambda r: r.get("amount", 0.0))
        xs = [100 * r.get("amount", 0.0) for r in points]
        ax.plot(xs, [r["bleu"] for r in points], "o-", color="tab:blue", label="BLEU")
        ax.set_xlabel(label)
        speed = ax.twinx()
        speed.plot(xs, [r["tokens_per_s"] for r in points], "s--", color="tab:orange", label="tokens/s")
        for r in rows:
            if r["method"] == "int8":
                ax.plot([0], [r["bleu"]], "*", color="tab:green", markersize=12, label="int8 BLEU")
                speed.plot([0], [r["tokens_per_s"]], "*", color="tab:red", markersize=12, label="int8 tokens/s")
        speed.set_ylabel("tokens/s")
        ax.legend(loc="lower left", fontsize=8)
    axes[0].set_ylabel("BLEU")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
