"""``hybridformer bench serve``: the HTTP server's throughput and latency under concurrent clients."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import typer

from ..errors import ConfigError
from .options import parse_list, split_list

# The shared data beside the checkout (``../shared/data``), found from this file, not the working directory.
DEFAULT_SENTENCES = Path(__file__).resolve().parents[4] / "shared" / "data" / "multi30k" / "test_2016_flickr.en.gz"


def _is_language_model(checkpoint: Path) -> bool:
    from ..checkpoint import load_config_file
    from ..interop.ct2 import exported_config

    exported = exported_config(checkpoint)
    if exported is not None:
        return exported.get("arch") == "decoder_lm"
    return load_config_file(checkpoint).arch == "decoder_lm"


def _span(text: str, option: str) -> tuple[int, int]:
    """``MIN-MAX`` (or one number) as a pair of positive integers."""
    low, _, high = text.partition("-")
    try:
        span = (int(low), int(high or low))
    except ValueError:
        span = (0, 0)
    if not 1 <= span[0] <= span[1]:
        raise ConfigError(f"{option} must be MIN-MAX with 1 <= MIN <= MAX (or one number), got {text!r}")
    return span


def bench_serve(
    checkpoint: Path = typer.Argument(..., help="Checkpoint directory (or a CTranslate2 export)."),
    out: Path = typer.Option(..., "--out", help="Directory for results.json and results.md."),
    clients: str = typer.Option("1,4,16,64", "--clients", help="Concurrent client counts, comma-separated."),
    requests: int = typer.Option(256, "--requests", min=1, help="Requests per (mode, client count)."),
    engines: str = typer.Option("torch,ct2", "--engines", help="Engines to compare (names in ENGINES: torch, ct2)."),
    batching: str = typer.Option("both", "--batching", help="off (one request at a time), on, or both."),
    sentences: Path = typer.Option(DEFAULT_SENTENCES, "--sentences", help="One input per line (.gz allowed): "
                                   "Multi30k English by default; an LM's prompts are runs of consecutive lines."),
    threads: int = typer.Option(1, "--threads", min=1, help="CPU threads of the server."),
    max_wait_ms: float = typer.Option(10.0, "--max-wait-ms", min=0.0, help="Server: dynamic batching wait."),
    max_batch_tokens: int = typer.Option(4096, "--max-batch-tokens", min=1, help="Server: tokens per batch."),
    max_tokens: str = typer.Option("16-128", "--max-tokens", help="LM chat requests: each answer's budget, drawn "
                                   "from MIN-MAX (or one number)."),
    prompt_words: str = typer.Option("15-300", "--prompt-words", help="LM chat requests: each prompt's length in "
                                     "words, drawn from MIN-MAX (or one number)."),
    time_cap: float = typer.Option(600.0, "--time-cap", min=1.0, help="Seconds per cell before it stops early."),
) -> None:
    """Start `hybridformer serve` on localhost and drive it with 1..N concurrent clients: throughput,
    p50/p95/p99 latency, time to first token (LMs, streamed), errors, wrong answers, server CPU time and peak
    memory, per engine, with and without batching (continuous where the engine joins rows, else dynamic).

    Example:
      nice -n 10 hybridformer bench serve runs/mt/checkpoints/best --clients 1,4,16,64 --requests 256 --out runs/load
    """
    from ..bench.serve import chat_workload, markdown, read_sentences, run_load_test, write_results
    from ..engines import ENGINES

    engine_list = split_list(engines)
    if not engine_list or set(engine_list) - set(ENGINES):
        raise ConfigError(f"--engines must list some of {', '.join(ENGINES)}, got {engines!r}")
    modes = {"off": [False], "on": [True], "both": [False, True]}.get(batching)
    if modes is None:
        raise ConfigError(f"--batching must be off, on or both, got {batching!r}")
    counts = parse_list(clients, int, option="--clients", example="1,4,16,64")
    if not counts or min(counts) < 1:
        raise ConfigError(f"--clients must list positive integers, got {clients!r}")
    lm = _is_language_model(checkpoint)
    lines = read_sentences(sentences, 5000 if lm else requests)
    if lm:
        workload = chat_workload(lines, requests, _span(prompt_words, "--prompt-words"),
                                 _span(max_tokens, "--max-tokens"))
    else:
        workload = [(line, 0) for line in lines]

    def progress(row: dict) -> None:
        typer.echo(f"{row['engine']:<5} batching={'on ' if row['batching'] else 'off'} clients={row['clients']:<3} "
                   f"{row['throughput_rps']:>8.2f} req/s {row['tokens_per_s']:>8.1f} tok/s  p50 {row['p50_ms']:>8.1f} "
                   f"ms  TTFT p95 {row['ttft_p95_ms'] or '-'} ms  errors {row['errors']} wrong {row['wrong']}",
                   err=True)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed benchmark still stops its servers
    rows = run_load_test(checkpoint, workload, lm=lm, clients=counts, requests=requests, engines=engine_list,
                         batching_modes=modes, threads=threads, max_wait_ms=max_wait_ms,
                         max_batch_tokens=max_batch_tokens, time_cap=time_cap,
                         progress=progress)
    meta = {"checkpoint": str(checkpoint), "sentences": str(sentences), "requests": requests, "threads": threads,
            "max_wait_ms": max_wait_ms, "max_batch_tokens": max_batch_tokens, "language_model": lm,
            "prompt_words": prompt_words if lm else None, "max_tokens": max_tokens if lm else None}
    paths = write_results(rows, out, meta)
    typer.echo(markdown(rows))
    typer.echo(f"wrote {paths['json']}, {paths['markdown']}")
