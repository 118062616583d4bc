"""``hybridformer longify``: long-text attention and longer positions for a trained checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer

from ..longify import longify as longify_api


def longify(
    checkpoint: Path = typer.Argument(..., help="Checkpoint directory to extend."),
    attention: str = typer.Option(..., "--attention", help="NAME[:key=value,...], e.g. sliding_window:window=2048 "
                                  "(names: hybridformer.attention.ATTENTION)."),
    layers: str = typer.Option("all", "--layers", help="Layers to change in each chosen stack: all | 0,2,4 | every:N."),
    stack: str = typer.Option(None, "--stack", help="encoder | decoder | both (default: a decoder LM's decoder, "
                              "otherwise the encoder)."),
    max_positions: int = typer.Option(None, "--max-positions", help="New position limit; learned tables are "
                                      "tiled from their trained rows."),
    rope_scaling: str = typer.Option(None, "--rope-scaling", help="RoPE models: none | linear:F | ntk:F | yarn:F "
                                     "| dynamic:F."),
    global_tokens: int = typer.Option(0, "--global-tokens", help="The first K tokens attend and are attended "
                                      "everywhere (sliding_window's num_global; sink tokens in a decoder, at "
                                      "cache positions with sliding_window:sink_positions=cache)."),
    out: Path = typer.Option(..., "--out", help="Directory for the longified checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing checkpoint at --out."),
) -> None:
    """Swap the self-attention of chosen layers for a long-text mechanism, keeping every weight (LED recipe).

    Examples:

      hybridformer longify runs/lm/best --attention sliding_window:window=2048 --global-tokens 4 --out lm-long

      hybridformer longify smollm2 --attention sliding_window:window=2048,sink_positions=cache --global-tokens 4
        --out smollm2-streaming   (StreamingLLM: sinks seen from the query's place in the rolling cache)

      hybridformer longify smollm2 --attention full --rope-scaling yarn:4 --max-positions 32768 --out smollm2-yarn

      hybridformer longify imdb/best --attention sliding_window:window=256 --global-tokens 1 --max-positions 4096
        --out imdb-4k

      hybridformer longify m30k/best --stack encoder --layers every:2 --attention sliding_window:window=64 --out m30k-l
    """
    written = longify_api(checkpoint, out, attention=attention, layers=layers, stack=stack,
                          max_positions=max_positions, rope_scaling=rope_scaling, global_tokens=global_tokens,
                          overwrite=overwrite)
    typer.echo(f"longified {checkpoint} -> {written}")
