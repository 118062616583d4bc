"""``hybridformer prune``, ``hybridformer quantize`` and ``hybridformer bench compress``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..bench.compress import benchmark_compression, state_size
from ..checkpoint import load_checkpoint, save_checkpoint
from ..compress import (
    head_counts,
    head_importance,
    magnitude_prune,
    prune_heads,
    quantize_model,
    sparsity,
    weight_importance,
)
from ..compress.data import text_batches
from ..config import load_config
from ..errors import ConfigError
from ..outputs import prepare_output_dir


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
    if (heads is None) == (sparsity_ is None):
        raise ConfigError("give exactly one of --heads FRACTION or --sparsity FRACTION")
    prepare_output_dir(out, overwrite=overwrite, inputs=[checkpoint, *data])
    ckpt = load_checkpoint(checkpoint)
    model, config = ckpt.model, ckpt.config
    if config.quantization is not None:
        raise ConfigError(f"{checkpoint} is quantized; prune the float checkpoint, then quantize")
    before, _ = state_size(model)
    if heads is not None:
        if data:
            batches = text_batches(_tokenizer(ckpt), config, data, max_examples=max_examples, batch_size=batch_size)
            importance, method = head_importance(model, batches), "gradient"
        else:
            importance, method = weight_importance(model), "weight_norm"
        config = prune_heads(model, config, heads, importance)
        counts = head_counts(model)
        note = {"method": "heads", "fraction": heads, "importance": method, "heads_left": sum(counts.values())}
        typer.echo(f"heads left: {sum(counts.values())} ({method} importance)")
    else:
        magnitude_prune(model, sparsity_, scope=scope)
        note = {"method": "magnitude", "sparsity": round(sparsity(model), 6), "scope": scope}
        typer.echo(f"sparsity of linear weights: {note['sparsity']:.4f}")
    after, _ = state_size(model)
    typer.echo(f"parameters: {before} -> {after}")
    save_checkpoint(out, model, config, ckpt.tokenizer, meta=_meta(ckpt.meta, checkpoint, note))
    typer.echo(f"saved {out}")


def quantize(
    checkpoint: Path = typer.Argument(..., help="Float checkpoint directory."),
    out: Path = typer.Option(..., "--out", help="Directory for the int8 checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing checkpoint at --out."),
) -> None:
    """Quantize every linear layer to int8 (dynamic, per channel) for CPU inference.

    Example: hybridformer quantize runs/m30k/checkpoints/best --out runs/m30k-int8
    """
    prepare_output_dir(out, overwrite=overwrite, inputs=[checkpoint])
    ckpt = load_checkpoint(checkpoint)
    _, before = state_size(ckpt.model)
    model, config = quantize_model(ckpt.model, ckpt.config)
    _, after = state_size(model)
    typer.echo(f"weights: {before / 2**20:.2f} MiB -> {after / 2**20:.2f} MiB")
    save_checkpoint(out, model, config, ckpt.tokenizer,
                    meta=_meta(ckpt.meta, checkpoint, {"method": "dynamic_int8"}))
    typer.echo(f"saved {out}")


def _tokenizer(ckpt):
    if ckpt.tokenizer is None:
        raise ConfigError(f"{ckpt.path} has no tokenizer.json; cannot read --data text for head importance")
    return ckpt.tokenizer


def _meta(meta: dict, source: Path, note: dict) -> dict:
    return {**meta, "compression": [*meta.get("compression", []), {**note, "source": str(source)}]}


def bench_compress(
    config: Path = typer.Argument(None, help="Model config YAML (defaults when omitted)."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key, e.g. --set d_model=512"),
    heads: float = typer.Option(0.5, "--heads", help="Fraction of heads removed in the pruned variant."),
    batch_size: int = typer.Option(8, "--batch-size"),
    src_len: int = typer.Option(24, "--src-len"),
    new_tokens: int = typer.Option(32, "--new-tokens"),
    repeats: int = typer.Option(5, "--repeats"),
    threads: int = typer.Option(None, "--threads", help="CPU threads (torch.set_num_threads)."),
    out: Path = typer.Option(None, "--out", help="Directory for compress.json."),
) -> None:
    """CPU greedy-decoding tokens/s of float vs int8 vs head-pruned (random init), as ratios to float.

    Example: hybridformer bench compress --set dropout=0 --threads 1 --out benchmarks/compress
    """
    cfg = load_config(config, set_)
    result = benchmark_compression(cfg, head_fraction=heads, batch_size=batch_size, src_len=src_len,
                                   new_tokens=new_tokens, repeats=repeats, threads=threads)
    typer.echo(f"{'variant':<16}{'tokens/s':>10}{'speedup':>9}{'elements':>12}{'MiB':>9}")
    for name, row in result["variants"].items():
        typer.echo(f"{name:<16}{row['tokens_per_s']:>10.1f}{row['speedup']:>9.2f}{row['numel']:>12}"
                   f"{row['megabytes']:>9.2f}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "compress.json").write_text(json.dumps(result, indent=2))
        typer.echo(f"wrote {out / 'compress.json'}")
