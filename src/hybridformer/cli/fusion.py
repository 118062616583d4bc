"""``hybridformer average`` and ``hybridformer merge``: fuse checkpoints into one checkpoint directory."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import ConfigError
from ..fusion import METHODS, average_checkpoints, last_checkpoints, merge_checkpoints
from ..outputs import prepare_output_dir
from ..train import RunDir, export_ema
from .options import parse_weights


def average(
    checkpoints: list[Path] = typer.Argument(..., help="Checkpoint directories, or one RUN_DIR with --last."),
    out: Path = typer.Option(..., "--out", help="New checkpoint directory to write (written atomically)."),
    last: int = typer.Option(None, "--last", help="Average the N highest step checkpoints of RUN_DIR."),
    ema: bool = typer.Option(False, "--ema", help="Export RUN_DIR's EMA weights (train.ema_decay) instead."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing checkpoint at --out."),
) -> None:
    """Average checkpoints of one architecture, streaming tensor by tensor, or export a run's EMA weights.

    Examples:

      hybridformer average runs/a/checkpoints/step-009000 runs/a/checkpoints/step-010000 --out runs/a/avg

      hybridformer average --last 5 runs/a --out runs/a/avg5

      hybridformer average --ema runs/a --out runs/a/ema-export
    """
    if ema:
        if last is not None or len(checkpoints) != 1:
            raise ConfigError("--ema takes exactly one RUN_DIR (and no --last): it exports the average the "
                              "trainer kept during training")
        prepare_output_dir(out, overwrite=overwrite, inputs=[RunDir(checkpoints[0]).ema])
        written = export_ema(checkpoints[0], out)
        typer.echo(f"exported the EMA weights of {checkpoints[0]} -> {written}")
        return
    if last is not None:
        if len(checkpoints) != 1:
            raise ConfigError(f"--last {last} takes exactly one RUN_DIR, got {len(checkpoints)} paths")
        checkpoints = last_checkpoints(checkpoints[0], last)
    prepare_output_dir(out, overwrite=overwrite, inputs=checkpoints)
    written = average_checkpoints(checkpoints, out)
    typer.echo(f"averaged {len(checkpoints)} checkpoints ({', '.join(p.name for p in checkpoints)}) -> {written}")


def merge(
    checkpoints: list[Path] = typer.Argument(..., help="Checkpoint directories to merge (one architecture)."),
    method: str = typer.Option(..., "--method", help=f"One of: {', '.join(METHODS)}."),
    out: Path = typer.Option(..., "--out", help="New checkpoint directory to write (written atomically)."),
    base: Path = typer.Option(None, "--base", help="Shared base checkpoint (task_arithmetic, ties, dare)."),
    weights: str = typer.Option(None, "--weights", help="One weight per checkpoint, comma-separated: 0.7,0.3"),
    density: float = typer.Option(None, "--density", help="Fraction of each task vector kept (ties: 0.2, dare: 0.1)."),
    t: float = typer.Option(0.5, "--t", help="slerp position: 0 = first checkpoint, 1 = second."),
    seed: int = typer.Option(0, "--seed", help="dare: seed of the random drop."),
    combine: str = typer.Option("linear", "--combine", help="dare: combine the sparse task vectors by linear|ties."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing checkpoint at --out."),
) -> None:
    """Merge checkpoint weights into one model.

    Examples:

      hybridformer merge --method linear --weights 0.6,0.4 seed1/best seed2/best --out soup

      hybridformer merge --method slerp --t 0.3 a/best b/best --out slerp

      hybridformer merge --method ties --base pre/best --density 0.2 ft1/best ft2/best --out ties

      hybridformer merge --method dare --combine ties --base pre/best --density 0.5 ft1/best ft2/best --out dare
    """
    prepare_output_dir(out, overwrite=overwrite, inputs=[*checkpoints, *([base] if base else [])])
    written = merge_checkpoints(checkpoints, method, out, base=base, weights=parse_weights(weights),
                                density=density, t=t, seed=seed, combine=combine)
    typer.echo(f"merged {len(checkpoints)} checkpoints with {method} -> {written}")
