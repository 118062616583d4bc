"""Attention scaling benchmark: median time and peak memory per mechanism and length.

Every point runs in a fresh Python subprocess so one point's allocations never hide another's.
Memory is the growth of the process's peak resident set (Linux ``VmHWM``, reset through
``/proc/self/clear_refs`` after a warm-up) over its resident set just before the measured call:
everything the call really made resident — tensors, autograd's saved activations, allocator
slack — not an estimate from tensor sizes. A point beyond ``time_cap_s`` or ``memory_cap_gb``
(enforced with ``RLIMIT_AS``) is recorded as capped, not as a crash.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import structured
from ..attention import ATTENTION, ALiBi, T5RelativeBias, build_attention
from ..attention.bias import alibi_slopes
from ..config import AttentionConfig, parse_config
from ..errors import ConfigError, brief
from .table import markdown_table

# Measured beside the kernels: "flex" = FlexAttention (torch.compile'd) with the same ALiBi/causal semantics
# as `full`; "local-attention" = the PyPI package (lucidrains) with the pattern of `sliding_window`.
EXTRA_MECHANISMS = ("flex", "local-attention")


@dataclass
class PointSpec:
    """One measurement: a mechanism (with options) at one length."""

    name: str
    length: int
    options: dict[str, Any] = field(default_factory=dict)
    causal: bool = True
    backward: bool = False
    bias: str = "none"  # none | alibi | t5
    batch: int = 1
    heads: int = 8
    head_dim: int = 64
    repeats: int = 3
    memory_cap_gb: float = 8.0

    @property
    def label(self) -> str:
        opts = "".join(f":{k}={v}" for k, v in self.options.items())
        return f"{self.name}{opts}" + ("" if self.bias == "none" else f"+{self.bias}")


def parse_mechanism(text: str) -> tuple[str, dict[str, Any]]:
    """``name[:key=value,...]`` (:func:`~hybridformer.structured.parse_spec`) -> (name, options)."""
    name, options = structured.parse_spec(text, where="bench mechanism", error=ConfigError)
    if name not in ATTENTION and name not in EXTRA_MECHANISMS:
        allowed = ", ".join(sorted([*ATTENTION, *EXTRA_MECHANISMS]))
        raise ConfigError(f"bench mechanism {name!r} is unknown; allowed: {allowed}")
    return name, options


def _make_call(spec: PointSpec) -> tuple[Callable[[], None], list[torch.Tensor]]:
    """The measured call (forward, or forward + backward) and the inputs it reads."""
    torch.manual_seed(0)
    shape = (spec.batch, spec.heads, spec.length, spec.head_dim)
    inputs = [torch.randn(shape, requires_grad=spec.backward) for _ in range(3)]
    positions = torch.arange(spec.length)
    bias_module = {"alibi": ALiBi, "t5": T5RelativeBias}.get(spec.bias)
    bias_module = bias_module(spec.heads) if bias_module else None
    if spec.name == "flex":
        attention = _flex(spec)
    elif spec.name == "local-attention":
        attention = _local_attention(spec)
    else:
        kernel = build_attention(spec.name, **spec.options)
        kernel.check(causal=spec.causal, position=spec.bias if spec.bias != "none" else "none", where="bench")

        def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            bias = bias_module(positions, positions) if bias_module is not None else None
            return kernel(q, k, v, causal=spec.causal, bias=bias)

    def call() -> None:
        if spec.backward:
            attention(*inputs).sum().backward()
            for t in inputs:
                t.grad = None
        else:
            with torch.no_grad():
                attention(*inputs)

    return call, inputs


def _flex(spec: PointSpec) -> Callable:
    """FlexAttention compiled for CPU: ALiBi as a score_mod, causality as a block mask (skips blocks)."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    if spec.bias not in ("none", "alibi"):
        raise ConfigError("bench mechanism 'flex' supports bias none or alibi")
    slopes = alibi_slopes(spec.heads)

    def alibi(score, b, h, q_idx, kv_idx):
        return score - slopes[h] * (q_idx - kv_idx).abs()

    def causal(b, h, q_idx, kv_idx):
        return q_idx >= kv_idx

    block_mask = create_block_mask(causal, None, None, spec.length, spec.length, device="cpu") if spec.causal else None
    compiled = torch.compile(flex_attention, dynamic=False)
    score_mod = alibi if spec.bias == "alibi" else None
    return lambda q, k, v: compiled(q, k, v, score_mod=score_mod, block_mask=block_mask)


def _local_attention(spec: PointSpec) -> Callable:
    """The ``local-attention`` package (optional ``bench`` extra) in the pattern of ``sliding_window``.

    ``exact_windowsize`` limits each query to the ``window`` keys before it (and, when not causal,
    after it), as ``sliding_window:window=W`` does; the package still computes its full windows.
    """
    from local_attention import LocalAttention  # ImportError -> reported as skipped

    options = dict(spec.options)
    window = options.pop("window", 512)
    if options or spec.bias != "none":
        raise ConfigError("bench mechanism 'local-attention' takes only window=W and no bias")
    if spec.length % window:  # its autopad would let non-causal queries attend the pad keys
        raise ConfigError(f"bench mechanism 'local-attention' needs a length divisible by window={window}")
    module = LocalAttention(window_size=window, causal=spec.causal, look_backward=1,
                            look_forward=0 if spec.causal else 1, exact_windowsize=True)
    return lambda q, k, v: module(q, k, v)


def status_kb(field_name: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``, ``VmSize``): Linux only."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field_name} not in /proc/self/status")


