"""``hybridformer bench decode``: decoding speed of a real checkpoint on each of our engines and weight
formats, beside the peers that can run the same weights, in one run.

Contenders are interleaved round by round (A B C, B C A, ...) and the median of the rounds is reported,
so background load hits all of them alike: compare ratios within one report, not across machines.
Per contender: greedy tokens/s at batch 1 and at the full batch, beam-search tokens/s, prefill tokens/s
(prompt tokens through the model up to the first new token), and the peak resident memory of a fresh
process that loads it and decodes the batch once. Greedy tokens of every fp32 path must equal the torch
fp32 engine's; the other formats report their agreement with it.
"""

from __future__ import annotations

import json
import multiprocessing
import platform
import resource
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..checkpoint import load_checkpoint, load_config_file, load_tokenizer
from ..data.text import read_lines
from ..errors import ConfigError
from .decode_contenders import Prompts, Runner, Setup, Skip, Spec, build, contenders
from .table import markdown_table

MEASURES = ("greedy_b1", "greedy_batch", "beam", "prefill")


@dataclass
class Row:
    name: str
    tokens_per_s: dict[str, float | None] = field(default_factory=dict)  # measure -> median tok/s
    peak_mib: float | None = None
    agreement: float | None = None  # greedy tokens equal to torch fp32's, before the first difference
    identical: bool | None = None  # fp32 paths: all greedy tokens equal torch fp32's
    skipped: str = ""
    warmup_s: float | None = None  # building it and a first short decode at both batch sizes (compilation included)


@dataclass
class DecodeReport:
    checkpoint: str
    settings: dict
    machine: str
    rows: list[Row]

    @property
    def fp32_identical(self) -> bool:
        return all(row.identical is not False for row in self.rows)


def make_prompts(checkpoint: Path, count: int, length: int, text: Path | None = None) -> Prompts:
    """``count`` prompts of exactly ``length`` tokens: consecutive pieces of ``text`` (tokenized with the
    checkpoint's tokenizer), or seeded random ids of ordinary tokens. Seq2seq sources end with EOS."""
    cfg = load_config_file(checkpoint)
    if text is not None:
        tokenizer = load_tokenizer(checkpoint)
        if tokenizer is None:
            raise ConfigError(f"{checkpoint}: no tokenizer.json to read --text with")
        lines = read_lines(text, limit=4 * count * length)  # a generous bound: most lines hold several tokens
        ids = [i for line in lines for i in tokenizer.encode(line, add_special_tokens=False).ids]
        if len(ids) < count * length:
            raise ConfigError(f"--text {text} holds {len(ids)} tokens; {count} prompts of {length} need "
                              f"{count * length}")
        prompts = [ids[i * length:(i + 1) * length] for i in range(count)]
    else:
        generator = torch.Generator().manual_seed(0)
        low = max(cfg.pad_id, cfg.bos_id, cfg.eos_id) + 1
        prompts = torch.randint(low, cfg.vocab_size, (count, length), generator=generator).tolist()
    return [p[:-1] + [cfg.eos_id] for p in prompts] if cfg.is_seq2seq else prompts


def run_decode_bench(
    checkpoint: str | Path, *, engines: list[str], formats: list[str], peers: list[str], prompts: int = 8,
    prompt_len: int = 32, new_tokens: int = 64, beam: int = 5, rounds: int = 3, threads: int = 1,
    text: str | Path | None = None, calibrate: str | Path | None = None, memory: bool = True,
    compiled: bool = False, progress=None,
) -> DecodeReport:
    """Measure every contender (see module docstring); ``progress(line)`` hears about each step.
    ``calibrate``: text that the int8 format is calibrated on (SmoothQuant) before it runs."""
    checkpoint = Path(checkpoint)
    for name, value, least in (("--prompts", prompts, 1), ("--prompt-len", prompt_len, 2),
                               ("--new-tokens", new_tokens, 1), ("--rounds", rounds, 1), ("--threads", threads, 1),
                               ("--beam", beam, 0)):
        if value < least:
            raise ConfigError(f"{name} must be >= {least}, got {value}")
    specs = contenders(engines, formats, peers, compiled)
    load_checkpoint(checkpoint)  # a bad checkpoint fails here, before any contender is built
    batch = make_prompts(checkpoint, prompts, prompt_len, Path(text) if text else None)
    torch.set_num_threads(threads)
    say = progress or (lambda line: None)
    with tempfile.TemporaryDirectory(prefix="bench-decode-") as work:
        setup = Setup(checkpoint, Path(work), threads, Path(calibrate) if calibrate else None)
        runners: dict[Spec, Runner] = {}
        rows = {spec: Row(spec.name) for spec in specs}
        for spec in specs:
            try:
                start = time.perf_counter()
                runners[spec] = build(spec, setup)
                for warm in (batch[:1], batch):  # warm-up: first-call costs (compilation) are not decoding speed
                    runners[spec].greedy(warm, 3)
                rows[spec].warmup_s = time.perf_counter() - start
                say(f"built {spec.name} ({rows[spec].warmup_s:.1f} s with its warm-up)")
            except Skip as exc:
                rows[spec].skipped = str(exc)
                say(f"skipped {spec.name}: {exc}")
        rates, outputs = _interleave(runners, batch, new_tokens, beam, rounds, say)
        _agreement(rows, outputs)
        for spec in runners:
            rows[spec].tokens_per_s = rates[spec]
            if memory:
                rows[spec].peak_mib = _peak_memory(spec, setup, batch, new_tokens)
                say(f"peak memory of {spec.name}: {rows[spec].peak_mib:.0f} MiB")
    settings = dict(prompts=prompts, prompt_len=prompt_len, new_tokens=new_tokens, beam=beam, rounds=rounds,
                    threads=threads, text=str(text) if text else None,
                    calibrate=str(calibrate) if calibrate else None, compiled=compiled, torch=torch.__version__)
    return DecodeReport(str(checkpoint), settings, f"{platform.processor() or platform.machine()}, "
                        f"{platform.system()}", list(rows.values()))


