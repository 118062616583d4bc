"""``hybridformer export``: a checkpoint in another toolkit's format (CTranslate2)."""

from __future__ import annotations

import typer

from ..errors import ConfigError

TARGETS = ("ct2",)


def export_cmd(
    checkpoint: str = typer.Argument(..., help="Checkpoint directory."),
    to: str = typer.Option(..., "--to", help="Target format: ct2 (CTranslate2)."),
    out: str = typer.Option(..., "--out", help="Directory to write the export to."),
    quantization: str = typer.Option("float32", "--quantization",
                                     help="ct2: float32 | int8 | int8_float32 | bfloat16 weights."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing export at --out."),
) -> None:
    """Export a checkpoint for another inference engine; the tokenizer travels with it.

    --to ct2 writes a CTranslate2 model (ctranslate2.Translator for seq2seq, ctranslate2.Generator
    for language models) that `generate --engine ct2` and `serve --engine ct2` run directly.

    Examples:
      hybridformer export runs/mt/checkpoints/best --to ct2 --out exports/mt-ct2
      hybridformer export runs/mt/checkpoints/best --to ct2 --quantization int8 --out exports/mt-ct2-int8
    """
    if to not in TARGETS:
        raise ConfigError(f"--to must be one of {', '.join(TARGETS)}, got {to!r}")
    from ..interop.ct2 import export_ct2

    path = export_ct2(checkpoint, out, quantization=quantization, overwrite=overwrite)
    typer.echo(f"wrote {path} (CTranslate2, {quantization})")
