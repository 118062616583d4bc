"""``hybridformer quickstart [--out DIR] [--fast | --steps N] [--seed S]``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from ..quickstart import QuickstartResult


TABLE_WIDTH = 104  # the summary table's full width


def quickstart(
    out: Path = typer.Option(Path("hybridformer-quickstart"), "--out", help="Directory for data, runs, checkpoints."),
    steps: int = typer.Option(None, "--steps", help="Optimizer steps per model (default 800; 10 with --fast)."),
    fast: bool = typer.Option(False, "--fast", help="A shortened run that only checks the pipeline "
                              "(the models do not learn)."),
    seed: int = typer.Option(1, "--seed", help="Training seed (initialisation and batch order)."),
    jobs: int = typer.Option(2, "--jobs", help="Models trained at once, one process each."),
    threads: int = typer.Option(1, "--threads", help="CPU threads per process (torch.set_num_threads)."),
    beam: int = typer.Option(4, "--beam", help="Beam size for decoding the test set."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a previous quickstart run in --out."),
) -> None:
    """Train a Transformer and a Conformer on a built-in task (digits -> English words), decode the
    test set with beam search, evaluate their ensemble and checkpoint averages, print a summary.

    Needs no data and no downloads; 150 CPU-seconds (87 s wall on an idle 2-core CPU).
    """
    from ..quickstart import quickstart as run_quickstart

    console = Console(width=max(Console().width, TABLE_WIDTH))  # a pipe or narrow terminal must not cut headers
    result = run_quickstart(out, steps=steps, fast=fast, seed=seed, jobs=jobs, threads=threads, beam=beam,
                            overwrite=overwrite, progress=True, log=console.print)
    console.print(summary_table(result))
    console.print(f"wall time {result.wall_s:.0f} s, CPU time {result.cpu_s:.0f} s ({result.steps} steps per model, "
                  f"{result.jobs} process(es) x {result.threads} thread(s))", highlight=False)
    console.print(f"summary: {result.out / 'quickstart.json'}", highlight=False)
    console.print("checkpoints:")
    for row in result.rows:
        console.print(f"  {row.name:<18} {', '.join(row.checkpoints)}", highlight=False, soft_wrap=True)
    console.print("next, try:")
    for command in result.commands:
        console.print(f"  {command}", highlight=False, markup=False, soft_wrap=True)  # keep commands copyable


def summary_table(result: QuickstartResult) -> Table:
    """The summary as a rich table: one row per model, ensemble and checkpoint average."""
    table = Table(title=f"numbers -> words: {result.test_examples} held-out test examples, beam {result.beam}")
    for header in ("model", "params", "valid loss", "exact %", "BLEU", "chrF", "train tok/s", "train s", "decode s"):
        table.add_column(header, justify="left" if header == "model" else "right", no_wrap=header == "model")
    for row in result.rows:
        table.add_row(row.name, f"{row.params / 1e6:.2f}M", _num(row.valid_loss, 3), f"{row.exact_match:.1f}",
                      f"{row.bleu:.1f}", f"{row.chrf:.1f}", _num(row.tokens_per_s, 0), _num(row.train_s, 0),
                      f"{row.decode_s:.1f}")
    return table


def _num(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"
