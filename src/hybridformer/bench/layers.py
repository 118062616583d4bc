"""Layer-type benchmark: parameters, forward+backward time per token and peak memory, side by side.

Answers the question the conv-hybrid papers argue over (Wu et al., 2019; Gulati et al., 2020;
Wu et al., 2020; Peng et al., 2022): what a layer type costs at a given width and length. Each
layer is one residual layer built exactly as a model builds it (``build_stack``, one layer).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..blocks import LAYERS
from ..config import ModelConfig
from ..errors import ConfigError
from ..models import build_stack
from .table import markdown_table


@dataclass
class LayerResult:
    layer: str
    d_model: int
    length: int
    batch: int
    causal: bool
    params: int
    us_per_token: float  # forward + backward, best of the repeats (least disturbed by other load)
    peak_mib: float | None  # extra memory during one forward + backward (None when not measurable)

    def as_dict(self) -> dict:
        return asdict(self)


def layer_config(layer: str, d_model: int, *, kernel_size: int = 15) -> ModelConfig:
    """The benchmarked shape: head width 64, FFN 4·d, no positions, no dropout, default conv options."""
    stack = {"layers": 1, "layer": layer, "conv": {"kernel_size": kernel_size}}
    return ModelConfig(arch="encoder_classifier", d_model=d_model, heads=max(d_model // 64, 1), ffn_dim=4 * d_model,
                       dropout=0.0, position="none", encoder=stack)


def bench_layer(layer: str, d_model: int, length: int, *, batch: int = 1, causal: bool = False, repeats: int = 3,
                kernel_size: int = 15, device: str = "cpu") -> LayerResult:
    """Time ``repeats`` forward+backward passes of one ``layer`` (after one warm-up) and measure peak memory."""
    cfg = layer_config(layer, d_model, kernel_size=kernel_size)
    stack = build_stack(cfg, cfg.encoder, causal=causal, cross=False).to(device).train()
    x = torch.randn(batch, length, d_model, device=device, requires_grad=True)
    readout = torch.randn(d_model, device=device)

    def step() -> None:
        (stack(x) * readout).sum().backward()
        stack.zero_grad(set_to_none=True)
        x.grad = None

    step()  # warm-up
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    peak = _peak_bytes(step, device)
    return LayerResult(
        layer=layer, d_model=d_model, length=length, batch=batch, causal=causal,
        params=sum(p.numel() for p in stack.layers.parameters()),
        us_per_token=min(times) / (batch * length) * 1e6,
        peak_mib=None if peak is None else peak / 2**20,
    )


def bench_layers(layers: list[str], d_models: list[int], lengths: list[int], **options) -> list[LayerResult]:
    """Every (d_model, length, layer) combination; options as for :func:`bench_layer`."""
    return [bench_layer(layer, d, length, **options) for d in d_models for length in lengths for layer in layers]


def markdown(results: list[LayerResult]) -> str:
    """One row per measurement, layer types side by side within each (d_model, L) block."""
    return markdown_table(["d_model", "L", "layer", "params", "µs/token (fwd+bwd)", "peak MiB"], [
        [r.d_model, r.length, r.layer, f"{r.params / 1e6:.2f}M", f"{r.us_per_token:.1f}",
         "n/a" if r.peak_mib is None else f"{r.peak_mib:.1f}"] for r in results])


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_bytes(step: Callable[[], None], device: str) -> int | None:
    """Peak memory allocated above the starting point while ``step`` runs; None if it cannot be measured.

    CUDA uses the allocator's peak counter; CPU replays the allocation events the profiler
    records (a private PyTorch API, hence the fallback to None).
    """
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    try:
        from torch._C._profiler import _EventType
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            step()
        deltas: list[tuple[int, int]] = []
        stack = list(prof.profiler.kineto_results.experimental_event_tree())
        while stack:
            node = stack.pop()
            if node.tag == _EventType.Allocation:
                deltas.append((node.start_time_ns, node.extra_fields.alloc_size))
            stack.extend(node.children)
    except (ImportError, AttributeError):
        return None
    current = peak = 0
    for _, delta in sorted(deltas):
        current += delta
        peak = max(peak, current)
    return peak


def run_layer_benchmark(layers: list[str], d_models: list[int], lengths: list[int], *, device: str = "cpu",
                        threads: int = 0, out: str | Path | None = None, **options) -> tuple[list[LayerResult], str]:
    """Check the request, measure (``bench_layers``), and write ``layers.json`` + ``layers.md`` under ``out``.

    Returns the results and their markdown table; ``threads`` > 0 sets torch's CPU threads first.
    """
    unknown = [name for name in layers if name not in LAYERS]
    if unknown:
        raise ConfigError(f"--layers: unknown layer type(s) {', '.join(unknown)}; allowed: {', '.join(LAYERS)}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda requested but no CUDA device is available")
    if threads:
        torch.set_num_threads(threads)
    results = bench_layers(layers, d_models, lengths, device=device, **options)
    table = markdown(results)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"device": device, "threads": torch.get_num_threads(), "torch": torch.__version__}
        (out / "layers.json").write_text(json.dumps({"meta": meta, "results": [r.as_dict() for r in results]},
                                                    indent=2))
        (out / "layers.md").write_text(table + "\n")
    return results, table
