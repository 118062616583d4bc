"""``hybridformer convert`` (Hugging Face folder / GGUF file -> checkpoint) and ``hybridformer export``."""

from __future__ import annotations

import typer

from ..errors import ConfigError
from .progress import PROGRESS, Bar

OVERWRITE = typer.Option(False, "--overwrite", help="Replace an existing checkpoint at --out.")


def convert(
    src: str = typer.Argument(..., help="A Hugging Face model folder (config.json + safetensors) or a .gguf file."),
    out: str = typer.Option(..., "--out", help="Checkpoint directory to write."),
    overwrite: bool = OVERWRITE,
    progress: bool = PROGRESS,
) -> None:
    """Convert a pretrained model into a hybridformer checkpoint that every command can use.

    Supported: Llama, Mistral, Qwen2, SmolLM, GPT-2, BART, mBART, Marian (also from .spm files), T5,
    BERT, RoBERTa (docs/interop.md).
    The tokenizer (ids preserved), chat template and special tokens travel with the model.

    Examples:
      hybridformer convert ../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf --out smollm2
      hybridformer convert ~/models/Qwen2-0.5B --out qwen2
      echo "What is the capital of France?" | hybridformer generate smollm2 --input - --beam 1 --chat
    """
    from ..interop import convert as convert_model

    with Bar("tensors", enabled=progress) as bar:
        path = convert_model(src, out, overwrite=overwrite, progress=bar.update)
    typer.echo(f"wrote {path}")


def export(
    checkpoint: str = typer.Argument(..., help="Checkpoint directory to export."),
    to: str = typer.Option(..., "--to", help="Target format: hf (transformers folder), ct2 (CTranslate2) or "
                           "gguf (one file for llama.cpp / ollama)."),
    out: str = typer.Option(..., "--out", help="Folder to write (a .gguf file for --to gguf)."),
    quantization: str = typer.Option(None, "--quantization", help="ct2: float32, int8, int8_float32, bfloat16; "
                                     "gguf: f32 (default), f16, q8_0."),
    overwrite: bool = OVERWRITE,
    adapter: str = typer.Option(None, "--adapter", help="hf only: a LoRA adapter of the checkpoint, written beside "
                                "the base into OUT/adapter (PEFT format), or folded in with --merge-adapter."),
    merge_adapter: bool = typer.Option(False, "--merge-adapter", help="Fold --adapter into the exported weights."),
    progress: bool = PROGRESS,
) -> None:
    """Export a checkpoint to another toolkit. ``--to hf`` writes a folder transformers loads
    (Llama, Mistral, Qwen2 layouts); ``--to gguf`` a file llama.cpp runs (those, Qwen3, Gemma 3, LFM2,
    Granite-4.0-H, Falcon-H1 and GPT-2; byte-level BPE vocabularies); what the target cannot represent is
    refused by name.

    Examples:
      hybridformer export smollm2 --to hf --out smollm2-hf
      hybridformer export smollm2 --to gguf --quantization q8_0 --out smollm2-q8_0.gguf
      hybridformer export runs/mt/checkpoints/best --to ct2 --quantization int8 --out mt-ct2
      hybridformer export smollm2 --to hf --adapter runs/lora/checkpoints/best --out smollm2-hf   # + OUT/adapter
    """
    from ..interop import export as export_model
    from ..lora import export_hf_with_adapter

    if adapter is not None or merge_adapter:
        if to != "hf" or adapter is None or quantization is not None:
            raise ConfigError("--adapter (and --merge-adapter, which needs it) applies to --to hf; for ct2 fold the "
                              "adapter first: hybridformer merge --fold --adapter DIR --out DIR")
        with Bar("tensors", enabled=progress) as bar:
            path = export_hf_with_adapter(checkpoint, adapter, out, merged=merge_adapter, overwrite=overwrite,
                                          progress=bar.update)
        typer.echo(f"wrote {path}")
        return
    options = {} if quantization is None else {"quantization": quantization}
    with Bar("steps" if to == "ct2" else "tensors", enabled=progress) as bar:
        path = export_model(checkpoint, out, to=to, overwrite=overwrite, progress=bar.update, **options)
    typer.echo(f"wrote {path}")
