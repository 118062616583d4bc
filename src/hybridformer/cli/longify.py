"""``hybridformer longify``: long-text attention and longer positions for a trained checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import ConfigError


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
    global_every: int = typer.Option(None, "--global-every", help="Layer pattern: every N-th layer keeps full "
                                     "attention (global), the others get --attention (Gemma 3: 6 = five local, "
                                     "one global); --rope-scaling then applies to the global layers only."),
    layer_attention: str = typer.Option(None, "--layer-attention", help="Layer pattern, explicit: local/global "
                                        "(or l/g) per layer, repeated over the stack, e.g. l,l,l,l,l,g."),
    retrieval_heads: int = typer.Option(0, "--retrieval-heads", help="Keep full attention in the N kv heads that "
                                        "attend a pass key most when recalling it (scored on generated prompts); "
                                        "every other head gets --attention's window (DuoAttention, RazorAttention)."),
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

      hybridformer longify smollm2 --attention sliding_window:window=2048,sink_positions=cache --global-tokens 4
        --global-every 6 --rope-scaling yarn:4 --max-positions 32768 --out smollm2-gemma   (5 local : 1 global)

      hybridformer longify smollm2 --attention sliding_window:window=1024 --global-tokens 4 --retrieval-heads 15
        --rope-scaling dynamic:4 --max-positions 32768 --out smollm2-retrieval   (full caches for 15 kv heads)

      hybridformer longify m30k/best --stack encoder --layers every:2 --attention sliding_window:window=64 --out m30k-l
    """
    from ..checkpoint import load_meta
    from ..longify import longify as longify_api

    if global_every is not None and layer_attention is not None:
        raise ConfigError("give one layer pattern: --global-every N or --layer-attention LIST")
    pattern = f"every:{global_every}" if global_every is not None else layer_attention
    written = longify_api(checkpoint, out, attention=attention, layers=layers, stack=stack,
                          max_positions=max_positions, rope_scaling=rope_scaling, global_tokens=global_tokens,
                          pattern=pattern, retrieval_heads=retrieval_heads, overwrite=overwrite)
    typer.echo(f"longified {checkpoint} -> {written}")
    record = load_meta(written)["longify"][-1]
    if "retrieval_heads" in record:
        chosen = record["retrieval_heads"]["full_heads"]
        listed = ", ".join(f"{layer}: {heads}" for layer, heads in chosen.items())
        typer.echo(f"retrieval heads (layer: kv heads) kept whole: {listed}")
    memory = record.get("decoding_memory")
    if memory is not None:
        typer.echo(f"decoding memory at {memory['length']:,} tokens (float32 KV caches): {memory['kv_mib']:,} MiB, "
                   f"full attention {memory['original_kv_mib']:,} MiB")