def _interleave(runners: dict[Spec, Runner], batch: Prompts, new_tokens: int, beam: int, rounds: int, say):
    """Tokens/s of every measure of every runner, round by round, rotating the order each round.
    Decoding rates count the tokens each call returned (an engine that stops at EOS is not flattered);
    prefill counts the prompt tokens."""
    rates = {spec: {m: [] for m in MEASURES} for spec in runners}
    outputs: dict[Spec, Prompts] = {}
    order = list(runners)
    prompt_tokens = sum(len(p) for p in batch)
    for round_ in range(rounds):
        for spec in order[round_ % len(order):] + order[: round_ % len(order)]:
            runner = runners[spec]
            calls = {"greedy_b1": lambda r=runner: r.greedy(batch[:1], new_tokens),
                     "greedy_batch": lambda r=runner: r.greedy(batch, new_tokens),
                     "prefill": lambda r=runner: r.greedy(batch, 1)}
            if beam and runner.beam is not None:
                calls["beam"] = lambda r=runner: r.beam(batch, new_tokens, beam)
            for measure, call in calls.items():
                start = time.perf_counter()
                result = call()
                seconds = time.perf_counter() - start
                tokens = prompt_tokens if measure == "prefill" else sum(len(row) for row in result)
                rates[spec][measure].append(tokens / seconds)
                if measure == "greedy_batch":
                    outputs.setdefault(spec, result)
            say(f"round {round_ + 1}/{rounds}: {spec.name}")
    medians = {spec: {m: statistics.median(r) if r else None for m, r in by.items()} for spec, by in rates.items()}
    for spec, runner in runners.items():
        if not runner.batched:  # rows one after another: not a batched number
            medians[spec]["greedy_batch"] = medians[spec]["beam"] = None
    return medians, outputs


def _agreement(rows: dict[Spec, Row], outputs: dict[Spec, Prompts]) -> None:
    reference = outputs.get(Spec("torch", "fp32"))
    if reference is None:
        return
    for spec, got in outputs.items():
        same = [_common_prefix(a, b) for a, b in zip(reference, got, strict=True)]
        rows[spec].agreement = sum(same) / sum(len(a) for a in reference)
        if spec.exact:
            rows[spec].identical = got == reference


def _common_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def _peak_memory(spec: Spec, setup: Setup, batch: Prompts, new_tokens: int) -> float:
    """Peak resident MiB of a fresh process that builds ``spec`` and greedy-decodes ``batch`` once."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_memory_child, (spec, setup, batch, new_tokens))


def _memory_child(spec: Spec, setup: Setup, batch: Prompts, new_tokens: int) -> float:
    torch.set_num_threads(setup.threads)
    build(spec, setup).greedy(batch, new_tokens)
    return _peak_rss_mib()


def _peak_rss_mib() -> float:
    """This process's peak resident memory. Linux: ``VmHWM``, which starts afresh at ``exec`` (``ru_maxrss``
    keeps the high-water mark of the parent this process was forked from)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # macOS reports bytes


# ----------------------------------------------------------------------------- report


def markdown(report: DecodeReport) -> str:
    s = report.settings
    lines = [f"bench decode {report.checkpoint}: {s['prompts']} prompts × {s['prompt_len']} tokens, "
             f"{s['new_tokens']} new tokens, beam {s['beam']}, {s['threads']} thread(s), median of "
             f"{s['rounds']} interleaved rounds; tok/s"
             + (f"; int8 calibrated on {s['calibrate']} (SmoothQuant)" if s.get("calibrate") else ""), ""]
    header = ["contender", "greedy b1", f"greedy b{s['prompts']}", f"beam-{s['beam'] or 'off'} b{s['prompts']}",
              "prefill", "peak MiB", "greedy agreement with torch fp32"]
    rows = []
    for row in report.rows:
        if row.skipped:
            rows.append([row.name, f"skipped: {row.skipped}", "", "", "", "", ""])
            continue
        cells = [f"{v:.1f}" if v is not None else "n/a" for v in (row.tokens_per_s.get(m) for m in MEASURES)]
        peak = f"{row.peak_mib:.0f}" if row.peak_mib is not None else "n/a"
        agree = "n/a" if row.agreement is None else f"{row.agreement:.1%}"
        if row.identical is not None:
            agree += " (identical)" if row.identical else " (DIFFERS: an fp32 path must be identical)"
        rows.append([row.name, *cells, peak, agree])
    notes = [f"{row.name}: built and warmed up (compiled) in {row.warmup_s:.0f} s" for row in report.rows
             if row.name.endswith(" compiled") and row.warmup_s is not None]
    return "\n".join([*lines, markdown_table(header, rows, align="lrrrrrl"), *([""] + notes if notes else [])]) + "\n"


def write_decode_report(report: DecodeReport, out: str | Path) -> Path:
    """``decode.json`` and ``decode.md`` in ``out`` (the caller checked it with ``prepare_output_dir``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = {"checkpoint": report.checkpoint, "settings": report.settings, "machine": report.machine,
            "fp32_identical": report.fp32_identical, "rows": [asdict(r) for r in report.rows]}
    (out / "decode.json").write_text(json.dumps(data, indent=2))
    (out / "decode.md").write_text(markdown(report))
    return out
