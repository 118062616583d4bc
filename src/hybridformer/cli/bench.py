"""``hybridformer bench ...``: attention scaling, layer-type cost, compression speed, throughput vs peers."""

from __future__ import annotations

from pathlib import Path

import typer

from ..names import LAYER_NAMES
from ..outputs import prepare_output_file
from . import bench_decode, bench_serve
from .options import parse_list, split_list, split_specs

app = typer.Typer(no_args_is_help=True, help="Benchmarks: speed and memory, measured, with peers in the same run.")
app.command("serve")(bench_serve.bench_serve)
app.command("decode")(bench_decode.bench_decode)

DEFAULT_MECHANISMS = ["full", "reference", "chunked", "sliding_window:window=512", "block_sparse", "linear",
                      "performer", "linformer:max_len=65536", "nystrom"]


@app.command("attention")
def attention(
    out: Path = typer.Option(..., "--out", help="Directory for results.json, results.md and scaling.png."),
    mechanisms: list[str] = typer.Option(DEFAULT_MECHANISMS, "--mechanisms", "-m",
                                         help="NAME[:key=value,...]; repeat or comma-separate. 'flex' = FlexAttention. "
                                         "A bias=alibi|t5|none option overrides --bias for that mechanism."),
    lengths: list[str] = typer.Option(["1024,2048,4096,8192,16384,32768,65536"], "--lengths", "-l",
                                      help="Sequence lengths; repeat or comma-separate."),
    backward: bool = typer.Option(False, "--backward/--forward-only", help="Time forward + backward."),
    causal: bool = typer.Option(True, "--causal/--non-causal"),
    bias: str = typer.Option("none", "--bias", help="Score bias: none, alibi or t5."),
    batch: int = typer.Option(1, "--batch"),
    heads: int = typer.Option(8, "--heads"),
    head_dim: int = typer.Option(64, "--head-dim"),
    repeats: int = typer.Option(3, "--repeats", help="Timed runs per point (median reported)."),
    time_cap: float = typer.Option(300.0, "--time-cap", help="Seconds per point before it is reported as capped."),
    memory_cap: float = typer.Option(8.0, "--memory-cap-gb", help="Address-space cap per point (GiB)."),
) -> None:
    """Median time and peak memory of each mechanism at each length, in fp32 on this machine.

    Example:

      hybridformer bench attention -m full,chunked,sliding_window:window=256 -l 1024,4096 --backward --out runs/b
    """
    from ..bench import markdown, run_benchmark, write_outputs

    names = split_specs(mechanisms)
    sizes = parse_list(lengths, int, option="--lengths", example="1024,4096")

    def progress(point: dict) -> None:
        shown = f"{point['time_s']:.3f} s, {point['peak_mib']:.0f} MiB" if point["status"] == "ok" else point["status"]
        typer.echo(f"{point['label']:<40} L={point['length']:<6} {shown}", err=True)

    results = run_benchmark(names, sizes, causal=causal, backward=backward, bias=bias, batch=batch, heads=heads,
                            head_dim=head_dim, repeats=repeats, time_cap_s=time_cap, memory_cap_gb=memory_cap,
                            progress=progress)
    title = (f"{'causal' if causal else 'non-causal'} {'fwd+bwd' if backward else 'fwd'}, bias={bias}, "
             f"B={batch}, heads={heads}, head_dim={head_dim}, fp32")
    paths = write_outputs(results, out, title=title)
    typer.echo(markdown(results))
    typer.echo(f"wrote {paths['json']}, {paths['markdown']}, {paths['plot']}")


