"""``hybridformer bench throughput``: training and generation speed against peers, in one process.

Every contender is timed in the same run, interleaved (A B C A B C ...), and the median of the
repeats is reported, so background noise hits all of them alike; results are ratios to peers
and a fraction of this machine's measured fp32 GEMM peak.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..config import ModelConfig, apply_overrides, parse_config, read_config_file
from ..errors import ConfigError
from .peers import PEERS, Contender, Size, hybridformer
from .table import markdown_table

SIZES = {
    "default": Size(),
    "d512": Size(d_model=512, heads=8, ffn_dim=2048),
    "lm1024": Size(lm=True, batch=4, tgt_len=1024, src_len=0, layers=3),
    "tiny": Size(d_model=32, heads=2, layers=1, ffn_dim=64, vocab=100, batch=2, src_len=8, tgt_len=8),
}


@dataclass
class Result:
    size: str
    contender: str
    version: str
    train_tokens_per_s: float | None = None
    train_gflops_per_s: float | None = None
    greedy_tokens_per_s: float | None = None
    beam_tokens_per_s: float | None = None
    skipped: str = ""


@dataclass
class Report:
    gemm_peak_gflops: float
    threads: int
    machine: str
    results: list[Result] = field(default_factory=list)


def gemm_peak(n: int = 2048, repeats: int = 5) -> float:
    """This machine's fp32 matmul throughput in GFLOP/s (best of ``repeats``)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> float:
    start = clock()
    fn()
    return clock() - start


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1,
                clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median seconds per call of each function, timed round-robin so drift hits all equally.

    ``clock=time.process_time`` measures this process's CPU time instead of wall time: with one thread it
    is what the work costs, whatever else the machine runs."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(_timed(fn, clock))
    return {name: statistics.median(values) for name, values in times.items()}


def _batch(size: Size) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    src = torch.randint(3, size.vocab, (size.batch, max(size.src_len, 1)), generator=gen)
    tgt = torch.randint(3, size.vocab, (size.batch, size.tgt_len + 1), generator=gen)
    return src, tgt[:, :-1], tgt[:, 1:]


def _train_step(contender: Contender, batch) -> Callable[[], None]:
    optimizer = torch.optim.AdamW(contender.model.parameters(), lr=1e-4, fused=True)  # the same for every contender
    contender.model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        contender.loss(*batch).backward()
        optimizer.step()

    return step


def training_flops(contender: Contender, batch) -> int:
    """FLOPs of one forward+backward (the optimizer step is negligible), counted by PyTorch."""
    with FlopCounterMode(display=False) as counter:
        contender.loss(*batch).backward()
    contender.model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def size_of(cfg: ModelConfig) -> Size:
    """The benchmark size a model config describes (peers are built at the same size)."""
    stack = cfg.decoder if cfg.arch == "decoder_lm" else cfg.encoder
    return Size(d_model=cfg.d_model, heads=cfg.heads, layers=stack.layers, ffn_dim=cfg.ffn_dim,
                vocab=cfg.vocab_size, lm=cfg.arch == "decoder_lm",
                **({"batch": 4, "src_len": 0, "tgt_len": 1024} if cfg.arch == "decoder_lm" else {}))


def load_contenders(size: Size, peers: list[str], config: ModelConfig | None = None
                    ) -> tuple[list[Contender], list[Result]]:
    contenders, skipped = [hybridformer(size, config)], []
    for name in peers:
        try:
            contenders.append(PEERS[name](size))
        except ImportError as exc:
            skipped.append(Result("", name, "", skipped=f"not installed ({exc.name}); pip install -e '.[bench]'"))
    return contenders, skipped


def run_size(name: str, size: Size, peers: list[str], repeats: int, steps: int, beams: int,
             config: ModelConfig | None = None) -> list[Result]:
    torch.manual_seed(0)
    contenders, skipped = load_contenders(size, peers, config)
    batch = _batch(size)
    results = {c.name: Result(name, c.name, c.version) for c in contenders}
    train_times = interleaved({c.name: _train_step(c, batch) for c in contenders}, repeats)
    tokens = size.batch * size.tgt_len
    for c in contenders:
        results[c.name].train_tokens_per_s = tokens / train_times[c.name]
        results[c.name].train_gflops_per_s = training_flops(c, batch) / train_times[c.name] / 1e9
    if not size.lm:
        src = batch[0][:8]
        for mode, attr in (("greedy", "greedy_tokens_per_s"), ("beam", "beam_tokens_per_s")):
            runners = {c.name: _generation(c, mode, src, steps, beams) for c in contenders}
            runners = {k: v for k, v in runners.items() if v is not None}
            for c in contenders:
                c.model.eval()
            with torch.inference_mode():
                gen_times = interleaved(runners, repeats)
            for contender_name, seconds in gen_times.items():
                setattr(results[contender_name], attr, src.shape[0] * steps / seconds)
    for result in skipped:
        result.size = name
    return list(results.values()) + skipped


