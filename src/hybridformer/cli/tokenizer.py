"""``hybridformer tokenizer train FILES... --vocab-size N --out tokenizer.json``."""

from __future__ import annotations

from pathlib import Path

import typer

from ..outputs import prepare_output_file

app = typer.Typer(no_args_is_help=True, help="Learn tokenizers (BPE with byte fallback, characters, or plain bytes).")


@app.command("train")
def train(
    files: list[Path] = typer.Argument(..., help="Plain-text files (.gz allowed), one text per line."),
    vocab_size: int = typer.Option(8000, "--vocab-size", help="Total ids, incl. 4 special and 256 byte tokens."),
    out: Path = typer.Option(..., "--out", help="Where to write tokenizer.json."),
    kind: str = typer.Option("bpe", "--kind", help="bpe (subwords), char (one id per character) or byte (256 bytes)."),
    min_frequency: int = typer.Option(2, "--min-frequency", help="BPE: ignore pairs seen fewer times."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file at --out."),
) -> None:
    """Learn a tokenizer. Pass both sides' files for a joint vocabulary, or one side's for a per-side one.

    Examples:
      hybridformer tokenizer train data/train.en data/train.de --vocab-size 8000 --out tok.json
      hybridformer tokenizer train input.txt --kind char --out chars.json
    """
    from ..data.tokenizer import train_tokenizer_files

    prepare_output_file(out, overwrite=overwrite, inputs=files)
    tokenizer = train_tokenizer_files(files, vocab_size, kind=kind, min_frequency=min_frequency)
    out.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out))
    typer.echo(f"wrote {out} ({tokenizer.get_vocab_size()} tokens)")
