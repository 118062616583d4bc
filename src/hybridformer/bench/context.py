"""Per-token decode cost against context length: does the next token get dearer as the context grows?

Attention reads a KV cache that grows with every token; a short convolution keeps its last k − 1
inputs and Mamba-2 a fixed state, so conv/SSM–attention hybrids pay for long contexts only in
their attention layers. Each model (random init, eval mode) is prefilled with ``context`` tokens,
then its one-token decoding steps are timed in CPU time (one thread: what a step costs, however loaded
the machine is), all models interleaved round-robin (median of the rounds). The step's CPU time is also
split by layer type (forward hooks on each layer; mean over all steps), which shows where growth comes from.
The decoding state is reported as the keys and values held per context token, and the fixed conv/SSM state.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..cache import DecodingCache, KVCache
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
    kv_bytes_per_token: float  # keys and values held / context length
    state_bytes: int  # conv and SSM states: the same at any context
    ms_by_layer: dict[str, float] = field(default_factory=dict)  # mean CPU ms per step in each layer type

    def as_dict(self) -> dict:
        return asdict(self)


def cache_bytes(cache: DecodingCache) -> tuple[int, int]:
    """(bytes of the keys and values held, bytes of every other state): KV buffers' spare capacity not counted."""
    kv = other = 0
    for state in cache.values():
        if isinstance(state, KVCache):
            kv += state.length * sum(t[:, :, :1].numel() * t.element_size() for t in (state.keys, state.values))
        else:
            other += sum(v.numel() * v.element_size() for v in vars(state).values() if isinstance(v, torch.Tensor))
    return kv, other


def layer_clock(model, kinds: list[str]) -> dict[str, float]:
    """CPU seconds spent in each layer type, accumulated by forward hooks on the decoder's layers."""
    spent: dict[str, float] = defaultdict(float)
    for layer, kind in zip(model.decoder.layers, kinds, strict=True):
        layer.register_forward_pre_hook(lambda *_, k=kind: spent.__setitem__(k, spent[k] - time.process_time()))
        layer.register_forward_hook(lambda *_, k=kind: spent.__setitem__(k, spent[k] + time.process_time()))
    return spent


@torch.no_grad()
def bench_context(models: dict[str, ModelConfig], contexts: list[int], *, steps: int = 16, repeats: int = 3,
                  prefill_chunk: int = 1024) -> list[ContextResult]:
    """For each context length: prefill every model, then time ``steps`` decoding steps, interleaved."""
    built = {name: build_model(cfg).eval() for name, cfg in models.items()}
    results, warmup = [], 1
    clocks = {name: layer_clock(model, [cfg.decoder.layer_of(i) for i in range(cfg.decoder.layers)])
              for (name, model), cfg in zip(built.items(), models.values(), strict=True)}
    for context in contexts:
        caches, steppers = {}, {}
        for name, model in built.items():
            cache = caches[name] = DecodingCache()
            tokens = torch.randint(3, model.output.out_features, (1, context + steps * (repeats + warmup)))
            for start in range(0, context, prefill_chunk):
                model.decode(tokens[:, start : min(start + prefill_chunk, context)], cache=cache, offset=start,
                             logits_to_keep=1)
            steppers[name] = _stepper(model, cache, tokens, context, steps)
            steppers[name]()  # warm-up, not counted
            clocks[name].clear()
        seconds = interleaved(steppers, repeats, warmup=0, clock=time.process_time)
        for name, model in built.items():
            kv, state = cache_bytes(caches[name])
            per_step = 1e3 / (steps * repeats)
            results.append(ContextResult(name, context, sum(p.numel() for p in model.parameters()),
                                         seconds[name] / steps * 1e3, kv / (context + steps * (repeats + warmup)),
                                         state, {k: v * per_step for k, v in clocks[name].items()}))
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
    """Rows per model, one column per context length: ms/token, the ratio to the shortest context, the state held,
    and, at the longest context, the step's CPU ms in each layer type (the rest: embedding and output head)."""
    contexts = sorted({r.context for r in results})
    by = {(r.model, r.context): r for r in results}
    rows = []
    for name in dict.fromkeys(r.model for r in results):
        first, last = by[(name, contexts[0])], by[(name, contexts[-1])]
        split = " · ".join(f"{kind} {ms:.2f}" for kind, ms in sorted(last.ms_by_layer.items()))
        rows.append([name, f"{first.params / 1e6:.2f}M", *(f"{by[(name, c)].ms_per_token:.2f}" for c in contexts),
                     f"{last.ms_per_token / first.ms_per_token:.2f}x", f"{last.kv_bytes_per_token:,.0f}",
                     f"{last.state_bytes:,}", split])
    return markdown_table(["model", "params", *(f"CPU ms/token @ {c}" for c in contexts),
                           f"{contexts[-1]} ÷ {contexts[0]}", "KV bytes/token", "conv/SSM state bytes",
                           f"CPU ms by layer type @ {contexts[-1]}"], rows)


def write(results: list[ContextResult], out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    (out / "context.json").write_text(json.dumps({"meta": meta, "results": [r.as_dict() for r in results]}, indent=2))
    (out / "context.md").write_text(markdown(results) + "\n")
    return out / "context.json"
