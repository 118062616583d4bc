"""``hybridformer train CONFIG.yaml --out RUN_DIR [--set k=v ...] [--resume]``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from ..train import TrainResult


def train(
    config: Path = typer.Argument(..., help="Experiment YAML with model/data/train sections (see configs/)."),
    out: Path = typer.Option(..., "--out", help="Run directory: checkpoints, metrics.jsonl, tb/."),
    set_: list[str] = typer.Option([], "--set", help="Override a key, e.g. --set train.lr=3e-4"),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from the newest checkpoint in --out "
                                "(also after Ctrl-C, which saves one at the next step boundary)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
) -> None:
    """Train a model. Under `torchrun --nproc-per-node N` the same command runs data-parallel.

    Examples:
      hybridformer train configs/shakespeare-char.yaml --out runs/shakespeare --set train.max_steps=500
      hybridformer train configs/multi30k-transformer.yaml --out runs/m30k --resume
      torchrun --nproc-per-node 2 -m hybridformer.cli train configs/multi30k-transformer.yaml --out runs/ddp
    """
    from ..train import train as run_training

    result = run_training(config, out, overrides=set_, resume=resume, progress=progress)
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(f"{result.status} at step {result.step}: best valid loss {result.best_valid_loss:.4f}; "
                   f"checkpoints in {result.run_dir / 'checkpoints'}")
    raise typer.Exit(exit_status(result))


def exit_status(result: TrainResult) -> int:
    """0 done (completed or early-stopped), 3 diverged, 128 + signal when interrupted (130 for Ctrl-C)."""
    if result.status == "diverged":
        return 3
    if result.status == "interrupted":
        return 128 + (result.signal or 2)
    return 0
