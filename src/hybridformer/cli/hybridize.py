"""``hybridformer hybridize``: window + linear attention distilled from a decoder's softmax attention (LoLCATs)."""

from __future__ import annotations

from pathlib import Path

import typer


def hybridize(
    checkpoint: Path = typer.Argument(..., help="Decoder LM checkpoint to hybridize (the frozen teacher)."),
    out: Path = typer.Option(..., "--out", help="Directory for the hybridized checkpoint (and its resumable state "
                             "while it trains)."),
    window: int = typer.Option(64, "--window", help="Keys each query sees by softmax (the rest: linear state)."),
    feature_dim: int = typer.Option(64, "--feature-dim", help="Size of each learned feature map (x2: ±)."),
    layers: str = typer.Option("all", "--layers", help="Layers to hybridize: all | 0,2,4 | every:N."),
    data: list[Path] = typer.Option(None, "--data", help="Text file(s) to train on (.gz allowed; repeat the "
                                    "option). Default: ../shared/data/tinyshakespeare, else a built-in text."),
    seq_len: int = typer.Option(512, "--seq-len", help="Tokens per training window."),
    transfer_steps: int = typer.Option(200, "--transfer-steps", help="Stage 1 (attention transfer, MSE) steps."),
    finetune_steps: int = typer.Option(50, "--finetune-steps", help="Stage 2 (KL to the teacher's logits) steps."),
    transfer_lr: float = typer.Option(1e-2, "--transfer-lr", help="Stage 1 learning rate (feature maps, gates)."),
    finetune_lr: float = typer.Option(1e-5, "--finetune-lr", help="Stage 2 learning rate (every weight)."),
    budget: float = typer.Option(None, "--budget", help="CPU seconds for both stages (stage 1 stops at 60%)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the training windows' places."),
    save_every: int = typer.Option(25, "--save-every", help="Steps between resumable saves."),
    resume: bool = typer.Option(False, "--resume", help="Continue the unfinished run in --out (same options)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing checkpoint at --out."),
) -> None:
    """Give chosen layers sliding-window softmax plus a learned linear-attention state over older keys, and
    train it from the model itself: attention transfer (MSE to each teacher layer), then a KL fine-tune.
    Decoding memory stays flat in the length. Ctrl-C saves; --resume continues exactly.

    Examples:

      hybridformer hybridize smollm2 --out smollm2-hybrid --budget 1200

      hybridformer hybridize smollm2 --out smollm2-hybrid --resume --budget 1200

      hybridformer hybridize runs/lm/best --layers every:2 --window 128 --data notes.txt --out lm-hybrid
    """
    from ..hybridize import HybridizeOptions
    from ..hybridize import hybridize as hybridize_api
    from .progress import StageProgress

    options = HybridizeOptions(window=window, feature_dim=feature_dim, layers=layers, seq_len=seq_len,
                               transfer_steps=transfer_steps, finetune_steps=finetune_steps, transfer_lr=transfer_lr,
                               finetune_lr=finetune_lr, budget=budget, seed=seed, save_every=save_every)
    with StageProgress() as bar:
        written = hybridize_api(checkpoint, out, options=options, data=data or None, resume=resume,
                                overwrite=overwrite, progress=bar.update)
    from ..checkpoint import load_meta

    record = load_meta(written)["hybridize"]
    losses = ", ".join(f"{stage} loss {v['first']:.4g} -> {v['last']:.4g} ({v['steps']} steps)"
                       for stage, v in record["losses"].items())
    typer.echo(f"hybridized {checkpoint} -> {written}: {losses}; {record['cpu_seconds']:,} CPU seconds")
    memory = record["decoding_memory"]
    typer.echo(f"decoding memory at {memory['length']:,} tokens (float32 KV caches): {memory['kv_mib']:,} MiB of "
               f"windows plus a fixed linear state, full attention {memory['original_kv_mib']:,} MiB")