@app.command("throughput")
def throughput(
    config: Path = typer.Argument(None, help="Model config (YAML; a `model:` section or ModelConfig keys). "
                                  "Without it: the built-in --sizes."),
    out: Path = typer.Option(..., "--out", help="Directory for throughput.json and throughput.md."),
    sizes: str = typer.Option("default,d512,lm1024", "--sizes", help="Comma-separated: default, d512, lm1024, tiny."),
    peers: str = typer.Option(None, "--peers", help="Comma-separated peers (default: all; \"\" = none)."),
    repeats: int = typer.Option(5, "--repeats", help="Timed rounds per measurement (median reported).", min=1),
    steps: int = typer.Option(64, "--steps", help="New tokens per generated sequence.", min=1),
    beams: int = typer.Option(5, "--beams", help="Beam size for the beam-search measurement.", min=1),
    threads: int = typer.Option(None, "--threads", help="torch threads (default: torch's choice)."),
    set_: list[str] = typer.Option([], "--set", help="Override a model key of CONFIG, e.g. --set position=rope"),
) -> None:
    """Training and generation tokens/s of hybridformer vs torch.nn.Transformer, HF and x-transformers.

    All contenders are timed in one process, interleaved, median of --repeats; the training step's
    achieved FLOP/s is reported as a share of this machine's measured fp32 GEMM peak.

    Example: hybridformer bench throughput --sizes default --out runs/throughput
    """
    from ..bench.throughput import markdown, read_model_config, run, write

    model_cfg = read_model_config(config, set_) if config is not None else None
    report = run(split_list(sizes), split_list(peers) if peers is not None else None,
                 repeats=repeats, steps=steps, beams=beams, threads=threads, config=model_cfg)
    json_path, _ = write(report, out)
    typer.echo(markdown(report))
    typer.echo(f"\nwrote {json_path} and throughput.md")


