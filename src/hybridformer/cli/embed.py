"""``hybridformer embed``: sentence embeddings from an encoder checkpoint (a converted BERT/RoBERTa/MiniLM)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import ConfigError
from ..names import POOLS
from ..outputs import prepare_output_file
from .generate import DEVICE


def embed_cmd(
    checkpoint: str = typer.Argument(..., help="Encoder checkpoint (e.g. `hybridformer convert` of a BERT folder)."),
    input: str = typer.Option(..., "--input", "-i", help="Text file with one sentence per line; - reads stdin."),
    output: str = typer.Option(None, "--output", "--out", "-o", help="File to write: NAME.npy (a float32 array, "
                               "one row per line) or JSON lines; default: JSON lines on stdout."),
    pool: str = typer.Option("mean", "--pool", help=f"Pooling: {' | '.join(POOLS)} (mean of the token states, as "
                             "sentence-transformers; or the first token's, [CLS])."),
    normalize: bool = typer.Option(False, "--normalize", help="Scale each embedding to unit length (dot = cosine)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Sentences per forward pass."),
    device: str = DEVICE,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output file."),
) -> None:
    """Embed each line of --input; one embedding per line, in input order.

    JSON lines hold {"embedding": [...]} per input line; a .npy file holds an (n, d_model) float32 array.

    Examples:
      hybridformer convert ~/models/all-MiniLM-L6-v2 --out minilm
      hybridformer embed minilm --input sentences.txt --normalize --output vectors.npy
      echo "A man is playing guitar." | hybridformer embed minilm --input -
    """
    from ..checkpoint import load_checkpoint
    from ..data.text import iter_lines
    from ..embed import embed_lines, jsonl_rows, save_embeddings

    if pool not in POOLS:
        raise ConfigError(f"--pool {pool!r} is unknown; choose one of: {', '.join(POOLS)}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    target = prepare_output_file(output, overwrite=overwrite, inputs=[checkpoint, input]) if output else None
    ckpt = load_checkpoint(checkpoint, device)
    chunks = embed_lines(ckpt, iter_lines(input, require=True), pool=pool, normalize=normalize,
                         batch_size=batch_size)
    if target is None:
        for vectors in chunks:
            for row in jsonl_rows(vectors):
                typer.echo(row)
        return
    count = save_embeddings(chunks, Path(target))
    typer.echo(f"wrote {count} embeddings to {target}", err=True)