def _generation(c: Contender, mode: str, src, steps: int, beams: int) -> Callable[[], object] | None:
    if mode == "greedy":
        return None if c.greedy is None else (lambda: c.greedy(src, steps))
    return None if c.beam is None else (lambda: c.beam(src, steps, beams))


def run(sizes: list[str], peers: list[str] | None = None, *, repeats: int = 5, steps: int = 64, beams: int = 5,
        threads: int | None = None, config: ModelConfig | None = None) -> Report:
    """Benchmark the named sizes (``SIZES``), or one ``config``, against ``peers`` (default: all of ``PEERS``)."""
    unknown = [name for name in sizes if name not in SIZES]
    if unknown:
        raise ConfigError(f"unknown benchmark size(s) {', '.join(unknown)}; allowed: {', '.join(SIZES)}")
    unknown = [name for name in peers or [] if name not in PEERS]
    if unknown:
        raise ConfigError(f"unknown peer(s) {', '.join(unknown)}; allowed: {', '.join(PEERS)}")
    if threads:
        torch.set_num_threads(threads)
    report = Report(gemm_peak(512 if sizes == ["tiny"] else 2048), torch.get_num_threads(),
                    f"{platform.machine()} {platform.processor() or ''}".strip())
    peers = list(PEERS) if peers is None else peers
    if config is not None:
        report.results += run_size("config", size_of(config), peers, repeats, steps, beams, config)
    for name in sizes if config is None else []:
        report.results += run_size(name, SIZES[name], peers, repeats, steps, beams)
    return report


def markdown(report: Report) -> str:
    """A table per size: tokens/s and the ratio of hybridformer to each peer."""
    lines = [f"fp32 GEMM peak (2048² matmul): {report.gemm_peak_gflops:.1f} GFLOP/s, {report.threads} threads", ""]
    for size in dict.fromkeys(r.size for r in report.results):
        rows = [r for r in report.results if r.size == size]
        ours = next(r for r in rows if r.contender == "hybridformer")
        cells = []
        for r in rows:
            if r.skipped:
                cells.append([r.contender, f"skipped: {r.skipped}", *[""] * 7])
                continue
            peak = f"{100 * r.train_gflops_per_s / report.gemm_peak_gflops:.0f}%" if r.train_gflops_per_s else ""
            cells.append([r.contender, r.version, _fmt(r.train_tokens_per_s),
                          _ratio(ours.train_tokens_per_s, r.train_tokens_per_s), peak, _fmt(r.greedy_tokens_per_s),
                          _ratio(ours.greedy_tokens_per_s, r.greedy_tokens_per_s), _fmt(r.beam_tokens_per_s),
                          _ratio(ours.beam_tokens_per_s, r.beam_tokens_per_s)])
        header = ["contender", "version", "train tok/s", "× ours", "% GEMM peak", "greedy tok/s", "× ours",
                  "beam tok/s", "× ours"]
        lines += [f"### {size}", "", markdown_table(header, cells), ""]
    lines.append("`× ours` = hybridformer's throughput divided by this row's (above 1: hybridformer is faster).")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"


def _ratio(ours: float | None, theirs: float | None) -> str:
    return "" if not ours or not theirs else f"{ours / theirs:.2f}"


def write(report: Report, out: str | Path) -> tuple[Path, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "throughput.json").write_text(json.dumps(asdict(report), indent=2))
    (out / "throughput.md").write_text(markdown(report) + "\n")
    return out / "throughput.json", out / "throughput.md"


def read_model_config(path: str | Path, overrides: list[str] = ()) -> ModelConfig:
    """The model a benchmark builds: ``path`` holds ModelConfig keys or an experiment's ``model:`` section,
    ``overrides`` are ``key=value`` edits of it (as ``--set``)."""
    data = read_config_file(path)
    return parse_config(ModelConfig, apply_overrides(data.get("model", data), list(overrides)), prefix="model")
