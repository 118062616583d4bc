"""``hybridformer convert`` (Hugging Face folder / GGUF file -> checkpoint) and ``hybridformer export``."""

from __future__ import annotations

import typer

from ..interop import convert as convert_model

OVERWRITE = typer.Option(False, "--overwrite", help="Replace an existing checkpoint at --out.")


def convert(
    src: str = typer.Argument(..., help="A Hugging Face model folder (config.json + safetensors) or a .gguf file."),
    out: str = typer.Option(..., "--out", help="Checkpoint directory to write."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Convert a pretrained model into a hybridformer checkpoint that every command can use.

    Supported: Llama, Mistral, Qwen2, SmolLM (and the other families listed in docs/interop.md).
    The tokenizer (ids preserved), chat template and special tokens travel with the model.

    Examples:
      hybridformer convert ../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf --out smollm2
      hybridformer convert ~/models/Qwen2-0.5B --out qwen2
      echo "What is the capital of France?" | hybridformer generate smollm2 --input - --beam 1 --chat
    """
    path = convert_model(src, out, overwrite=overwrite)
    typer.echo(f"wrote {path}")
