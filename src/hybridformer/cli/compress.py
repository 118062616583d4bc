"""``hybridformer prune`` and ``hybridformer quantize``: thin calls of ``hybridformer.compress``."""

from __future__ import annotations

from pathlib import Path

import typer


def prune(
    checkpoint: Path = typer.Argument(..., help="Checkpoint directory to prune."),
    out: Path = typer.Option(..., "--out", help="Directory for the pruned checkpoint."),
    heads: float = typer.Option(None, "--heads", help="Fraction of attention heads to remove (0-1)."),
    sparsity_: float = typer.Option(None, "--sparsity", help="Fraction of linear weights to zero (0-1)."),
    data: list[Path] = typer.Option([], "--data", help="Held-out text for head importance: "
                                    "--data SRC --data TGT (seq2seq) or --data TEXT (LM); .gz is fine."),
    scope: str = typer.Option("global", "--scope", help="Magnitude pruning scope: global or layer."),
    max_examples: int = typer.Option(512, "--max-examples", help="Held-out lines used for head importance."),
    batch_size: int = typer.Option(32, "--batch-size", help="Batch size for head importance."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing checkpoint at --out."),
) -> None:
    """Remove attention heads (structured) or zero small weights (unstructured) and save the result.

    Heads are ranked by Michel et al.'s gradient importance on --data; without data, by the norm
    of each head's output projection (a weaker, data-free proxy).

    Examples:
      hybridformer prune runs/m30k/checkpoints/best --heads 0.3 --data val.en.gz --data val.de.gz --out runs/m30k-h30
      hybridformer prune runs/m30k/checkpoints/best --sparsity 0.5 --out runs/m30k-s50
    """
    from ..compress import prune_checkpoint

    result = prune_checkpoint(checkpoint, out, heads=heads, sparsity_target=sparsity_, data=data, scope=scope,
                              max_examples=max_examples, batch_size=batch_size, overwrite=overwrite)
    if result.heads_left is not None:
        typer.echo(f"heads left: {result.heads_left} ({result.note['importance']} importance)")
    else:
        typer.echo(f"sparsity of linear weights: {result.note['sparsity']:.4f}")
    typer.echo(f"parameters: {result.numel[0]} -> {result.numel[1]}")
    typer.echo(f"saved {result.path}")


def quantize(
    checkpoint: Path = typer.Argument(..., help="Float checkpoint directory."),
    out: Path = typer.Option(..., "--out", help="Directory for the quantized checkpoint."),
    scheme: str = typer.Option("int8", "--scheme", help="Weight format of the linear layers: int8 (dynamic: "
                               "weights and activations; calibrate it for LLMs), int8-weight (weights only), int4 "
                               "(groups of 32, bf16 products) or bf16."),
    calibrate: list[Path] = typer.Option([], "--calibrate", help="Text for SmoothQuant before --scheme int8: "
                                         "--calibrate TEXT (LM) or --calibrate SRC --calibrate TGT (seq2seq)."),
    alpha: float = typer.Option(0.5, "--alpha", help="SmoothQuant's migration strength (0-1): the share of the "
                                "activation outliers moved into the weights."),
    max_examples: int = typer.Option(512, "--max-examples", help="Calibration lines used (256 tokens each at most)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing checkpoint at --out."),
) -> None:
    """Store every linear layer as int8, int4 or bf16 for CPU inference; every command loads the result.

    Embeddings, norms and attention stay float. Fine-tune, prune or merge the float checkpoint, then quantize.
    An LLM's activations have outlier channels: give --scheme int8 a little text to calibrate on.

    Examples:
      hybridformer quantize runs/m30k/checkpoints/best --out runs/m30k-int8
      hybridformer quantize smollm2 --calibrate notes.txt --out smollm2-int8
      hybridformer quantize smollm2 --scheme bf16 --out smollm2-bf16
    """
    from ..compress import quantize_checkpoint

    result = quantize_checkpoint(checkpoint, out, scheme=scheme, calibrate=calibrate, alpha=alpha,
                                 max_examples=max_examples, overwrite=overwrite)
    before, after = result.size_bytes
    typer.echo(f"weights: {before / 2**20:.2f} MiB -> {after / 2**20:.2f} MiB")
    typer.echo(f"saved {result.path}")