@app.command("layers")
def layers(
    layer_types: str = typer.Option(",".join(LAYER_NAMES), "--layers", help="Comma-separated layer types."),
    d_models: str = typer.Option("256,512", "--d-models", help="Comma-separated model widths."),
    lengths: str = typer.Option("128,1024", "--lengths", help="Comma-separated sequence lengths."),
    batch: int = typer.Option(1, help="Sequences per pass."),
    causal: bool = typer.Option(False, "--causal/--bidirectional", help="Decoder (causal) or encoder layers."),
    kernel_size: int = typer.Option(15, help="Convolution kernel width (conv.kernel_size)."),
    repeats: int = typer.Option(3, help="Timed passes per measurement (the fastest is reported), after one warm-up."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    threads: int = typer.Option(0, help="torch CPU threads (0 = leave torch's default)."),
    out: Path = typer.Option(None, help="Directory for layers.json and layers.md."),
) -> None:
    """Parameters, forward+backward time per token and peak memory of one layer of each type.

    Example: hybridformer bench layers --d-models 256,512 --lengths 128,1024 --out bench/layers
    """
    from ..bench.layers import run_layer_benchmark

    _, table = run_layer_benchmark(
        split_list(layer_types), parse_list(d_models, int, option="--d-models", example="256,512"),
        parse_list(lengths, int, option="--lengths", example="256,1024"), batch=batch, causal=causal,
        repeats=repeats, kernel_size=kernel_size, device=device, threads=threads, out=out)
    typer.echo(table)
    if out is not None:
        typer.echo(f"wrote {out / 'layers.json'} and {out / 'layers.md'}")


@app.command("context")
def context(
    configs: list[Path] = typer.Argument(..., help="Model configs (YAML; a `model:` section or ModelConfig keys)."),
    contexts: str = typer.Option("1024,4096,16384", "--contexts", help="Comma-separated context lengths."),
    steps: int = typer.Option(16, "--steps", help="Decoding steps timed per round.", min=1),
    repeats: int = typer.Option(3, "--repeats", help="Interleaved rounds (median reported).", min=1),
    threads: int = typer.Option(1, "--threads", help="torch CPU threads.", min=1),
    set_: list[str] = typer.Option([], "--set", help="Override a model key of every config, e.g. vocab_size=65"),
    out: Path = typer.Option(None, help="Directory for context.json and context.md."),
) -> None:
    """Per-token decode CPU time and cache memory at growing context: attention vs conv/SSM hybrids (random init).

    Example: hybridformer bench context configs/shakespeare-hybrids-*.yaml --contexts 1024,4096,16384
    """
    import torch

    from ..bench import context as context_bench
    from ..bench.throughput import read_model_config

    torch.set_num_threads(threads)
    models = {path.stem: read_model_config(path, set_) for path in configs}
    results = context_bench.bench_context(models, parse_list(contexts, int, option="--contexts", example="1024,4096"),
                                          steps=steps, repeats=repeats)
    typer.echo(context_bench.markdown(results))
    if out is not None:
        typer.echo(f"wrote {context_bench.write(results, out)} and context.md")


@app.command("compress")
def compress(
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
    from ..bench.compress import benchmark_compression, compression_table, write_compression
    from ..bench.throughput import read_model_config
    from ..config import ModelConfig, load_config

    cfg = read_model_config(config, set_) if config is not None else load_config(None, set_, ModelConfig)
    result = benchmark_compression(cfg, head_fraction=heads, batch_size=batch_size, src_len=src_len,
                                   new_tokens=new_tokens, repeats=repeats, threads=threads)
    typer.echo(compression_table(result))
    if out is not None:
        typer.echo(f"wrote {write_compression(result, out)}")


@app.command("recall")
def recall(
    checkpoint: Path = typer.Argument(..., help="A decoder_lm checkpoint (e.g. converted, or a longify output)."),
    out: Path = typer.Option(..., "--out", help="Directory for recall.json, recall.md and recall.png."),
    tasks: str = typer.Option("passkey", "--tasks", help="passkey and/or multikey, comma-separated."),
    lengths: str = typer.Option("2048,4096", "--lengths", "-l", help="Prompt lengths in tokens, comma-separated."),
    depths: str = typer.Option("0,0.25,0.5,0.75,1", "--depths", help="Where the key lies in the filler "
                               "(0 = start, 1 = end), comma-separated."),
    samples: int = typer.Option(3, "--samples", help="Prompts per length x depth cell (each its own key)."),
    keys: int = typer.Option(4, "--keys", help="multikey: keys hidden per prompt (one is asked for)."),
    max_new_tokens: int = typer.Option(8, "--max-new-tokens", help="Greedy answer length."),
    seed: int = typer.Option(0, "--seed", help="Changes every key and filler sentence."),
    threads: int = typer.Option(None, "--threads", help="torch CPU threads (default: torch's choice)."),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace results already in --out."),
) -> None:
    """Pass-key and multi-key needle retrieval by prompt length and key depth: accuracy, time, peak memory.

    The filler is generated (no downloads), decoding is greedy and an answer counts when its first
    number is the key. Cells past the model's input limit are reported as too long.

    Examples:
      hybridformer bench recall smollm2 --lengths 2048,4096 --depths 0,0.5,1 --samples 3 --out runs/recall
      hybridformer bench recall smollm2-long --tasks passkey,multikey -l 4096,8192,16384 --out runs/recall-long
    """
    import torch

    from ..bench.recall import recall_markdown, recall_paths, run_recall, write_recall

    paths = recall_paths(out)
    for path in paths.values():
        prepare_output_file(path, overwrite=overwrite, inputs=[checkpoint])
    if threads is not None:
        torch.set_num_threads(threads)

    def progress(cell: dict) -> None:
        shown = (f"{cell['correct']}/{cell['total']}, {cell['median_s']:.1f} s, {cell['peak_mib']:.0f} MiB"
                 if cell["status"] == "ok" else cell["status"])
        typer.echo(f"{cell['task']:<9} L={cell['length']:<6} depth={cell['depth']:<5g} {shown}", err=True)

    result = run_recall(checkpoint, tasks=split_list(tasks),
                        lengths=parse_list(lengths, int, option="--lengths", example="2048,4096"),
                        depths=parse_list(depths, float, option="--depths", example="0,0.5,1"), samples=samples,
                        keys=keys, max_new_tokens=max_new_tokens, seed=seed, device=device, progress=progress)
    write_recall(result, paths)
    typer.echo(recall_markdown(result))
    typer.echo(f"wrote {paths['json']}, {paths['markdown']}, {paths['plot']}")
