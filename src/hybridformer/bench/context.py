"""Per-token decode cost against context length: does the next token get dearer as the context grows?

Attention reads a KV cache that grows with every token; a short convolution keeps its last k − 1
inputs and Mamba-2 a fixed state, so conv/SSM–attention hybrids pay for long contexts only in
their attention layers. Each model (random init, eval mode) is prefilled with ``context`` tokens,
then its one-token decoding steps are timed in CPU time (one thread: what a step costs, however loaded
the machine is), all models interleaved round-robin (median of the rounds), and the decoding cache's
allocated memory is reported per context token (KV buffers double as they grow, so up to 2x what is used).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..cache import DecodingCache
from ..config import ModelConfig
from ..models import build_model
from .table import markdown_table
from .throughput import interleaved


@dataclass
class ContextResult:
    model: str
    context: int
    params: int
    ms_per_token: float  # CPU time of one decoding step (batch 1), median over the rounds
    cache_bytes_per_token: float  # allocated decoding state / context length

    def as_dict(self) -> dict:
        return asdict(self)


def cache_bytes(cache: DecodingCache) -> int:
    """Bytes of every tensor the cache's states hold (KV buffers include their spare capacity)."""
    seen: dict[int, int] = {}
    for state in cache.values():
        for value in vars(state).values():
            if isinstance(value, torch.Tensor):
                seen[value.untyped_storage().data_ptr()] = value.untyped_storage().nbytes()
    return sum(seen.values())


@torch.no_grad()
def bench_context(models: dict[str, ModelConfig], contexts: list[int], *, steps: int = 16, repeats: int = 3,
                  prefill_chunk: int = 1024) -> list[ContextResult]:
    """For each context length: prefill every model, then time ``steps`` decoding steps, interleaved."""
    built = {name: build_model(cfg).eval() for name, cfg in models.items()}
    results = []
    for context in contexts:
        caches, steppers = {}, {}
        for name, model in built.items():
            cache = caches[name] = DecodingCache()
            tokens = torch.randint(3, model.output.out_features, (1, context + steps * (repeats + 1)))
            for start in range(0, context, prefill_chunk):
                model.decode(tokens[:, start : min(start + prefill_chunk, context)], cache=cache, offset=start,
                             logits_to_keep=1)
            steppers[name] = _stepper(model, cache, tokens, context, steps)
        seconds = interleaved(steppers, repeats, clock=time.process_time)
        for name, model in built.items():
            results.append(ContextResult(name, context, sum(p.numel() for p in model.parameters()),
                                         seconds[name] / steps * 1e3, cache_bytes(caches[name]) / context))
    return results


def _stepper(model, cache: DecodingCache, tokens: torch.Tensor, context: int, steps: int):
    position = [context]

    def run() -> None:
        for _ in range(steps):
            pos = position[0]
            model.decode(tokens[:, pos : pos + 1], cache=cache, offset=pos)
            position[0] += 1

    return run


def markdown(results: list[ContextResult]) -> str:
    """Rows per model, one column per context length: ms/token, and the ratio to the shortest context."""
    contexts = sorted({r.context for r in results})
    by = {(r.model, r.context): r for r in results}
    rows = []
    for name in dict.fromkeys(r.model for r in results):
        first, last = by[(name, contexts[0])], by[(name, contexts[-1])]
        rows.append([name, f"{first.params / 1e6:.2f}M", *(f"{by[(name, c)].ms_per_token:.2f}" for c in contexts),
                     f"{last.ms_per_token / first.ms_per_token:.2f}x", f"{last.cache_bytes_per_token:.0f}"])
    return markdown_table(["model", "params", *(f"CPU ms/token @ {c}" for c in contexts),
                           f"{contexts[-1]} ÷ {contexts[0]}", f"cache bytes/token @ {contexts[-1]}"], rows)


def write(results: list[ContextResult], out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    (out / "context.json").write_text(json.dumps({"meta": meta, "results": [r.as_dict() for r in results]}, indent=2))
    (out / "context.md").write_text(markdown(results) + "\n")
    return out / "context.json"