def measure_point(spec: PointSpec) -> dict[str, Any]:
    """Run one point in this process (the subprocess side): warm up, peak memory, then median time."""
    result: dict[str, Any] = {**asdict(spec), "label": spec.label}
    try:
        call, _ = _make_call(spec)
        virtual_now = status_kb("VmSize") * 1024
        cap = virtual_now + int(spec.memory_cap_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        call()  # warm-up: compilation, lazy init, thread pools
        rss_before = status_kb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS high-water mark
        call()
        result["peak_mib"] = (status_kb("VmHWM") - rss_before) / 1024
        times = []
        for _ in range(spec.repeats):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        result.update(status="ok", time_s=statistics.median(times), times_s=times)
    except (MemoryError, RuntimeError) as exc:
        if "memory" not in str(exc).lower() and not isinstance(exc, MemoryError):
            raise
        result.update(status="memory cap", error=str(exc).splitlines()[0][:200])
    except (ConfigError, NotImplementedError) as exc:  # e.g. FlexAttention has no CPU backward
        result.update(status="n/a", error=str(exc).splitlines()[0][:200])
    except ImportError as exc:  # a peer package that is not installed
        result.update(status="skipped", error=f"{exc.name or exc} is not installed (pip install 'hybridformer[bench]')")
    return result


def run_point(spec: PointSpec, *, time_cap_s: float) -> dict[str, Any]:
    """Measure ``spec`` in a fresh subprocess; a point past ``time_cap_s`` is reported as capped."""
    command = [sys.executable, "-m", "hybridformer.bench.attention", json.dumps(asdict(spec))]
    # a fixed mmap threshold makes glibc return every large free to the OS, so RSS tracks live memory
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=time_cap_s, check=False, env=env)
    except subprocess.TimeoutExpired:
        return {**asdict(spec), "label": spec.label, "status": "time cap"}
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {**asdict(spec), "label": spec.label, "status": "failed", "error": tail[:300]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_benchmark(
    mechanisms: list[str], lengths: list[int], *, causal: bool = True, backward: bool = False, bias: str = "none",
    batch: int = 1, heads: int = 8, head_dim: int = 64, repeats: int = 3, time_cap_s: float = 300.0,
    memory_cap_gb: float = 8.0, progress: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Every mechanism (``name:key=value...``) at every length; returns one result dict per point.

    A mechanism's own ``bias=...`` overrides ``bias`` for it, so a biased and an unbiased mechanism
    can be measured in one run (``-m full,chunked:bias=alibi``).
    """
    parsed = [parse_mechanism(m) for m in mechanisms]
    check_benchmark(parsed, lengths, bias=bias, batch=batch, heads=heads, head_dim=head_dim, repeats=repeats,
                    time_cap_s=time_cap_s, memory_cap_gb=memory_cap_gb)
    results = []
    for name, options in parsed:
        point_bias = str(options.pop("bias", bias))
        for length in lengths:
            spec = PointSpec(name, length, options, causal, backward, point_bias, batch, heads, head_dim, repeats,
                             memory_cap_gb)
            results.append(run_point(spec, time_cap_s=time_cap_s))
            if progress is not None:
                progress(results[-1])
    return results


BIASES = ("none", "alibi", "t5")


def check_benchmark(parsed: list[tuple[str, dict[str, Any]]], lengths: list[int], *, bias: str, **sizes: float) -> None:
    """Refuse, before anything runs, what would otherwise be reported as an "ok" point (``--heads 0``)."""
    for key, value in [("lengths", n) for n in lengths] + list(sizes.items()):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigError(f"bench: {key} must be positive, got {brief(value)}")
    if not lengths:
        raise ConfigError("bench: give at least one sequence length (-l 1024,4096)")
    for name, options in parsed:
        point_bias = options.get("bias", bias)
        if point_bias not in BIASES:
            raise ConfigError(f"bench: bias={brief(point_bias)} is unknown; allowed: {', '.join(BIASES)}")
        if name in ATTENTION:
            parse_config(AttentionConfig, {"name": name, **{k: v for k, v in options.items() if k != "bias"}},
                         prefix=f"bench mechanism {name}")


def markdown(results: list[dict[str, Any]]) -> str:
    """Mechanisms as rows, lengths as columns; cells ``time s / peak MiB`` or the cap that stopped them."""
    lengths = sorted({r["length"] for r in results})
    rows = []
    for label in dict.fromkeys(r["label"] for r in results):
        cells = [label]
        for n in lengths:
            point = next((r for r in results if r["label"] == label and r["length"] == n), None)
            if point is None:
                cells.append("")
            elif point["status"] == "ok":
                cells.append(f"{point['time_s']:.3f} s / {point['peak_mib']:.0f} MiB")
            else:
                cells.append(point["status"])
        rows.append(cells)
    return markdown_table(["mechanism", *(f"L={n}" for n in lengths)], rows)


def write_outputs(results: list[dict[str, Any]], out_dir: Path, *, title: str) -> dict[str, Path]:
    """results.json, results.md and scaling.png under ``out_dir``."""
    from .plots import plot_scaling

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "results.json", "markdown": out_dir / "results.md", "plot": out_dir / "scaling.png"}
    paths["json"].write_text(json.dumps(results, indent=2))
    paths["markdown"].write_text(f"{title}\n\n{markdown(results)}\n")
    plot_scaling(results, paths["plot"], title=title)
    return paths


if __name__ == "__main__":  # the subprocess side of run_point
    print(json.dumps(measure_point(PointSpec(**json.loads(sys.argv[1])))))
