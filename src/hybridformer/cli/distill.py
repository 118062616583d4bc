"""``hybridformer distill --teacher CKPT [CKPT...] --config STUDENT.yaml --out RUN_DIR``."""

from __future__ import annotations

from pathlib import Path

import typer

from .options import parse_weights
from .train import exit_status


def distill(
    teacher: list[Path] = typer.Option(..., "--teacher", help="Teacher checkpoint; repeat it for an ensemble."),
    config: Path = typer.Option(..., "--config", help="Student experiment YAML (model/data/train sections)."),
    out: Path = typer.Option(..., "--out", help="Run directory of the student (checkpoints, metrics.jsonl)."),
    set_: list[str] = typer.Option([], "--set", help="Override a student config key, e.g. --set train.max_steps=500"),
    kind: str = typer.Option("word", "--kind", help="word: KL to the teachers per token; sequence: train on "
                             "their beam outputs."),
    alpha: float = typer.Option(0.5, "--alpha", help="word: weight of the KL term (0 = labels only, 1 = KL only)."),
    temperature: float = typer.Option(1.0, "--temperature", help="word: softmax temperature of both sides."),
    weights: str = typer.Option(None, "--weights", help="Teacher ensemble weights, comma-separated: 2,1,1"),
    combine: str = typer.Option("prob", "--combine", help="Teacher ensemble: mean of prob or log_prob."),
    beam: int = typer.Option(5, "--beam", help="sequence: beam size of the teachers' decoding."),
    lenpen: float = typer.Option(1.0, "--lenpen", help="sequence: length penalty of the teachers' decoding."),
    batch_tokens: int = typer.Option(4096, "--batch-tokens", help="sequence: source tokens per decoding batch."),
    references: bool = typer.Option(False, "--with-references", help="sequence: train on the teachers' outputs "
                                    "and the original references together (both targets of every source)."),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from the newest checkpoint in --out."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
) -> None:
    """Distill one teacher, or an ensemble of teachers, into a student trained by the normal trainer.

    Examples:

      hybridformer distill --teacher runs/t1/checkpoints/best --teacher runs/t2/checkpoints/best
      --config configs/multi30k-small.yaml --out runs/student --set model.d_model=128 --alpha 0.5

      hybridformer distill --kind sequence --beam 4 --teacher runs/t1/checkpoints/best
      --config configs/multi30k-small.yaml --out runs/seqkd

      hybridformer distill --kind sequence --beam 5 --lenpen 1.2 --teacher a/avg5 --teacher b/avg5
      --weights @weights.json --with-references --config configs/multi30k-conformer-distilled.yaml --out runs/student
    """
    from ..train.distill import distill as run_distill

    result = run_distill(teacher, config, out, overrides=set_, kind=kind, alpha=alpha, temperature=temperature,
                         weights=parse_weights(weights), combine=combine, beam=beam, lenpen=lenpen,
                         batch_tokens=batch_tokens, references=references, resume=resume, progress=progress)
    typer.echo(f"{result.status} at step {result.step}: best valid loss {result.best_valid_loss:.4f}; "
               f"checkpoints in {result.run_dir / 'checkpoints'}")
    raise typer.Exit(exit_status(result))
